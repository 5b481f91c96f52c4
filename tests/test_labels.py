import json

import numpy as np
import pytest

import avatar.labels as labels_mod
from avatar.errors import AvatarError
from avatar.labels import label, load_soft_labels
from avatar.tasks import fingerprint, get_task


@pytest.fixture
def teacher_dir(defect_classifier):
    return defect_classifier


def test_writes_raw_logits_for_every_unlabelled_example(tmp_path, teacher_dir, defect_data):
    task = get_task("defect")
    data = task.load(defect_data)
    summary = label(teacher_dir, task, data.unlabelled, tmp_path / "soft.json")
    assert summary["examples"] == len(data.unlabelled)
    doc = json.loads((tmp_path / "soft.json").read_text())
    assert [row["id"] for row in doc["labels"]] == [e.id for e in data.unlabelled]
    logits = np.array([row["logits"] for row in doc["labels"]])
    assert logits.shape == (len(data.unlabelled), 2)
    # logits, not probabilities: rows do not sum to one and need not lie in [0, 1]
    assert not np.allclose(logits.sum(axis=1), 1.0)
    assert [row["pred"] for row in doc["labels"]] == logits.argmax(axis=1).tolist()
    loaded = load_soft_labels(tmp_path / "soft.json")
    assert loaded.logits[data.unlabelled[0].id] == doc["labels"][0]["logits"]
    assert loaded.data == fingerprint(data.unlabelled)


def test_repeated_call_does_no_work(tmp_path, teacher_dir, defect_data, monkeypatch):
    task = get_task("defect")
    data = task.load(defect_data)
    first = label(teacher_dir, task, data.unlabelled, tmp_path / "a.json")

    def no_model(*args, **kwargs):
        raise AssertionError("the teacher was loaded again")

    monkeypatch.setattr(labels_mod, "load_classifier", no_model)
    assert label(teacher_dir, task, data.unlabelled, tmp_path / "a.json") == first
    (tmp_path / "a.json").unlink()
    # another output path, same teacher and data: served from the cache
    assert label(teacher_dir, task, data.unlabelled, tmp_path / "b.json") == {**first, "file": str(tmp_path / "b.json")}
    # different data or a changed teacher is new work
    with pytest.raises(AssertionError, match="loaded again"):
        label(teacher_dir, task, data.unlabelled[:-1], tmp_path / "a.json")
    (teacher_dir / "config.json").write_text((teacher_dir / "config.json").read_text().replace("}", ', "x": 1}', 1))
    with pytest.raises(AssertionError, match="loaded again"):
        label(teacher_dir, task, data.unlabelled, tmp_path / "a.json")


def test_bad_soft_label_file(tmp_path):
    with pytest.raises(AvatarError, match="soft-label file not found"):
        load_soft_labels(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{oops")
    with pytest.raises(AvatarError, match=r"x.json:1: malformed soft-label file"):
        load_soft_labels(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{}")
    with pytest.raises(AvatarError, match="not an Avatar soft-label file"):
        load_soft_labels(tmp_path / "y.json")
    row = {"id": "1", "logits": [0.5, float("nan")], "pred": 0}
    (tmp_path / "z.json").write_text(json.dumps({"format": labels_mod.FORMAT, "key": "k", "data": "d", "labels": [row]}))
    with pytest.raises(AvatarError, match="damaged soft-label file"):
        load_soft_labels(tmp_path / "z.json")


def test_teacher_must_not_label_its_own_training_examples(tmp_path, tiny_encoder, defect_data):
    from avatar.settings import FinetuneConfig
    from avatar.teacher import finetune

    task = get_task("defect")
    data = task.load(defect_data, seed=1)
    finetune(task, data, tmp_path / "t", FinetuneConfig(model=str(tiny_encoder), max_length=32, epochs=1))
    other_split = task.load(defect_data, seed=2)  # another seed: some of its unlabelled half taught the teacher
    with pytest.raises(AvatarError, match="the teacher was fine-tuned on .* of the examples it should label"):
        label(tmp_path / "t", task, other_split.unlabelled, tmp_path / "soft.json")
    with pytest.raises(AvatarError, match="not an Avatar model folder"):
        label(tmp_path / "nowhere", task, data.unlabelled, tmp_path / "soft.json")
    assert not (tmp_path / "soft.json").exists()
