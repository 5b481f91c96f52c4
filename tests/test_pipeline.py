import json

import avatar.pipeline as pipeline_mod
from avatar.pipeline import teacher_stage
from avatar.tasks import get_task
from avatar.teacher import FinetuneConfig
from avatar.trainer import TrainConfig


def test_teacher_stage_resumes_and_reruns_on_changed_settings(tmp_path, tiny_encoder, defect_data, monkeypatch):
    task = get_task("defect")
    data = task.load(defect_data)
    config = FinetuneConfig(model=str(tiny_encoder), max_length=32, limit=20, eval_limit=10, train=TrainConfig(epochs=1))
    first = teacher_stage(tmp_path / "run", task, data, config)
    assert not first["reused_teacher"]
    assert (tmp_path / "run" / "teacher" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "run" / "soft_labels.json").read_text())["task"] == "defect"

    calls = []
    real = pipeline_mod.finetune
    monkeypatch.setattr(pipeline_mod, "finetune", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = teacher_stage(tmp_path / "run", task, data, config)
    assert again["reused_teacher"] and not calls
    assert again["soft_labels"] == first["soft_labels"]

    changed = FinetuneConfig(model=str(tiny_encoder), max_length=32, limit=20, eval_limit=10, train=TrainConfig(epochs=2))
    third = teacher_stage(tmp_path / "run", task, data, changed)
    assert calls == [1] and not third["reused_teacher"]
    assert third["soft_labels"]["key"] != first["soft_labels"]["key"]  # a new teacher means new soft labels
