import json
import math

import numpy as np
import pytest

from avatar.errors import AvatarError
from avatar.labels import load_soft_labels
from avatar.predictions import import_predictions, read_predictions
from avatar.tasks import get_task

from conftest import write_clone_data, write_defect_data


@pytest.fixture
def defect(tmp_path):
    task = get_task("defect")
    return task, task.load(write_defect_data(tmp_path / "defect"))


@pytest.fixture
def clone(tmp_path):
    task = get_task("clone")
    return task, task.load(write_clone_data(tmp_path / "clone"))


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_every_format_gives_the_same_soft_labels(tmp_path, defect):
    task, data = defect
    ex = data.unlabelled
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(ex), 2)).round(4)
    jsonl = _write(tmp_path / "p.jsonl", [json.dumps({"idx": int(e.id), "logits": row.tolist()}) for e, row in zip(ex, logits)])
    csv = _write(tmp_path / "p.csv", ["id,logit0,logit1", *(f"{e.id},{a},{b}" for e, (a, b) in zip(ex, logits))])
    tsv = _write(tmp_path / "p.tsv", ["logit1\tid\tlogit0", *(f"{b}\t{e.id}\t{a}" for e, (a, b) in zip(ex, logits))])
    files = [import_predictions(task, f, ex, tmp_path / f"{f.suffix[1:]}.json") for f in (jsonl, csv, tsv)]
    soft = [load_soft_labels(f["file"]) for f in files]
    assert soft[0].logits == soft[1].logits == soft[2].logits and soft[0].kind == "logits"
    assert soft[0].logits[ex[3].id] == pytest.approx(logits[3].tolist())
    assert soft[0].preds[ex[3].id] == int(logits[3][1] > logits[3][0])
    assert len({s.key for s in soft}) == 3  # the key comes from the file's hash
    assert soft[0].data == soft[1].data  # the fingerprint of the unlabelled half, as avatar label writes it


def test_probabilities_become_log_odds_and_labels_stay_hard(tmp_path, defect):
    task, data = defect
    ex = data.unlabelled
    probs = _write(tmp_path / "p.csv", ["id,probability", *(f"{e.id},{0.8 if i % 2 else 0.25}" for i, e in enumerate(ex))])
    s = load_soft_labels(import_predictions(task, probs, ex, tmp_path / "a.json")["file"])
    assert s.kind == "probability" and s.logits[ex[1].id] == pytest.approx([0.0, math.log(4)]) and s.preds[ex[0].id] == 0
    hard = _write(tmp_path / "p.jsonl", [json.dumps({"id": e.id, "label": i % 2}) for i, e in enumerate(ex)])
    summary = import_predictions(task, hard, ex, tmp_path / "b.json")
    s = load_soft_labels(summary["file"])
    assert summary["kind"] == s.kind == "label" and s.logits == {} and s.preds[ex[1].id] == 1


def test_compressor_style_pair_file_with_repeated_pairs(tmp_path, clone):
    task, data = clone
    ex = data.unlabelled
    # CodeXGLUE pairs repeat: give the unlabelled half one pair twice, as BigCloneBench's files have
    lines = [f"{e.function_ids[0]}\t{e.function_ids[1]}\t-1\t{e.label}" for e in ex]
    _, values = read_predictions(task, _write(tmp_path / "p.txt", lines), ex)
    assert all(values[e.id] == (None, e.label) for e in ex)
    repeated = [ex[0]] + ex  # the same pair twice in the data: the file may give it twice, with one value
    ok = [f"{e.function_ids[0]}\t{e.function_ids[1]}\t-1\t{e.label}" for e in repeated]
    read_predictions(task, _write(tmp_path / "r.txt", ok), repeated)
    conflicting = ok[:1] + [f"{repeated[1].function_ids[0]}\t{repeated[1].function_ids[1]}\t-1\t{1 - repeated[1].label}"] + ok[2:]
    with pytest.raises(AvatarError, match=r"r2.txt:2: pair .* again with another prediction \(first at line 1\)"):
        read_predictions(task, _write(tmp_path / "r2.txt", conflicting), repeated)
    with pytest.raises(AvatarError, match=r"r3.txt:2: pair .* more often than the unlabelled half has it"):
        read_predictions(task, _write(tmp_path / "r3.txt", lines[:1] + lines), ex)


