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


def test_search_stage_end_to_end_and_resume(tmp_path, tiny_encoder, defect_data, monkeypatch):
    import avatar.candidates as candidates_mod
    from avatar.distill import DistillConfig
    from avatar.pipeline import SearchSettings, search_stage
    from avatar.space import Space
    from avatar.student import StudentConfig

    task = get_task("defect")
    data = task.load(defect_data)
    config = FinetuneConfig(model=str(tiny_encoder), max_length=32, train=TrainConfig(epochs=1))
    teacher_stage(tmp_path / "run", task, data, config)
    space = Space.paper().override({
        "vocab_size": {"low": 300, "high": 600, "step": 100}, "num_hidden_layers": {"low": 1, "high": 2},
        "hidden_size": {"low": 16, "high": 32, "step": 16}, "intermediate_size": {"low": 16, "high": 64, "step": 16},
        "num_attention_heads": {"low": 1, "high": 2}, "max_sequence_length": {"low": 32, "high": 64, "step": 32},
    })
    settings = SearchSettings(budget_mb=0.5, samples=4, short_budget=DistillConfig(epochs=1, limit=30, eval_limit=20, patience=None),
                              objective="flops", population=8, generations=3, workers=1)
    out = search_stage(tmp_path / "run", task, defect_data, 42, tmp_path / "run" / "soft_labels.json", settings, space)
    run = tmp_path / "run"
    for name in ("space.json", "indicator/samples.json", "indicator/indicator.json", "pareto.csv", "pareto.json", "chosen_student.json"):
        assert (run / name).is_file(), name
    assert len(list((run / "indicator" / "candidates").iterdir())) == 4
    chosen = StudentConfig.load(run / "chosen_student.json")
    assert out["choice"]["vocab_size"] == chosen.vocab_size and out["pareto_size"] >= 1

    calls = []
    monkeypatch.setattr(candidates_mod, "distill_candidate", lambda job: calls.append(job) or {"score": 0.5})
    search_stage(run, task, defect_data, 42, run / "soft_labels.json", settings, space)
    assert calls == []  # every candidate was read back, none distilled again

    # a different teacher (same data) means new soft labels, so every candidate is new work
    teacher_stage(run, task, data, FinetuneConfig(model=str(tiny_encoder), max_length=32, train=TrainConfig(epochs=2)))
    search_stage(run, task, defect_data, 42, run / "soft_labels.json", settings, space)
    assert len(calls) == 4
