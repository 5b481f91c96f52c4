import json

import pytest

from avatar.errors import AvatarError
from avatar.modeling import load_classifier
from avatar.tasks import get_task
from avatar.settings import FinetuneConfig
from avatar.teacher import finetune, limit_examples
from avatar.trainer import encode, score


@pytest.mark.parametrize("name", ["defect", "clone"])
def test_finetune_writes_a_complete_teacher_folder(tmp_path, tiny_encoder, defect_data, clone_data, name):
    task = get_task(name)
    data = task.load(defect_data if name == "defect" else clone_data)
    config = FinetuneConfig(model=str(tiny_encoder), max_length=48, limit=40, eval_limit=20, epochs=1, learning_rate=1e-3)
    metrics = finetune(task, data, tmp_path / "teacher", config)
    files = {p.name for p in (tmp_path / "teacher").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json"} <= files
    saved = json.loads((tmp_path / "teacher" / "metrics.json").read_text())
    assert saved == metrics
    assert metrics["examples"] == {"train": 40, "valid": 20, "test": 20}
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "interval95", "baseline"} <= set(metrics["test"])
    lo, hi = metrics["test"]["interval95"]["accuracy"]
    assert lo <= metrics["test"]["accuracy"] <= hi  # the test score comes with its interval and baseline
    assert metrics["settings"]["max_length"] == 48
    # the saved weights are the ones that were scored
    model, tokenizer = load_classifier(tmp_path / "teacher", task)
    assert model.config.avatar_max_length == 48
    valid = limit_examples(data.valid, 20, config.seed)
    assert score(task, model, encode(tokenizer, valid, 48)) == metrics["valid"]


def test_failed_finetune_writes_nothing(tmp_path, defect_data):
    config = FinetuneConfig(model=str(tmp_path / "missing-model"))
    with pytest.raises(AvatarError, match="model folder not found"):
        finetune(get_task("defect"), get_task("defect").load(defect_data), tmp_path / "teacher", config)
    assert not (tmp_path / "teacher").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["defect"]


def test_interrupted_save_leaves_no_folder(tmp_path, tiny_encoder, defect_data, monkeypatch):
    import avatar.teacher as teacher_mod

    def half_written(model, tokenizer, task, folder):
        (folder / "model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt  # the user pressed Ctrl-C while the weights were being written

    monkeypatch.setattr(teacher_mod, "save_classifier", half_written)
    config = FinetuneConfig(model=str(tiny_encoder), max_length=32, limit=20, eval_limit=10, epochs=1)
    with pytest.raises(KeyboardInterrupt):
        finetune(get_task("defect"), get_task("defect").load(defect_data), tmp_path / "teacher", config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["defect"]


def test_max_length_beyond_the_model_is_refused(tmp_path, tiny_encoder, defect_data):
    config = FinetuneConfig(model=str(tiny_encoder), max_length=500)  # the tiny encoder has 66 positions
    with pytest.raises(AvatarError, match="max_length 500 exceeds what"):
        finetune(get_task("defect"), get_task("defect").load(defect_data), tmp_path / "teacher", config)
