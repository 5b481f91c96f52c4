import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import avatar
import avatar.candidates as candidates_mod
from avatar.config import load_config
from avatar.errors import AvatarError
from avatar.pipeline import Run, compress, labels_stage, teacher_stage
from avatar.tasks import get_task
from avatar.settings import FinetuneConfig

TINY_SPACE = """
[space]
vocab_size = { low = 300, high = 600, step = 100 }
num_hidden_layers = { low = 1, high = 2 }
hidden_size = { low = 16, high = 32, step = 16 }
intermediate_size = { low = 16, high = 64, step = 16 }
num_attention_heads = { low = 1, high = 2 }
max_sequence_length = { low = 32, high = 64, step = 32 }
"""


def tiny_compress_toml(path, data, teacher, samples=3, objective="flops"):
    path.write_text(f"""
data = "{data}"
teacher = "{teacher}"
budget_mb = 0.5

[finetune]
epochs = 1
max_length = 32
learning_rate = 1e-3

[search]
samples = {samples}
objective = "{objective}"
latency_architectures = 4
population = 8
generations = 3
workers = 1

[distill]
epochs = 1

[measure]
runs = 2
warmup = 1
throughput_examples = 4
energy_rounds = 1
energy_seconds = 0.05
architectures = []
""" + TINY_SPACE)
    return path


def test_stage_runs_once_and_again_when_inputs_or_artefacts_change(tmp_path):
    run, calls = Run(tmp_path), []

    def fn():
        calls.append(1)
        (tmp_path / "a.txt").write_text("x")
        return {"n": len(calls)}

    first = run.stage("s", {"x": 1}, ["a.txt"], fn)
    again = run.stage("s", {"x": 1}, ["a.txt"], fn)
    assert not first.reused and again.reused and again.result == {"n": 1} and again.key == first.key
    changed = run.stage("s", {"x": 2}, ["a.txt"], fn)
    assert not changed.reused and changed.key != first.key
    (tmp_path / "a.txt").unlink()
    assert not run.stage("s", {"x": 2}, ["a.txt"], fn).reused
    assert len(calls) == 3


def test_failed_stage_leaves_no_record(tmp_path):
    run = Run(tmp_path)
    run.stage("s", {}, [], lambda: {"ok": 1})

    def boom():
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run.stage("s", {"changed": True}, [], boom)
    assert run.record("s") is None  # the old record went before the stage started changing its artefacts


