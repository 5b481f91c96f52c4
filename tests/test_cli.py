import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from avatar.cli import app, main

runner = CliRunner()


def _run(args, monkeypatch):
    """Run the CLI the way the console script does: AvatarError -> one line on stderr, exit code 2."""
    monkeypatch.setattr(sys, "argv", ["avatar", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code


@pytest.mark.parametrize(
    "args,message",
    [
        (["finetune", "--task", "nope", "--out", "OUT"], "unknown task 'nope'"),
        (["finetune", "--data", "DATA/none", "--out", "OUT"], "data folder not found"),
        (["finetune", "--data", "DATA", "--out", "OUT", "--model", "./nowhere"], "model folder not found"),
        (["finetune", "--data", "DATA", "--out", "OUT", "--epochs", "0"], "--epochs must be between 1 and 10,000, got 0"),
        (["finetune", "--data", "DATA", "--out", "OUT", "--limit", "-3"], "--limit must be between 1 and 1,000,000,000, got -3"),
        (["finetune", "--data", "DATA", "--out", "OUT", "--lr", "0"], "--lr must be between 1e-09 and 1, got 0"),
        (["label", "--data", "DATA", "--teacher", "DATA", "--out", "OUT/s.json", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["evaluate", "--data", "DATA", "--model", "DATA", "--threads", "0"], "--threads must be between 1 and 4,096"),
        (["distill", "--data", "DATA", "--soft-labels", "DATA/x", "--out", "OUT", "--alpha", "-1"], "--alpha must be between 0 and 1000, got -1"),
        (["compare", "DATA", "--data", "DATA"], "compare needs at least two models"),
        (["label", "--data", "DATA", "--teacher", "DATA", "--out", "OUT/soft.json"], "not an Avatar model folder"),
        (["compress", "--config", "DATA/none.toml", "--out", "OUT"], "none.toml: config file not found"),
        (["compress", "--task", "nope", "--out", "OUT"], "task must be one of defect, clone"),
        (["compress", "--samples", "2", "--out", "OUT"], "search.samples must be between 3 and 100,000, got 2"),
        (["distill", "--data", "DATA", "--soft-labels", "DATA/x", "--out", "OUT", "--temperature", "inf"],
         "--temperature must be a finite number between"),
        (["space", "--budget-mb", "nan"], "--budget-mb must be a finite number between"),
        (["compress", "--data", "DATA/none", "--out", "OUT"], "data folder not found"),
        (["compress", "--data", "DATA", "--teacher", "./nowhere", "--out", "OUT"], "model folder not found"),
        (["report", "OUT"], "not an Avatar run directory"),
        (["compress", "--budget-mb", "0.001", "--out", "OUT"], "cannot be met"),
        (["export", "--model", "DATA", "--out", "OUT"], "not an Avatar model folder"),
        (["scan", "DATA", "--model", "DATA"], "not an exported model (no avatar.json)"),
        (["scan", "DATA", "--model", "DATA", "--format", "xml"], "--format must be one of text, json, sarif"),
        (["clones", "DATA", "DATA", "--model", "DATA", "--max-file-size", "0"], "--max-file-size must be at least 1"),
    ],
)
def test_user_errors_are_one_line_exit_2_nothing_written(tmp_path, defect_data, capsys, monkeypatch, args, message):
    args = [a.replace("DATA", str(defect_data)).replace("OUT", str(tmp_path / "out")) for a in args]
    assert _run(args, monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, repr(err)  # one line, nothing (not even a blank line) before it
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_error_text_is_printed_as_is(tmp_path, capsys, monkeypatch):
    """Square brackets in a message (TOML tables, pip extras) are text, not console markup."""
    (tmp_path / "c.toml").write_text("finetune = 3\n")
    assert _run(["compress", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "out")], monkeypatch) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'c.toml'}:1: finetune must be a table ([finetune])"


def test_bad_data_line_is_reported_with_file_and_line(tmp_path, defect_data, capsys, monkeypatch):
    lines = (defect_data / "train.jsonl").read_text().splitlines()
    lines[9] = '{"func": "x", "target": 5}'
    (defect_data / "train.jsonl").write_text("\n".join(lines) + "\n")
    assert _run(["finetune", "--data", str(defect_data), "--out", str(tmp_path / "out")], monkeypatch) == 2
    assert capsys.readouterr().err.strip() == f"error: {defect_data / 'train.jsonl'}:10: label '5' is not one of the classes (0, 1)"


def test_finetune_then_label(tmp_path, tiny_encoder, clone_data):
    common = ["--task", "clone", "--data", str(clone_data)]
    result = runner.invoke(
        app,
        ["finetune", *common, "--model", str(tiny_encoder), "--out", str(tmp_path / "t"), "--epochs", "1",
         "--max-length", "32", "--limit", "20", "--eval-limit", "10", "--lr", "1e-3"],
    )
    assert result.exit_code == 0, result.output
    assert "teacher" in result.output and "accuracy" in result.output
    assert json.loads((tmp_path / "t" / "metrics.json").read_text())["examples"]["train"] == 20
    result = runner.invoke(app, ["label", *common, "--teacher", str(tmp_path / "t"), "--out", str(tmp_path / "soft.json")])
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "soft.json").read_text())["labels"]) == 60


