import json

import pytest

from avatar.errors import AvatarError
from avatar.measure import ratios
from avatar.report import headline, ratio_lines, write_report


def _result(role, params, ms, joules, acc, tokens=200.0, resolved=True):
    return {
        "role": role, "model": role, "parameters": params, "size_mb": 4 * params / 2**20, "size_bytes": 4 * params,
        "size_basis": "fp32 weights", "inputs": {"functions": 50, "tokens_per_input": tokens, "tokenisation": "its own"},
        "test": None if acc is None else {"accuracy": acc, "roc_auc": acc + 0.05,
                                          "interval95": {"accuracy": [acc - 0.02, acc + 0.02], "roc_auc": [acc + 0.02, acc + 0.08]},
                                          "baseline": {"accuracy": 0.54, "roc_auc": 0.5}, "examples": 55, "prediction_spread": 0.1,
                                          "correct": [1] * 30 + [0] * 25 if role == "teacher" else [0] * 30 + [1] * 25},
        "latency_ms": {"median": ms, "p90": ms, "runs": 5, "threads": 2},
        "throughput": {"examples_per_second": 1000 / ms, "batch_size": 32},
        "energy": {"method": "estimate", "joules_per_example": joules, "resolved": resolved, "model": "TDP x CPU-seconds",
                   "idle_watts": None, "blocks": 3, "block_seconds": 2.0},
        "carbon": {"grams_per_1000_examples": joules * 0.1, "g_per_kwh": 475, "region": "world", "source": "test"},
    }


RESULTS = [_result("teacher", 22_700_000, 50.0, 2.0, 0.57), _result("student", 750_000, 5.0, 0.1, 0.56, tokens=180.0),
           _result("codebert-base", 125_000_000, 500.0, 20.0, None, tokens=230.0)]
METRICS = {
    "task": "defect", "main_metric": "accuracy", "results": RESULTS,
    "student_vs_teacher": ratios(RESULTS[0], RESULTS[1], "accuracy"),
    "student_vs_architectures": {"codebert-base": ratios(RESULTS[2], RESULTS[1], "accuracy")},
}


def test_headline_table_and_ratio_lines_carry_the_energy_method_and_what_was_equal():
    columns, rows = headline(METRICS)
    assert columns == ["", "teacher", "student", "codebert-base (random weights)"]
    table = {r[0]: r[1:] for r in rows}
    assert table["test accuracy [95 % interval]"] == ["0.5700 [0.550, 0.590]", "0.5600 [0.540, 0.580]", "n/a"]
    assert table["majority-class baseline accuracy"] == ["0.5400", "0.5400", "n/a"]
    # every score the test carries an interval for, each with its baseline, after the main one
    assert table["test roc_auc [95 % interval]"] == ["0.6200 [0.590, 0.650]", "0.6100 [0.580, 0.640]", "n/a"]
    assert table["chance (a constant or random score) baseline roc_auc"] == ["0.5000", "0.5000", "n/a"]
    assert [r[0] for r in rows][:4] == ["test accuracy [95 % interval]", "majority-class baseline accuracy",
                                        "test roc_auc [95 % interval]", "chance (a constant or random score) baseline roc_auc"]
    assert table["tokens per input (mean over the same 50 test functions)"] == ["200", "180", "230"]
    assert all("(estimate)" in cell for cell in table["energy J/example"] + table["gCO2e / 1000 examples"])
    lines = ratio_lines(METRICS)
    assert lines[0].startswith("student vs the teacher: 30.3x smaller (fp32 weights), 10.0x faster, 20.0x less energy (estimate) "
                               "(at equal input: the same 50 test functions, batch 1, 2 threads; 200 vs 180 tokens per input); "
                               "accuracy -0.0100 (McNemar p = ")
    assert lines[1].startswith("student vs codebert-base: 166.7x smaller (fp32 weights), 100.0x faster")
    # the student's interval [0.54, 0.58] reaches the baseline 0.54; the teacher's [0.55, 0.59] does not
    assert lines[2:] == ["The student has learned nothing measurable: its test accuracy interval [0.540, 0.580] reaches the "
                         "majority-class baseline 0.5400."]


def test_an_unresolved_energy_figure_gives_no_ratio_and_says_so():
    results = [RESULTS[0], _result("student", 750_000, 5.0, 0.0001, 0.56, resolved=False)]
    metrics = {**METRICS, "results": results, "student_vs_teacher": ratios(results[0], results[1], "accuracy"),
               "student_vs_architectures": {}}
    table = {r[0]: r[1:] for r in headline(metrics)[1]}
    assert table["energy J/example"][1] == "unresolved (estimate)"
    assert "energy difference not resolved by the estimate method" in ratio_lines(metrics)[0]


def test_full_report_from_artefacts(tmp_path):
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "measure.json").write_text(json.dumps({"seconds": 3.0, "result": {}}))
    (tmp_path / "metrics.json").write_text(json.dumps(METRICS))
    row = {"tokenizer": "BPE", "vocab_size": 1000, "predicted_effectiveness": 0.55, "latency_ms": 4.0, "size_mb": 2.9, "predicted_std": 0.01}
    (tmp_path / "pareto.json").write_text(json.dumps({"objectives": ["predicted_effectiveness", "latency_ms", "size_mb"], "rows": [row, {**row, "latency_ms": 2.0, "predicted_effectiveness": 0.5}]}))
    (tmp_path / "stages" / "choose.json").write_text(json.dumps({"seconds": 0.1, "result": {"index": 0, "prefer": "effectiveness", "row": row}}))
    (tmp_path / "indicator").mkdir()
    (tmp_path / "indicator" / "indicator.json").write_text(json.dumps({"choice": "extra_trees", "scores": [0.5, 0.55, 0.52], "report": {
        "extra_trees": {"loocv_mae": 0.02, "kendall_tau": 0.33, "loocv_predictions": [0.51, 0.53, 0.52]},
        "predict_mean_baseline": {"loocv_mae": 0.03, "kendall_tau": None}}}))
    written = write_report(tmp_path)
    assert written["plots"] == ["comparison.png", "pareto.png", "indicator.png"]
    for plot in written["plots"]:
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "report.md").read_text()
    assert "| energy J/example | 2 (estimate) | 0.1 (estimate) | 20 (estimate) |" in text
    assert "extra_trees (chosen) | 0.0200 | 0.330" in text
    assert "Predicted short-budget validation score 0.5500 ± 0.0100" in text


def test_search_only_run_gets_the_sections_it_has(tmp_path):
    from avatar.cost import MB
    from avatar.smt import Constraints, analyse
    from avatar.space import Space

    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "space.json").write_text(json.dumps({"seconds": 1.0, "result": {}}))
    space = Space.paper()
    (tmp_path / "space.json").write_text(json.dumps(analyse(space, Constraints(3 * MB, 1)).to_dict(space)))
    assert write_report(tmp_path)["plots"] == ["space.png"]
    text = (tmp_path / "report.md").read_text()
    assert "## Configuration space (SMT pruning)" in text and "Teacher vs student" not in text


def test_not_a_run_directory(tmp_path):
    with pytest.raises(AvatarError, match="not an Avatar run directory"):
        write_report(tmp_path)
    assert not (tmp_path / "report.md").exists()