def test_teacher_and_labels_resume_and_rerun_on_changed_settings(tmp_path, tiny_encoder, defect_data, monkeypatch):
    import avatar.teacher as teacher_mod

    task = get_task("defect")
    data = task.load(defect_data)
    config = FinetuneConfig(model=str(tiny_encoder), max_length=32, limit=20, eval_limit=10, epochs=1)
    run = Run(tmp_path / "run")
    first = teacher_stage(run, task, data, config)
    soft = labels_stage(run, task, data, first)
    assert (tmp_path / "run" / "teacher" / "model.safetensors").is_file() and soft.result["examples"] == 60

    calls = []
    real = teacher_mod.finetune
    monkeypatch.setattr(teacher_mod, "finetune", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = teacher_stage(run, task, data, config)
    assert again.reused and not calls and labels_stage(run, task, data, again).reused

    changed = FinetuneConfig(model=str(tiny_encoder), max_length=32, limit=20, eval_limit=10, epochs=2)
    third = teacher_stage(run, task, data, changed)
    assert calls == [1] and not third.reused
    relabelled = labels_stage(run, task, data, third)
    assert not relabelled.reused and relabelled.result["key"] != soft.result["key"]  # a new teacher means new soft labels


def test_compress_end_to_end_resumes_and_reruns_only_what_changed(tmp_path, tiny_encoder, defect_data, monkeypatch):
    run = tmp_path / "run"
    config = avatar.resolve_settings(tiny_compress_toml(tmp_path / "c.toml", defect_data, tiny_encoder))
    result = avatar.compress(config, run)  # the public API: the CLI's compress is this call
    stages = result.stages
    assert result.root == run and result.config == config and result.metrics == json.loads((run / "metrics.json").read_text())
    for name in ("config.toml", "teacher/model.safetensors", "soft_labels.json", "space.json", "indicator/indicator.json",
                 "pareto.csv", "pareto.json", "chosen_student.json", "student/model.safetensors", "metrics.json", "report.md",
                 "pareto.png", "comparison.png", "space.png", "indicator.png", "onnx/avatar.json", "onnx/model.int8.onnx"):
        assert (run / name).is_file(), name
    assert load_config(run / "config.toml") == config
    metrics = json.loads((run / "metrics.json").read_text())
    assert [r["role"] for r in metrics["results"]] == ["teacher", "student", "student (ONNX fp32)", "student (ONNX int8)"]
    assert [r["runtime"] for r in metrics["results"]] == ["pytorch", "pytorch", "onnxruntime fp32", "onnxruntime int8"]
    teacher_r, student_r = metrics["results"][:2]
    assert student_r["size_mb"] <= 0.5  # the budget
    assert metrics["student_vs_teacher"]["size_x"] == pytest.approx(teacher_r["size_bytes"] / student_r["size_bytes"])
    # every subject read the same test functions; the exported student scored like the PyTorch one in fp32
    assert len({r["inputs"]["functions"] for r in metrics["results"]}) == 1
    assert metrics["results"][2]["test"]["accuracy"] == metrics["results"][1]["test"]["accuracy"]
    card = (run / "onnx" / "README.md").read_text()
    assert "## Do not trust it for" in card and str(defect_data) in card
    assert "## Teacher vs student" in (run / "report.md").read_text() and "## Exported for `avatar scan`" in (run / "report.md").read_text()
    assert stages["export"].result["parity"]["int8"]["agreement"] >= 0.95
    # the samples were drawn inside z3's bounds (space.json), and the report says what they cut
    bounds = {n: d["feasible"] for n, d in json.loads((run / "space.json").read_text())["dimensions"].items()}
    from avatar.space import CatDim, Space

    categorical = {n for n, d in Space.paper().dims.items() if isinstance(d, CatDim)}
    for cfg in json.loads((run / "indicator" / "samples.json").read_text()):
        for name, b in bounds.items():
            assert cfg[name] in b if name in categorical else b[0] <= cfg[name] <= b[1], (name, cfg[name], b)
    assert 0 <= stages["indicator"].result["pruned_by_bounds"] < 1
    ind = stages["indicator"].result
    assert ind["score_noise"] > 0 and ind["score_spread"] >= 0 and "Noise of one sample's score" in (run / "report.md").read_text()
    assert not any(s.reused for s in stages.values())

    calls = []
    monkeypatch.setattr(candidates_mod, "distill_candidate", lambda job: calls.append(job) or {"valid": {"roc_auc": 0.5}})
    assert all(s.reused for s in compress(config, run).stages.values()) and not calls

    # more distillation epochs: only the student and what reads it are redone
    from dataclasses import replace

    longer = replace(config, distill=replace(config.distill, epochs=2))
    redone = {name for name, s in compress(longer, run).stages.items() if not s.reused}
    assert redone == {"student", "export", "measure", "report"}
    # another choice rule: the search is kept, the choice and everything after it is redone
    knee = replace(longer, search=replace(longer.search, prefer="knee"))
    assert {name for name, s in compress(knee, run).stages.items() if not s.reused} == {"choose", "student", "export", "measure", "report"}
    assert not calls

    # successive halving: the three samples at rung 0 are read back, the best two of them go on with twice the epochs
    monkeypatch.undo()
    halving = replace(knee, search=replace(knee.search, rungs=2, eta=2))
    stages = compress(halving, run).stages
    reached = stages["indicator"].result["rungs_reached"]
    assert sorted(reached) == [0, 1, 1] and len(list((run / "indicator" / "candidates").glob("*.json"))) == 3 + 2
    ind = json.loads((run / "indicator" / "indicator.json").read_text())
    assert ind["fidelity"] == [float(r) for r in reached]


def test_compress_killed_mid_run_resumes_without_redoing_finished_work(tmp_path, tiny_encoder, defect_data):
    run = tmp_path / "run"
    toml = tiny_compress_toml(tmp_path / "c.toml", defect_data, tiny_encoder, samples=6, objective="latency")
    cmd = [sys.executable, "-c", "from avatar.cli import main; main()", "compress", "--config", str(toml), "--out", str(run)]
    env = {**os.environ, "AVATAR_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    candidates = run / "indicator" / "candidates"
    deadline = time.monotonic() + 300
    while not (candidates.is_dir() and any(candidates.glob("*.json"))):  # at least one candidate finished
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "timeout"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run / "stages" / "teacher.json").is_file() and not (run / "stages" / "student.json").exists()
    finished = {p: p.stat().st_mtime_ns for p in [*run.glob("stages/*.json"), *candidates.glob("*.json")]}
    for p in run.rglob("*.json"):
        if not p.name.endswith(".tmp"):
            json.loads(p.read_text())  # whatever was written is whole

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for p, mtime in finished.items():
        assert p.stat().st_mtime_ns == mtime, f"{p} was redone"
    for name in [p.stem for p in finished if p.parent.name == "stages"]:
        assert f"{name}: up to date" in done.stderr
    assert (run / "report.md").is_file() and json.loads((run / "metrics.json").read_text())["results"]
    assert not list(run.rglob(".*.tmp"))  # a killed run's temporary files are cleared on resume


def test_a_teacher_fine_tuned_before_is_taken_as_it_is(tmp_path, tiny_encoder, defect_data, defect_classifier):
    from avatar.errors import AvatarError

    task = get_task("defect")
    data = task.load(defect_data)
    run = Run(tmp_path / "run")
    config = FinetuneConfig(model="unused")
    given = teacher_stage(run, task, data, config, finetuned=str(defect_classifier))
    assert not given.result["fine_tuned_here"] and not (tmp_path / "run" / "teacher").exists()
    assert labels_stage(run, task, data, given).result["examples"] == 60
    assert teacher_stage(run, task, data, config, finetuned=str(defect_classifier)).reused
    weights = defect_classifier / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")  # another teacher: the stage and its labels are redone
    assert not teacher_stage(run, task, data, config, finetuned=str(defect_classifier)).reused
    with pytest.raises(AvatarError, match="must be a local folder"):
        teacher_stage(run, task, data, config, finetuned="minilm")


def test_compress_fine_tunes_a_graphcodebert_teacher_from_its_config(tmp_path, tiny_encoder, defect_data):
    toml = tiny_compress_toml(tmp_path / "c.toml", defect_data, tiny_encoder)
    toml.write_text(toml.read_text().replace("[finetune]\n", '[finetune]\nmodel_type = "graphcodebert"\nflow_length = 8\n'))
    run = tmp_path / "run"
    compress(load_config(toml), run)
    saved = json.loads((run / "teacher" / "config.json").read_text())
    assert saved["avatar_model_type"] == "graphcodebert" and saved["avatar_flow_length"] == 8 and saved["avatar_max_length"] == 32
    assert json.loads((run / "metrics.json").read_text())["results"][0]["role"] == "teacher"


HOLD = """
import sys, time
from avatar.engine import Run
with Run(sys.argv[1]).writing():
    print("held", flush=True)
    time.sleep(60)
"""


def test_one_writer_per_run_folder_and_the_lock_dies_with_its_holder(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(AvatarError, match=f"another avatar command \\(PID {holder.pid}\\) is writing this run folder"):
            with Run(run).writing():
                pass
        (run / ".x.json.1.tmp").write_text("")  # a live writer's temporary file: the refused run must not touch it
        with pytest.raises(AvatarError):
            compress(load_config(tiny_compress_toml(tmp_path / "c.toml", tmp_path, "minilm")), run)
        assert (run / ".x.json.1.tmp").exists()
    finally:
        holder.kill()  # SIGKILL: the OS releases the lock
        holder.wait()
    with Run(run).writing() as r:
        assert r.held and not (run / ".x.json.1.tmp").exists()  # the dead run's leftovers go


def _session_processes(sid: int) -> list[int]:
    """Live (not zombie) processes of a session: what a killed command may have left behind."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state, ppid, pgrp, session, ...
            pids.append(int(stat.parent.name))
    return pids


def test_ctrl_c_and_kill_during_the_indicator_stage_leave_nothing_behind(tmp_path, tiny_encoder, defect_data):
    run = tmp_path / "run"
    toml = tiny_compress_toml(tmp_path / "c.toml", defect_data, tiny_encoder, samples=8)
    toml.write_text(toml.read_text().replace("workers = 1", "workers = 2"))
    cmd = [sys.executable, "-c", "from avatar.cli import main; main()", "compress", "--config", str(toml), "--out", str(run)]
    env = {**os.environ, "AVATAR_CACHE_DIR": str(tmp_path / "cache")}
    candidates = run / "indicator" / "candidates"

    def start_and_wait_for(n: int) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.monotonic() + 300
        while not (candidates.is_dir() and len(list(candidates.glob("*.json"))) >= n):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "timeout"
            time.sleep(0.02)
        return proc

    # Ctrl-C, as a terminal sends it: to the whole process group
    proc = start_and_wait_for(1)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert lines[-1].startswith("interrupted: finished stages and candidates are kept")
    kept = {p: p.read_text() for p in candidates.glob("*.json")}
    assert kept and all(json.loads(text) for text in kept.values())  # whole, and kept
    time.sleep(1)
    assert _session_processes(proc.pid) == []

    # kill -9 of the command alone: its workers notice and die too
    proc = start_and_wait_for(len(kept) + 1)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 15
        while _session_processes(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _session_processes(proc.pid) == [], "a process outlived the killed compress"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert all(p.read_text() == text for p, text in kept.items())  # what was finished is untouched


def test_compress_from_a_teachers_predictions_runs_no_teacher_model(tmp_path, tiny_encoder, defect_data):
    from avatar.predictions import import_predictions

    task = get_task("defect")
    data = task.load(defect_data)
    predictions = tmp_path / "teacher.jsonl"
    predictions.write_text("".join(json.dumps({"id": ex.id, "label": ex.label}) + "\n" for ex in data.unlabelled))
    soft = tmp_path / "soft.json"
    import_predictions(task, predictions, data.unlabelled, soft)
    config = avatar.resolve_settings(tiny_compress_toml(tmp_path / "c.toml", defect_data, tiny_encoder),
                                     {"teacher_labels": str(soft)})
    run = tmp_path / "run"
    result = avatar.compress(config, run)
    assert "teacher" not in result.stages and not (run / "teacher").exists()
    assert json.loads((run / "soft_labels.json").read_text()) == json.loads(soft.read_text())
    metrics = result.metrics
    assert metrics["results"][0]["role"] == "student" and "student_vs_teacher" not in metrics
    assert result.stages["student"].result["examples"]["train"] == len(data.unlabelled)
    assert "its predictions, imported into" in (run / "onnx" / "README.md").read_text()
    assert compress(config, run).stages["soft_labels"].reused
    # soft labels of other data (here: another seed's split of train) are refused before anything starts
    with pytest.raises(AvatarError, match="made for other data"):
        avatar.compress(avatar.resolve_settings(tmp_path / "c.toml", {"teacher_labels": str(soft), "seed": 7}), tmp_path / "run2")
    assert not (tmp_path / "run2").exists()
    with pytest.raises(AvatarError, match="cannot be combined with teacher_finetuned"):
        avatar.resolve_settings(tmp_path / "c.toml", {"teacher_labels": str(soft), "teacher_finetuned": True})