@pytest.mark.parametrize("lines,message", [
    (lambda ex: ["id,logit0,logit1", f"{ex[0].id},1,nan"], r"p.csv:2: logit 'nan' is not a finite number"),
    (lambda ex: ["id,probability", f"{ex[0].id},1.5"], r"p.csv:2: probability '1.5' is outside \[0, 1\]"),
    (lambda ex: ["id,label", f"{ex[0].id},2"], r"p.csv:2: label '2' is not a class of the task \(0, 1\)"),
    (lambda ex: ["id,label", "no-such-id,1"], r"p.csv:2: id 'no-such-id' is not an example of the unlabelled half"),
    (lambda ex: ["id,label", f"{ex[0].id},1", f"{ex[0].id},1"], r"p.csv:3: duplicate id .* \(first at line 2\)"),
    (lambda ex: ["idx,label", f"{ex[0].id},1"], r"p.csv: \d+ unlabelled example\(s\) have no prediction, e.g. id '\d+'"),
    (lambda ex: ["name,label"], r"p.csv:1: the header lacks the key column 'id'"),
    (lambda ex: ["id,label,probability"], r"p.csv:1: the header must name exactly one of"),
    (lambda ex: ["id,label", f"{ex[0].id}"], r"p.csv:2: expected 2 fields"),
])
def test_bad_predictions_are_one_line_naming_file_and_line_and_write_nothing(tmp_path, defect, lines, message):
    task, data = defect
    path = _write(tmp_path / "p.csv", lines(data.unlabelled))
    with pytest.raises(AvatarError, match=message):
        import_predictions(task, path, data.unlabelled, tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_bad_jsonl_and_extension(tmp_path, defect):
    task, data = defect
    ex = data.unlabelled
    for lines, message in (
        (["{not json"], r"p.jsonl:1: malformed JSON"),
        ([json.dumps({"id": ex[0].id, "label": 1, "probability": 0.2})], r"p.jsonl:1: give exactly one of"),
        ([json.dumps({"label": 1})], r"p.jsonl:1: missing field 'id'"),
        ([json.dumps({"id": ex[0].id, "logits": [1]})], r"p.jsonl:1: logits must be 2 numbers, one per class"),
        ([json.dumps({"id": ex[0].id, "label": 1}), json.dumps({"id": ex[1].id, "probability": 0.3})], r"p.jsonl:2: this line gives probability"),
    ):
        with pytest.raises(AvatarError, match=message):
            read_predictions(task, _write(tmp_path / "p.jsonl", lines), ex)
    with pytest.raises(AvatarError, match="unknown predictions format '.xlsx'"):
        read_predictions(task, _write(tmp_path / "p.xlsx", ["x"]), ex)


def test_hard_labels_are_distilled_with_cross_entropy(tmp_path):
    from avatar.distill import distill
    from avatar.settings import DistillConfig

    from test_distill import TINY

    task = get_task("defect")
    data = task.load(write_defect_data(tmp_path / "data", sizes=(400, 60, 60)))
    hard = _write(tmp_path / "p.jsonl", [json.dumps({"id": e.id, "label": e.label}) for e in data.unlabelled])  # a perfect teacher
    soft = load_soft_labels(import_predictions(task, hard, data.unlabelled, tmp_path / "s.json")["file"])
    m = distill(task, data, soft, TINY, tmp_path / "student", DistillConfig(epochs=8, label_smoothing=0.1, patience=None, seed=0))
    assert m["teacher_kind"] == "label" and "label smoothing 0.1; the temperature does not apply" in m["loss"]
    assert m["test"]["accuracy"] >= 0.85, m["history"]


def test_label_command_takes_a_predictions_file(tmp_path, defect_data):
    from typer.testing import CliRunner

    from avatar.cli import app

    data = get_task("defect").load(defect_data)
    hard = _write(tmp_path / "p.txt", [f"{e.id}\t{e.label}" for e in data.unlabelled])
    r = CliRunner().invoke(app, ["label", "--predictions", str(hard), "--out", str(tmp_path / "s.json"), "--data", str(defect_data)])
    assert r.exit_code == 0, r.output
    assert f"{len(data.unlabelled)} soft labels" in r.output and "([distill] label_smoothing); the temperature does not apply" in r.output
    r = CliRunner().invoke(app, ["label", "--out", str(tmp_path / "t.json"), "--data", str(defect_data)])
    assert isinstance(r.exception, AvatarError) and "give either --teacher" in str(r.exception)
