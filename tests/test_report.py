import json

import pytest

from avatar.errors import AvatarError
from avatar.report import headline, ratio_lines, write_report


def _result(role, params, ms, joules, acc):
    return {
        "role": role, "model": role, "parameters": params, "size_mb": 4 * params / 2**20, "size_bytes": 4 * params,
        "test": None if acc is None else {"accuracy": acc, "interval95": {"accuracy": [acc - 0.02, acc + 0.02]},
                                          "majority_baseline": {"accuracy": 0.54}}, "latency_ms": {"median": ms, "p90": ms, "runs": 5, "threads": 2},
        "throughput": {"examples_per_second": 1000 / ms}, "energy": {"method": "estimate", "joules_per_example": joules},
        "carbon": {"grams_per_1000_examples": joules * 0.1, "g_per_kwh": 475, "region": "world", "source": "test"},
    }


METRICS = {
    "task": "defect", "main_metric": "accuracy",
    "results": [_result("teacher", 22_700_000, 50.0, 2.0, 0.57), _result("student", 750_000, 5.0, 0.1, 0.56),
                _result("codebert-base", 125_000_000, 500.0, 20.0, None)],
    "student_vs_teacher": {"size_x": 30.3, "latency_x": 10.0, "energy_x": 20.0, "energy_method": "estimate", "score_difference": -0.01,
                           "mcnemar": {"only_first_right": 30, "only_second_right": 25, "p_value": 0.59}},
    "student_vs_architectures": {"codebert-base": {"size_x": 166.7, "latency_x": 100.0, "energy_x": 200.0, "energy_method": "estimate"}},
}


def test_headline_table_and_ratio_lines_carry_the_energy_method():
    columns, rows = headline(METRICS)
    assert columns == ["", "teacher", "student", "codebert-base (random weights)"]
    table = {r[0]: r[1:] for r in rows}
    assert table["test accuracy [95 % interval]"] == ["0.5700 [0.550, 0.590]", "0.5600 [0.540, 0.580]", "n/a"]
    assert table["majority-class accuracy"] == ["0.5400", "0.5400", "n/a"]
    assert all("(estimate)" in cell for cell in table["energy J/example"] + table["gCO2e / 1000 examples"])
    lines = ratio_lines(METRICS)
    assert lines[0] == ("student vs the teacher: 30.3x smaller, 10.0x faster, 20.0x less energy (estimate); accuracy -0.0100 "
                        "(McNemar p = 0.59 on the same test examples)")
    assert lines[1].startswith("student vs codebert-base: 166.7x smaller")


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
    assert "Predicted (short-budget) validation score 0.5500 ± 0.0100" in text


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
