import json

import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from avatar.errors import AvatarError
from avatar.modeling import PairClassifier, SequenceClassifier
from avatar.modeling import build_student
from avatar.student import POSITION_EMBEDDINGS, StudentConfig
from avatar.tasks import get_task


def test_json_roundtrip(tmp_path):
    cfg = StudentConfig(tokenizer="Unigram", vocab_size=1500, hidden_size=48, num_attention_heads=3, learning_rate=5e-5)
    cfg.save(tmp_path / "c.json")
    assert StudentConfig.load(tmp_path / "c.json") == cfg
    assert set(json.loads((tmp_path / "c.json").read_text())) == {
        "tokenizer", "vocab_size", "num_hidden_layers", "hidden_size", "hidden_act", "hidden_dropout_prob",
        "intermediate_size", "num_attention_heads", "attention_probs_dropout_prob", "max_sequence_length",
        "position_embedding_type", "learning_rate", "batch_size",
    }


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"hidden_size": 100, "num_attention_heads": 3}, "hidden_size (100) must be divisible by num_attention_heads (3)"),
        ({"tokenizer": "SentencePiece"}, "tokenizer must be one of BPE, WordPiece, Unigram, WordLevel"),
        ({"hidden_act": "tanh"}, "hidden_act must be one of"),
        ({"position_embedding_type": "rotary"}, "position_embedding_type must be one of"),
        ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob must be in [0, 1)"),
        ({"num_hidden_layers": 0}, "num_hidden_layers must be at least 1"),
        ({"vocab_size": 12}, "vocab_size must be at least 300"),
        ({"layers": 3}, "unknown field(s) layers"),
        ({"batch_size": "32"}, "batch_size must be an integer"),
        ({"learning_rate": -1}, "learning_rate must be positive"),
    ],
)
def test_invalid_configs_are_clear_errors(tmp_path, raw, message):
    (tmp_path / "c.json").write_text(json.dumps(raw))
    with pytest.raises(AvatarError) as err:
        StudentConfig.load(tmp_path / "c.json")
    assert str(err.value).startswith(str(tmp_path / "c.json")) and message in str(err.value)


def test_malformed_and_missing_config_files(tmp_path):
    (tmp_path / "c.json").write_text('{\n"vocab_size": 1000,\n}')
    with pytest.raises(AvatarError, match=r"c.json:3: malformed JSON"):
        StudentConfig.load(tmp_path / "c.json")
    with pytest.raises(AvatarError, match="student configuration not found"):
        StudentConfig.load(tmp_path / "none.json")


@pytest.mark.parametrize("position", POSITION_EMBEDDINGS)
def test_built_student_follows_the_config(position):
    cfg = StudentConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=40,
                        hidden_act="silu", position_embedding_type=position, max_sequence_length=300)
    defect, clone = build_student(get_task("defect"), cfg), build_student(get_task("clone"), cfg)
    assert isinstance(defect, SequenceClassifier) and isinstance(clone, PairClassifier)
    for model in (defect, clone):
        c = model.config
        assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (2, 32, 4, 40)
        assert c.hidden_act == "silu" and c.position_embedding_type == position
        assert c.max_position_embeddings == 302  # positions start after the pad id, as in RoBERTa


def test_defect_student_folder_loads_with_auto_classes(tmp_path, defect_data):
    from avatar.distill import save_student
    from avatar.vocab import distinct_texts, train_tokenizer

    task = get_task("defect")
    cfg = StudentConfig(vocab_size=400, num_hidden_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=16)
    tokenizer = train_tokenizer(cfg.tokenizer, cfg.vocab_size, distinct_texts(task.load(defect_data).unlabelled))
    save_student(build_student(task, cfg), tokenizer, task, cfg, {}, tmp_path / "s")
    assert {p.name for p in (tmp_path / "s").iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "s")
    tok = AutoTokenizer.from_pretrained(tmp_path / "s")
    out = model(**tok(["int main ( ) { return 0 ; }"], return_tensors="pt"))
    assert out.logits.shape == (1, 2)