def test_teacher_command_runs_stage_in_run_dir(tmp_path, tiny_encoder, defect_data):
    args = ["teacher", "--data", str(defect_data), "--model", str(tiny_encoder), "--out", str(tmp_path / "run"),
            "--epochs", "1", "--max-length", "32", "--limit", "20", "--eval-limit", "10"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "(reused)" in result.output
    assert (tmp_path / "run" / "soft_labels.json").is_file()


def test_hub_id_that_cannot_be_fetched_is_a_clear_error(tmp_path, defect_data):
    # the same from_pretrained path a real hub id takes; offline mode makes the failure immediate
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "AVATAR_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-c", "from avatar.cli import main; main()", "finetune", "--data", str(defect_data),
         "--model", "microsoft/codebert-base", "--out", str(tmp_path / "t")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: 'microsoft/codebert-base' is not a local folder, 'minilm' or a cached model, and the Hugging Face hub "
        "cannot be reached (offline?): pass a local model folder or 'minilm'"
    ]
    assert not (tmp_path / "t").exists()


def test_distill_cli(tmp_path, tiny_encoder, defect_data):
    run = tmp_path / "run"
    args = ["teacher", "--data", str(defect_data), "--model", str(tiny_encoder), "--out", str(run), "--epochs", "1",
            "--max-length", "32", "--limit", "20", "--eval-limit", "10"]
    assert runner.invoke(app, args).exit_code == 0
    cfg = tmp_path / "student.json"
    cfg.write_text(json.dumps({"tokenizer": "WordLevel", "vocab_size": 300, "num_hidden_layers": 1, "hidden_size": 16,
                               "num_attention_heads": 2, "intermediate_size": 16, "max_sequence_length": 32}))
    common = ["distill", "--data", str(defect_data), "--soft-labels", str(run / "soft_labels.json"), "--config", str(cfg)]
    result = runner.invoke(app, [*common, "--out", str(tmp_path / "s"), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "parameters" in result.output and (tmp_path / "s" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "change,message",
    [
        ({"hidden_size": 15}, "hidden_size (15) must be divisible by num_attention_heads (2)"),
        (None, "soft-label file not found"),
    ],
)
def test_distill_user_errors(tmp_path, defect_data, capsys, monkeypatch, change, message):
    cfg = tmp_path / "student.json"
    cfg.write_text(json.dumps({"num_attention_heads": 2, **(change or {})}))
    args = ["distill", "--data", str(defect_data), "--soft-labels", str(tmp_path / "none.json"), "--config", str(cfg),
            "--out", str(tmp_path / "s")]
    assert _run(args, monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "s").exists()


def test_space_json_and_infeasible_budget(capsys, monkeypatch):
    result = runner.invoke(app, ["space", "--task", "defect", "--budget-mb", "3", "--json"])
    assert result.exit_code == 0, result.output
    defect = json.loads(result.output)
    assert {"configurations", "dimensions", "wall_seconds", "splits", "z3_checks"} <= set(defect)
    assert defect["dimensions"]["hidden_size"]["feasible"][1] < 768
    assert 0 < defect["configurations"]["feasible_fraction"] < 1
    clone = json.loads(runner.invoke(app, ["space", "--task", "clone", "--budget-mb", "3", "--json"]).output)
    assert clone["configurations"]["feasible"] < defect["configurations"]["feasible"]
    assert _run(["space", "--budget-mb", "0.01"], monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert "size <= budget cannot be met" in err and "smallest model in the space needs" in err


def test_search_then_report(tmp_path, tiny_encoder, defect_data):
    run = tmp_path / "run"
    teacher = ["teacher", "--data", str(defect_data), "--model", str(tiny_encoder), "--out", str(run), "--epochs", "1",
               "--max-length", "32", "--limit", "20", "--eval-limit", "10"]
    assert runner.invoke(app, teacher).exit_code == 0
    tiny = ["vocab_size=300:600:100", "num_hidden_layers=1:2", "hidden_size=16:32:16", "intermediate_size=16:64:16",
            "num_attention_heads=1:2", "max_sequence_length=32:64:32"]
    args = ["search", "--data", str(defect_data), "--soft-labels", str(run / "soft_labels.json"), "--out", str(run),
            "--budget-mb", "0.5", "--samples", "3", "--sample-limit", "30", "--objective", "flops", "--population", "8",
            "--generations", "3", "--workers", "1", "--choices", "position_embedding_type=absolute",
            *(a for r in tiny for a in ("--range", r))]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    chosen = json.loads((run / "chosen_student.json").read_text())
    assert chosen["position_embedding_type"] == "absolute" and 300 <= chosen["vocab_size"] <= 600
    assert "Pareto set:" in result.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "indicator: up to date" in again.output
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert {"pareto.png", "space.png", "indicator.png"} <= {p.name for p in run.iterdir()}
    assert "## Search" in (run / "report.md").read_text()


@pytest.mark.parametrize("command", [
    ["finetune", "--data", "DATA", "--out", "RUN", "--epochs", "1"],
    ["distill", "--data", "DATA", "--soft-labels", "RUN/soft_labels.json", "--out", "RUN"],
    ["export", "--model", "RUN", "--out", "RUN"],
])
def test_a_run_folder_is_never_replaced_by_a_model_or_an_export(tmp_path, defect_data, capsys, monkeypatch, command):
    run = tmp_path / "run"  # what avatar compress leaves: metrics.json at the top, as a model folder has
    (run / "stages").mkdir(parents=True)
    for name in ("config.toml", "metrics.json", "report.md"):
        (run / name).write_text("keep\n")
    args = [a.replace("DATA", str(defect_data)).replace("RUN", str(run)) for a in command]
    assert _run(args, monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("run folder" in err or "not an Avatar model folder" in err), err
    assert sorted(p.name for p in run.iterdir()) == ["config.toml", "metrics.json", "report.md", "stages"]


def test_scan_never_replaces_a_fifo_with_its_report(tmp_path, capsys, monkeypatch, exports):
    import os

    (tmp_path / "a.c").write_text("int f(int x) { return x; }\n")
    fifo = tmp_path / "out.sarif"
    os.mkfifo(fifo)
    args = ["scan", str(tmp_path / "a.c"), "--model", str(exports["defect"]), "--format", "sarif", "-o", str(fifo)]
    assert _run(args, monkeypatch) == 2
    assert "not a regular file" in capsys.readouterr().err and fifo.is_fifo()


def test_an_unknown_teacher_offline_fails_at_once_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import time

    import avatar.modeling as modeling

    probes = []
    monkeypatch.setattr(modeling, "_hub_reachable", lambda: probes.append(1) or False)  # this machine, offline
    start = time.perf_counter()
    assert _run(["compress", "--teacher", "nosuchteacher", "--out", str(tmp_path / "run")], monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: 'nosuchteacher' is not a local folder, 'minilm' or a cached model, and the Hugging Face hub "
                   "cannot be reached (offline?): pass a local model folder or 'minilm'")
    assert probes == [1] and time.perf_counter() - start < 30 and not (tmp_path / "run").exists()


def test_an_error_inside_a_stage_is_the_only_line_on_stderr(tmp_path):
    env = {**os.environ, "AVATAR_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", "from avatar.cli import main; main()", "compress", "--budget-mb", "0.001",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no configuration fits") and proc.stderr.count("\n") == 1, repr(proc.stderr)
