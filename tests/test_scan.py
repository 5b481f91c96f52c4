"""avatar scan and avatar clones: what is found, scored, sorted, bounded and reported (text, JSON, SARIF)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from avatar.cli import app
from avatar.errors import AvatarError
from avatar.runtime.model import ExportedModel
from avatar.runtime.scan import clones, clones_json, scan, scan_json, scan_sarif, scan_text

FIXTURES = Path(__file__).parent / "fixtures"
CODE = FIXTURES / "code"
runner = CliRunner()


def test_scan_scores_every_function_riskiest_first(exports):
    model = ExportedModel(exports["defect"])
    result = scan([CODE / "c"], model, threshold=0.0)
    assert result.files == 3 and len(result.scored) == 16
    probs = [s.probability for s in result.scored]
    assert probs == sorted(probs, reverse=True)
    direct = model.probabilities([(s.function.code,) for s in result.scored])
    assert probs == pytest.approx(list(direct), abs=1e-6)  # batched by length, scored as one
    cut = sorted(probs)[5]
    flagged = [s.probability for s in scan([CODE / "c"], model, threshold=cut).flagged]
    assert flagged == [p for p in probs if p >= cut] and 0 < len(flagged) < 16


def test_text_and_json_reports(exports):
    result = scan([CODE / "c" / "sub" / "copy.c"], ExportedModel(exports["defect"]), threshold=0.0)
    text = scan_text(result).splitlines()
    assert len(text) == 3 and text[-1].startswith("2 of 2 function(s) in 1 file(s) at or above the threshold 0 (given)")
    assert {line.split()[1] for line in text[:2]} == {f"{CODE}/c/sub/copy.c:3-6", f"{CODE}/c/sub/copy.c:8-16"}
    doc = json.loads(scan_json(result))
    assert doc["functions"] == 2 and doc["precision"] == "int8"
    assert {(r["name"], r["start_line"], r["end_line"]) for r in doc["results"]} == {("copy_name", 3, 6), ("main", 8, 16)}


def test_sarif_has_the_required_structure(exports, tmp_path, monkeypatch):
    monkeypatch.chdir(CODE)  # paths under the working folder become relative URIs on %SRCROOT%
    result = scan([Path("c")], ExportedModel(exports["defect"]), threshold=0.0, warn=lambda m: None)
    log = json.loads(scan_sarif(result))
    schema = json.loads((FIXTURES / "sarif-2.1.0-required.schema.json").read_text())
    checker = jsonschema.FormatChecker()
    assert "uri-reference" in checker.checkers  # rfc3986-validator is installed: URI formats are really checked
    jsonschema.validate(log, schema, format_checker=checker)
    results = log["runs"][0]["results"]
    assert len(results) == 16
    by_name = {r["locations"][0]["logicalLocations"][0]["name"]: r for r in results}
    loc = by_name["old_style"]["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"] == {"uri": "c/tricky.c", "uriBaseId": "%SRCROOT%"}
    assert loc["region"] == {"startLine": 14, "endLine": 19}
    assert all(r["ruleId"] == log["runs"][0]["tool"]["driver"]["rules"][r["ruleIndex"]]["id"] for r in results)
    assert log["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"].endswith("/")


def test_the_default_threshold_is_the_one_chosen_on_validation_and_the_reports_say_what_it_means(exports, tmp_path):
    import shutil

    from avatar.runtime.model import MANIFEST

    model = ExportedModel(exports["defect"])
    result = scan([CODE / "c"], model)
    d = model.decision
    assert result.threshold == d["threshold"] and not result.threshold_given
    assert [s.probability for s in result.flagged] == [s.probability for s in result.scored if s.probability >= d["threshold"]]
    line = scan_text(result).splitlines()[-1]
    assert f"at or above the threshold {d['threshold']:.4g} (the best F1 on the validation split; precision " in line
    assert f"{d['test']['precision']:.2f} / {d['test']['recall']:.2f} on test" in line
    doc = json.loads(scan_json(result))
    assert doc["decision"]["rule"] == d["rule"] and doc["decision"]["validation"] == d["validation"]
    rule = json.loads(scan_sarif(result))["runs"][0]["tool"]["driver"]["rules"][0]
    assert rule["properties"]["validation_precision"] == d["validation"]["precision"] and rule["properties"]["calibrated"]
    assert rule["properties"]["test_recall"] == d["test"]["recall"] and rule["properties"]["threshold"] == d["threshold"]
    # levels follow the calibrated probability: error only from ERROR_AT
    from avatar.runtime.scan import ERROR_AT, _level

    assert _level(result, ERROR_AT) == "error" and _level(result, ERROR_AT - 1e-9) == "warning"
    # a model that learned nothing says so, once, as a warning
    folder = tmp_path / "nothing"
    shutil.copytree(exports["defect"], folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["decisions"]["int8"]["learned_nothing"] = "has learned nothing usable: its predictions barely vary"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    warnings = []
    result = scan([CODE / "c"], ExportedModel(folder), warn=warnings.append)
    assert warnings == ["this model has learned nothing usable: its predictions barely vary; its scores mean nothing"]
    assert json.loads(scan_json(result))["warnings"] == warnings


def test_sarif_rejects_what_is_not_sarif():
    """The schema the test above relies on can fail: a result without a message, a line 0, a wrong version."""
    schema = json.loads((FIXTURES / "sarif-2.1.0-required.schema.json").read_text())
    good = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": [
        {"message": {"text": "m"}, "locations": [{"physicalLocation": {"artifactLocation": {"uri": "a.c"}, "region": {"startLine": 1}}}]}]}]}
    jsonschema.validate(good, schema)
    for broken in ({**good, "version": "2.0.0"},
                   {"version": "2.1.0", "runs": [{"tool": {"driver": {}}}]},
                   {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": [{"ruleId": "r"}]}]},
                   json.loads(json.dumps(good).replace('"startLine": 1', '"startLine": 0')),
                   json.loads(json.dumps(good).replace('"startLine"', '"startline"')),  # misspelt: SARIF has no such property
                   json.loads(json.dumps(good).replace('"uri": "a.c"', '"uri": "a b\\\\c"'))):  # not a URI reference
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema, format_checker=jsonschema.FormatChecker())


def test_scan_needs_a_defect_model_and_a_probability(exports):
    with pytest.raises(AvatarError, match=r"avatar scan needs a model that reads one function; this one \(clone\) reads a pair of functions: use avatar clones"):
        scan([CODE / "c"], ExportedModel(exports["clone"]))
    with pytest.raises(AvatarError, match="--threshold must be a probability"):
        scan([CODE / "c"], ExportedModel(exports["defect"]), threshold=1.5)


def test_clones_across_two_folders(exports):
    model = ExportedModel(exports["clone"], "fp32")  # int8 scores move slightly with what else is in the batch
    result = clones([CODE / "java" / "a"], [CODE / "java" / "b"], model, threshold=0.0)
    assert (result.functions_a, result.functions_b, result.candidate_pairs, result.scored_pairs) == (5, 2, 10, 10)
    probs = [c.probability for c in result.pairs]
    assert probs == sorted(probs, reverse=True) and len(probs) == 10
    pair = next(c for c in result.pairs if (c.a.name, c.b.name) == ("Sorter.bubbleSort", "Other.sortDescending"))
    assert pair.probability == pytest.approx(float(model.probabilities([(pair.a.code, pair.b.code)])[0]), abs=1e-5)
    doc = json.loads(clones_json(result))
    assert doc["scored_pairs"] == 10 and doc["pairs"][0]["a"]["path"].endswith("Sorter.java")


def test_clones_within_one_folder_and_the_pair_bound(exports):
    model = ExportedModel(exports["clone"])
    within = clones([CODE / "java"], [CODE / "java"], model, threshold=0.0)
    assert within.candidate_pairs == 21 and within.scored_pairs == 21  # 7 functions, each unordered pair once
    assert all((c.a.path, c.a.start_line) != (c.b.path, c.b.start_line) for c in within.pairs)
    warnings = []
    cut = clones([CODE / "java"], [CODE / "java"], model, threshold=0.0, max_pairs=5, warn=warnings.append)
    assert cut.scored_pairs == 5 and cut.candidate_pairs == 21
    # (the tiny fixture's clone model has learned nothing, and says so first)
    assert warnings[-1:] == ["scored the first 5 of 21 function pairs (--max-pairs 5); narrow A or B, or raise the bound"]
    assert all(w.startswith("this model has learned nothing") for w in warnings[:-1])
    with pytest.raises(AvatarError, match="avatar clones needs a model that reads a pair of functions"):
        clones([CODE / "java"], [CODE / "java"], ExportedModel(exports["defect"]))


def test_clones_never_pair_a_function_with_itself_when_a_and_b_overlap(exports):
    model = ExportedModel(exports["clone"], "fp32")
    a_file = CODE / "java" / "a" / "Sorter.java"
    overlap = clones([CODE / "java"], [a_file], model, threshold=0.0)
    # 7 x 5 pairs, less the 5 self-pairs and the 10 pairs of Sorter.java found from both sides twice
    assert overlap.candidate_pairs == overlap.scored_pairs == 7 * 5 - 5 - 10
    keys = [frozenset({(c.a.path, c.a.start_line), (c.b.path, c.b.start_line)}) for c in overlap.pairs]
    assert all(len(k) == 2 for k in keys) and len(set(keys)) == len(keys)
    relative = clones([CODE / "java" / "a"], [Path(os.path.relpath(CODE / "java" / "a"))], model, threshold=0.0)
    assert relative.candidate_pairs == 10  # the same folder named two ways


def test_cli_scan_writes_sarif_and_reports_errors_in_one_line(exports, tmp_path):
    out = tmp_path / "report.sarif"
    r = runner.invoke(app, ["scan", str(CODE / "c"), "--model", str(exports["defect"]), "--format", "sarif", "-o", str(out),
                            "--threshold", "0"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(out.read_text())["runs"][0]["results"]) == 16
    for args, message in (
        (["scan", str(tmp_path / "nope.c"), "--model", str(exports["defect"])], "no such file or folder"),
        (["scan", str(CODE / "c"), "--model", str(tmp_path / "missing")], "model folder not found"),
        (["scan", str(CODE / "c"), "--model", str(exports["defect"]), "--format", "xml"], "--format must be one of"),
        (["scan", str(CODE / "c"), "--model", str(exports["defect"]), "--precision", "fp16"], "--precision must be one of"),
        (["clones", str(CODE / "java"), str(CODE / "java"), "--model", str(exports["defect"])], "needs a model that reads a pair of functions"),
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == 1 and isinstance(r.exception, AvatarError) and message in str(r.exception), (args, r.output)


def test_cli_model_order_is_flag_env_run_folder_then_the_built_in(exports, tmp_path, monkeypatch):
    import shutil

    from avatar.runtime.model import builtin_model

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AVATAR_MODEL", raising=False)
    r = runner.invoke(app, ["scan", str(CODE / "c")])
    assert r.exit_code == 0 and "using the built-in Devign student (int8" in r.output, r.output
    assert f"its card: {builtin_model(1) / 'README.md'}" in r.output and "16 function(s) in 3 file(s)" in r.output
    r = runner.invoke(app, ["clones", str(CODE / "java"), str(CODE / "java")])  # no pair model is packaged
    assert isinstance(r.exception, AvatarError) and "no model at avatar-run: run `avatar compress` first" in str(r.exception)
    shutil.copytree(exports["defect"], tmp_path / "avatar-run" / "onnx")
    r = runner.invoke(app, ["scan", str(CODE / "c"), "--threshold", "0"])
    assert r.exit_code == 0 and "16 of 16 function(s) in 3 file(s)" in r.output and "built-in" not in r.output
    monkeypatch.setenv("AVATAR_MODEL", str(tmp_path / "elsewhere"))
    r = runner.invoke(app, ["scan", str(CODE / "c")])
    assert isinstance(r.exception, AvatarError) and "set by $AVATAR_MODEL" in str(r.exception)
    r = runner.invoke(app, ["scan", str(CODE / "c"), "--model", str(exports["defect"]), "--threshold", "0"])
    assert r.exit_code == 0 and "16 of 16" in r.output


def test_cli_output_errors_are_one_line_exit_2(exports, tmp_path, capsys, monkeypatch):
    import sys

    from avatar.cli import main

    (tmp_path / "file.txt").write_text("a file, not a folder")
    for target, message in ((tmp_path, f"error: {tmp_path}: output is a folder; give a file name"),
                            (tmp_path / "file.txt" / "x.sarif", f"error: {tmp_path / 'file.txt'}: ")):  # the OS refuses
        monkeypatch.setattr(sys, "argv", ["avatar", "scan", str(CODE / "c"), "--model", str(exports["defect"]), "-o", str(target)])
        with pytest.raises(SystemExit) as exit_info:
            main()
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and err.startswith(message), err
    assert (tmp_path / "file.txt").read_text() == "a file, not a folder"
