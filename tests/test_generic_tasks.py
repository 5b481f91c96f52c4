"""Bring your own task: classify and pairs on a user's own files (JSONL, CSV, TSV), any classes, several languages.

The synthetic 3-class task: a keyword decides the class (strcpy -> overflow, strncpy -> clean, sort -> smell).
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from avatar.errors import AvatarError
from avatar.runtime.functions import functions_in_source
from avatar.tasks import fingerprint, get_task

from conftest import FILLER, _function

KEYWORDS = {"overflow": "strcpy", "clean": "strncpy", "smell": "sort"}


def _records(n: int, rng: random.Random, start: int) -> list[dict]:
    classes = list(KEYWORDS)
    return [{"id": start + i, "code": _function(rng, KEYWORDS[classes[i % 3]]), "cwe": classes[i % 3]} for i in range(n)]


def write_classes_data(root: Path, fmt: str = "jsonl", sizes=(150, 45, 45), task_file: str | None = None, seed: int = 0) -> Path:
    """A 3-class data set in ``fmt`` (jsonl, csv or tsv) with the fields code / cwe / id, described by a task.toml."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    start = 0
    for split, n in zip(("train", "valid", "test"), sizes):
        rows = _records(n, rng, start)
        start += n
        if fmt == "jsonl":
            (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            with open(root / f"{split}.{fmt}", "w", newline="") as f:
                w = csv.DictWriter(f, ["id", "code", "cwe"], delimiter="," if fmt == "csv" else "\t")
                w.writeheader()
                w.writerows(rows)
    (root / "task.toml").write_text(task_file if task_file is not None else
                                    'language = "c"\ncode_field = "code"\nlabel_field = "cwe"\nid_field = "id"\npositive = ["overflow"]\n')
    return root


def write_pairs_data(root: Path, fmt: str = "csv", sizes=(120, 40, 40), seed: int = 0, three: bool = False) -> Path:
    """Pairs of functions: 'same' when both are of one kind; functions in data.csv. ``three``: three classes,
    'different' or which kind both are ('same-parse', 'same-sort')."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    words = {k: FILLER[i * 20 : (i + 1) * 20] for i, k in enumerate(("sort", "parse"))}
    funcs = {f"{k}{j}": (k, _function(rng, k, words=words[k])) for k in words for j in range(12)}
    with open(root / "data.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["idx", "func"])
        w.writerows([i, code] for i, (_, code) in funcs.items())
    ids = list(funcs)
    for split, n in zip(("train", "valid", "test"), sizes):
        rows = []
        for i in range(n):
            want = i % 2
            while True:
                a, b = rng.sample(ids, 2)
                if (funcs[a][0] == funcs[b][0]) == bool(want):
                    break
            verdict = ("same-" + funcs[a][0] if three else "same") if want else "different"
            rows.append({"idx1": a, "idx2": b, "verdict": verdict})
        if fmt == "jsonl":
            (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            with open(root / f"{split}.csv", "w", newline="") as f:
                w = csv.DictWriter(f, ["idx1", "idx2", "verdict"])
                w.writeheader()
                w.writerows(rows)
    classes = '["different", "same-parse", "same-sort"]\npositive = ["same-parse", "same-sort"]' if three else '["different", "same"]'
    (root / "task.toml").write_text(f'language = "python"\nlabel_field = "verdict"\nclasses = {classes}\n')
    return root


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv"])
def test_classify_reads_each_format_with_three_classes(tmp_path, fmt):
    task = get_task("classify", write_classes_data(tmp_path / fmt, fmt))
    data = task.load(tmp_path / fmt)
    assert task.classes == ("clean", "overflow", "smell")  # those train has, sorted
    assert task.positive == ("overflow",) and task.num_classes == 3 and task.main_metric == "macro_f1"
    assert len(data.labelled) + len(data.unlabelled) == 150 and len(data.valid) == 45
    first = data.valid[0]
    assert first.id == "150" and task.classes[first.label] == "overflow" and KEYWORDS["overflow"] in first.texts[0]


def test_every_format_reads_the_same_examples(tmp_path):
    loaded = {fmt: get_task("classify", write_classes_data(tmp_path / fmt, fmt)).load(tmp_path / fmt) for fmt in ("jsonl", "csv", "tsv")}
    prints = {fmt: [fingerprint(d.split(s)) for s in ("labelled", "unlabelled", "valid", "test")] for fmt, d in loaded.items()}
    assert prints["jsonl"] == prints["csv"] == prints["tsv"]


def test_two_classes_of_strings_keep_the_given_order(tmp_path):
    root = write_classes_data(tmp_path / "d", task_file='code_field = "code"\nlabel_field = "cwe"\nclasses = ["clean", "overflow", "smell"]\n'
                              'metric = "accuracy"\n')
    task = get_task("classify", root)
    task.load(root)
    assert task.classes == ("clean", "overflow", "smell") and task.main_metric == "accuracy" and task.positive == ()
    binary = tmp_path / "b"
    write_classes_data(binary, sizes=(150, 45, 45))
    for split in ("train", "valid", "test"):  # two classes: "overflow" and a merged "ok"
        rows = [json.loads(line) for line in (binary / f"{split}.jsonl").read_text().splitlines()]
        (binary / f"{split}.jsonl").write_text("".join(json.dumps({**r, "cwe": "overflow" if r["cwe"] == "overflow" else "ok"}) + "\n"
                                                       for r in rows))
    (binary / "task.toml").write_text('code_field = "code"\nlabel_field = "cwe"\nclasses = ["ok", "overflow"]\n')
    task = get_task("classify", binary)
    data = task.load(binary)
    assert task.positive == ("overflow",) and task.main_metric == "accuracy" and {ex.label for ex in data.test} == {0, 1}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_pairs_read_a_functions_file_and_pair_files(tmp_path, fmt):
    root = write_pairs_data(tmp_path / "p", fmt)
    task = get_task("pairs", root)
    data = task.load(root)
    assert task.classes == ("different", "same") and task.positive == ("same",) and task.main_metric == "f1"
    assert task.language == "python" and task.num_inputs == 2
    first = data.valid[0]
    assert len(first.texts) == 2 and len(first.function_ids) == 2
    assert first.id == ("valid:2" if fmt == "csv" else "valid:1")  # the file's line: a CSV's first is its header


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_pair_files_may_name_their_id_fields(tmp_path, fmt):
    plain = write_pairs_data(tmp_path / "plain", fmt)
    named = write_pairs_data(tmp_path / "named", fmt)
    for split in ("train", "valid", "test"):  # the same pairs under other field names
        path = named / f"{split}.{fmt}"
        path.write_text(path.read_text().replace("idx1", "left").replace("idx2", "right"))
    with open(named / "task.toml", "a") as f:
        f.write('pair_fields = ["left", "right"]\n')
    a, b = get_task("pairs", plain).load(plain), get_task("pairs", named).load(named)
    assert [fingerprint(a.split(s)) for s in ("labelled", "unlabelled", "valid", "test")] == \
        [fingerprint(b.split(s)) for s in ("labelled", "unlabelled", "valid", "test")]
    assert b.valid[0].function_ids == a.valid[0].function_ids
    from avatar.predictions import read_predictions  # a teacher's predictions are keyed by the same fields
    pairs = b.unlabelled
    preds = named / "teacher.csv"
    preds.write_text("left,right,label\n" + "".join(f"{e.function_ids[0]},{e.function_ids[1]},same\n" for e in pairs))
    _, values = read_predictions(get_task("pairs", named), preds, pairs)
    assert all(values[e.id] == (None, 1) for e in pairs)


@pytest.mark.parametrize("line,message", [
    ('pair_fields = ["left"]', 'task.toml:4: pair_fields must name two different fields, like ["idx1", "idx2"]'),
    ('pair_fields = ["idx1", "idx1"]', "task.toml:4: pair_fields must name two different fields"),
    ('pair_fields = ["left", "right"]', "train.csv:2: missing field 'left' (fields: idx1, idx2, verdict)"),
])
def test_pair_fields_bad_input(tmp_path, line, message):
    root = write_pairs_data(tmp_path / "p")
    with open(root / "task.toml", "a") as f:
        f.write(line + "\n")
    with pytest.raises(AvatarError) as err:
        get_task("pairs", root).load(root)
    assert message in str(err.value), str(err.value)
    classify = write_classes_data(tmp_path / "c", task_file='code_field = "code"\nlabel_field = "cwe"\npair_fields = ["a", "b"]\n')
    with pytest.raises(AvatarError, match=r"task.toml:3: pair_fields is for tasks of pairs"):
        get_task("classify", classify)


def _bad(root: Path, file: str, line: int, text: str) -> None:
    lines = (root / file).read_text().splitlines()
    lines[line - 1] = text
    (root / file).write_text("\n".join(lines) + "\n")


CLASSIFY_CASES = [
    ("task.toml", 2, 'codefield = "code"', "task.toml:2: unknown key 'codefield'"),
    ("task.toml", 1, 'language = "cobol"', "task.toml:1: language must be one of c, cpp, java, python, javascript, go"),
    ("task.toml", 5, 'positive = ["buffer"]', "task.toml:5: positive class 'buffer' is not one of the classes"),
    ("train.jsonl", 4, '{"id": 900, "cwe": "clean"}', "train.jsonl:4: missing field 'code'"),
    ("valid.jsonl", 3, '{"id": 901, "code": "x", "cwe": "race"}', "valid.jsonl:3: label 'race' is not a class of train (clean, overflow, smell)"),
    ("test.jsonl", 2, '{"id": 902, "code": "x", "cwe": 3}', "test.jsonl:2: mixed label types: int here, str at train.jsonl:1"),
    ("test.jsonl", 2, '{"id": 903, "code": "x", "cwe": null}', "test.jsonl:2: field 'cwe' has the wrong type"),
    ("train.jsonl", 5, '{"ident": 904, "code": "x", "cwe": "clean"}', "train.jsonl:5: missing field 'id'"),  # the task file names it
]


@pytest.mark.parametrize("file,line,text,message", CLASSIFY_CASES)
def test_classify_bad_input_is_one_line_with_file_and_line(tmp_path, file, line, text, message):
    root = write_classes_data(tmp_path / "d", task_file='language = "c"\ncode_field = "code"\nlabel_field = "cwe"\nid_field = "id"\n'
                                                       'positive = ["overflow"]\n')
    _bad(root, file, line, text)
    with pytest.raises(AvatarError) as err:
        get_task("classify", root).load(root)
    assert message in str(err.value) and str(err.value).startswith(str(root / file)), str(err.value)


def test_a_named_class_without_training_examples_points_at_the_task_file(tmp_path):
    root = write_classes_data(tmp_path / "d", task_file='code_field = "code"\nlabel_field = "cwe"\n'
                                                       'classes = ["clean", "overflow", "race", "smell"]\n')
    with pytest.raises(AvatarError, match=r"task.toml:3: class 'race' has no training example in train.jsonl"):
        get_task("classify", root).load(root)


def test_two_classes_put_the_finding_second(tmp_path):
    root = write_classes_data(tmp_path / "d", task_file='classes = ["yes", "no"]\npositive = ["yes"]\n')
    with pytest.raises(AvatarError, match=r"task.toml:1: in a two-class task the class that means a finding is the second one"):
        get_task("classify", root)


def test_pairs_bad_input(tmp_path):
    root = write_pairs_data(tmp_path / "p")
    _bad(root, "valid.csv", 3, "sort0,ghost,same")
    with pytest.raises(AvatarError, match=r"valid.csv:3: function id 'ghost' is not in data.csv"):
        get_task("pairs", root).load(root)
    root = write_pairs_data(tmp_path / "q")
    (root / "data.jsonl").write_text("")
    with pytest.raises(AvatarError, match=r"two functions files \(data.jsonl and data.csv\)"):
        get_task("pairs", root).load(root)


def test_spreadsheet_csv_with_a_byte_order_mark_and_spaced_cells_reads_as_plain_csv(tmp_path):
    plain = write_classes_data(tmp_path / "plain", "csv")
    odd = write_classes_data(tmp_path / "odd", "csv")
    for split in ("train", "valid", "test"):  # what a spreadsheet writes: a BOM first, cells padded with spaces
        rows = list(csv.DictReader(open(odd / f"{split}.csv", newline="")))
        with open(odd / f"{split}.csv", "w", newline="", encoding="utf-8-sig") as f:
            w = csv.DictWriter(f, ["id", "code", "cwe"])
            w.writeheader()
            w.writerows({**r, "cwe": f" {r['cwe']} "} for r in rows)
    a, b = get_task("classify", plain), get_task("classify", odd)
    da, db = a.load(plain), b.load(odd)
    assert a.classes == b.classes == ("clean", "overflow", "smell")
    assert [fingerprint(da.split(s)) for s in ("labelled", "valid")] == [fingerprint(db.split(s)) for s in ("labelled", "valid")]
    assert db.valid[0].id == "150"  # the id column found under its name, BOM or not


def test_integer_classes_sort_as_numbers_and_odd_digits_are_names(tmp_path):
    root = write_classes_data(tmp_path / "n", task_file='code_field = "code"\nlabel_field = "cwe"\n')
    number = {"clean": 10, "overflow": 2, "smell": -1}
    for split in ("train", "valid", "test"):
        rows = [json.loads(line) for line in (root / f"{split}.jsonl").read_text().splitlines()]
        (root / f"{split}.jsonl").write_text("".join(json.dumps({**r, "cwe": number[r["cwe"]]}) + "\n" for r in rows))
    task = get_task("classify", root)
    task.load(root)
    assert task.classes == ("-1", "2", "10")
    odd = write_classes_data(tmp_path / "o", task_file='code_field = "code"\nlabel_field = "cwe"\n')
    names = {"clean": "--1", "overflow": "\u00b2", "smell": "7"}  # look like digits to str.isdigit, are not integers
    for split in ("train", "valid", "test"):
        rows = [json.loads(line) for line in (odd / f"{split}.jsonl").read_text().splitlines()]
        (odd / f"{split}.jsonl").write_text("".join(json.dumps({**r, "cwe": names[r["cwe"]]}) + "\n" for r in rows))
    task = get_task("classify", odd)
    task.load(odd)
    assert task.classes == tuple(sorted(names.values()))


def test_a_class_too_small_for_both_halves_of_train_is_one_line(tmp_path):
    root = write_classes_data(tmp_path / "d")
    rows = [r for r in (root / "train.jsonl").read_text().splitlines() if json.loads(r)["id"] != 1]  # 49 clean, 50, 50
    rare = json.dumps({"id": 999, "code": "void f ( ) { gets ; }", "cwe": "zrare"})  # sorted last: the rounding's leftover
    (root / "train.jsonl").write_text("\n".join([*rows, rare]) + "\n")
    with pytest.raises(AvatarError, match=r"train.jsonl: class 'zrare' has 1 training example\(s\): too few to be in both halves"):
        get_task("classify", root).load(root)


def test_the_readme_example_task_file_is_one_avatar_reads(tmp_path):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = next(b.split("```", 1)[0] for b in readme.split("```toml\n")[1:] if b.startswith("# my-cwe/task.toml"))
    (tmp_path / "task.toml").write_text(block)
    task = get_task("classify", tmp_path)
    assert task.classes == ("CWE-78", "CWE-89", "none") and task.positive == ("CWE-78", "CWE-89")
    assert task.language == "python" and task.main_metric == "macro_f1"


def test_generic_tasks_need_their_data_folder():
    with pytest.raises(AvatarError, match="task classify reads your own data: give its folder"):
        get_task("classify").load()


def test_presets_read_the_built_in_samples_as_before():
    """The fingerprints of the built-in samples' splits (seed 42), as the two-task code before the generic kinds
    gave them, and the same task description (kind, metric, language, inputs, classes): the presets are the same tasks, so
    the shared pipeline gives them the same results."""
    before = {
        "defect": ["a818dfb1", "662558e4", "c254e0d1", "d4c2711e"],
        "clone": ["4ebd5a9c", "b565c4ef", "e1e99ba9", "b436c800"],
    }
    described = {"defect": ("classify", "accuracy", "c", 1), "clone": ("pairs", "f1", "java", 2)}
    for name in before:
        task = get_task(name)
        assert (task.kind, task.main_metric, task.language, task.num_inputs) == described[name]
        assert task.classes == ("0", "1") and task.positive == ("1",)  # CodeXGLUE's labels, the finding second
        data = task.load(seed=42)
        got = [fingerprint(data.split(s))[:8] for s in ("labelled", "unlabelled", "valid", "test")]
        assert got == before[name], (name, got)


SOURCES = {
    "python": (b"import os\n\nclass Store:\n    @cached\n    def get(self, k):\n        def inner():\n            return k\n        return inner()\n\n"
               b"async def main():\n    pass\n", [("Store.get", 4, 8), ("main", 10, 11)]),
    "javascript": (b"function f(a) { return a }\nclass K {\n  m(x) { return x }\n}\nconst g = (y) => { return y };\nconst e = (q) => q + 1;\n",
                   [("f", 1, 1), ("K.m", 3, 3), ("g", 5, 5)]),
    "go": (b"package p\n\nfunc F(a int) int {\n\treturn a\n}\n\nfunc (r *T) M() {}\n\nfunc external()\n", [("F", 3, 5), ("T.M", 7, 7)]),
}


@pytest.mark.parametrize("language", list(SOURCES))
def test_function_finding_in_each_added_language(language):
    source, want = SOURCES[language]
    found = functions_in_source(source, language)
    assert [(f.name, f.start_line, f.end_line) for f in found] == want


def test_python_methods_read_as_top_level_functions():
    method = functions_in_source(b"class A:\n\tdef f(self):\n\t\treturn 1\n", "python")[0]
    top = functions_in_source(b"def f(self):\n\treturn 1\n", "python")[0]
    assert method.code == top.code


# --- N classes through the pipeline ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def three_class(tmp_path_factory, tiny_encoder):
    """A tiny student distilled on the 3-class task from a hard-label predictions file, and its export."""
    from avatar.distill import distill
    from avatar.export import export
    from avatar.labels import load_soft_labels
    from avatar.predictions import import_predictions
    from avatar.settings import DistillConfig, ExportConfig

    from test_distill import TINY

    root = tmp_path_factory.mktemp("three")
    data_dir = write_classes_data(root / "data", sizes=(600, 60, 60))
    task = get_task("classify", data_dir)
    data = task.load(data_dir)
    preds = root / "teacher.csv"  # a teacher that knows the keyword rule: hard labels by class name
    preds.write_text("id,label\n" + "".join(f"{ex.id},{task.classes[ex.label]}\n" for ex in data.unlabelled))
    summary = import_predictions(task, preds, data.unlabelled, root / "soft.json")
    student = replace(TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # learns the 3 classes in a few epochs
    metrics = distill(task, data, load_soft_labels(root / "soft.json"), student, root / "student", DistillConfig(epochs=10, patience=None, seed=0))
    manifest = export(root / "student", root / "onnx", data.test, data.valid, ExportConfig(int8=False))
    return task, data, summary, metrics, manifest, root


def test_three_classes_distil_export_and_calibrate(three_class):
    task, data, summary, metrics, manifest, root = three_class
    assert summary["predicted"] == {"clean": 100, "overflow": 100, "smell": 100} and "predicted_positive" not in summary
    assert {"accuracy", "macro_precision", "macro_recall", "macro_f1"} <= set(metrics["test"]) and "roc_auc" not in metrics["test"]
    assert set(metrics["test"]["interval95"]) == {"accuracy", "macro_f1"} and "macro_f1" in metrics["test"]["baseline"]
    assert metrics["test"]["macro_f1"] >= 0.8, metrics["history"]  # the keyword rule is easy: a student that learns gets it
    assert len(metrics["valid_preds"]) == 60 and "valid_margins" not in metrics
    assert manifest["classes"] == ["clean", "overflow", "smell"] and manifest["positive"] == ["overflow"]
    d = manifest["decisions"]["fp32"]
    assert d["calibration"]["method"] == "temperature" and d["calibration"]["temperature"] > 0
    assert set(d["scores"]["interval95"]) == {"accuracy", "macro_f1"}
    lo, hi = d["scores"]["interval95"]["macro_f1"]
    assert lo <= d["scores"]["macro_f1"] <= hi and d["scores"]["baseline"]["macro_f1"] < lo
    assert 0 < d["threshold"] <= 1 and {"precision", "recall"} <= set(d["test"])  # P(overflow) thresholded on validation
    card = (root / "onnx" / "README.md").read_text()
    assert "classification" in card and "a temperature" in card


def test_three_class_scan_lists_classes_and_flags_only_positive_ones(three_class, tmp_path):
    from avatar.runtime.model import ExportedModel
    from avatar.runtime.scan import scan, scan_json, scan_sarif, scan_text

    *_, root = three_class
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.c").write_text("void a ( ) { v1 strcpy v2 ; }\nvoid b ( ) { v3 strncpy v4 ; }\nvoid c ( ) { v5 sort v6 ; }\n")
    model = ExportedModel(root / "onnx")
    result = scan([src], model)
    by_name = {s.function.name: s for s in result.scored}
    assert {n: s.label for n, s in by_name.items()} == {"a": "overflow", "b": "clean", "c": "smell"}
    assert [s.function.name for s in result.flagged] == ["a"]
    text = scan_text(result).splitlines()
    assert len(text) == 4 and text[-1].startswith("1 of 3 function(s) in 1 file(s) at or above the threshold")
    doc = json.loads(scan_json(result))
    assert doc["classes"] == ["clean", "overflow", "smell"] and {r["name"]: r["class"] for r in doc["results"]} == {"a": "overflow", "b": "clean", "c": "smell"}
    sarif = json.loads(scan_sarif(result))["runs"][0]
    assert [r["id"] for r in sarif["tool"]["driver"]["rules"]] == ["AVATAR-CLASSIFY-OVERFLOW"]
    assert [r["locations"][0]["logicalLocations"][0]["name"] for r in sarif["results"]] == ["a"]
    probs = model.class_probabilities_of_logits(model.logits([(s.function.code,) for s in result.scored]))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)


def _result(classes, positive, scored):
    from avatar.runtime.functions import Function
    from avatar.runtime.scan import ScanResult, Scored

    return ScanResult([Scored(Function("a.c", name, i + 1, i + 1, "void f ( ) { }"), *rest) for i, (name, *rest) in enumerate(scored)],
                      1, 0.5, "m", "fp32", task="classify", classes=classes, positive=positive)


def test_a_two_class_model_without_a_finding_lists_every_function_with_its_class():
    from avatar.runtime.scan import scan_json, scan_text

    result = _result(("python", "java"), (), [("f", 0.0, "java", 0.8), ("g", 0.0, "python", 0.6)])
    text = scan_text(result).splitlines()
    assert text[:2] == ["  java 0.800  a.c:1-1  f", "  python 0.600  a.c:2-2  g"] and text[2].startswith("2 function(s) in 1 file(s) by class")
    assert [r["class"] for r in json.loads(scan_json(result))["results"]] == ["java", "python"]
    findings = _result(("ok", "bug"), ("bug",), [("f", 0.9, "bug", 0.9), ("g", 0.1, "ok", 0.9)])  # the scanner: flagged ones only
    assert scan_text(findings).splitlines()[0] == "0.900  a.c:1-1  f" and len(json.loads(scan_json(findings))["results"]) == 1


def test_a_flagged_function_is_filed_under_its_likeliest_positive_class():
    """Two positive classes that pass the threshold together while neither is the function's likeliest class: the
    SARIF rule is the likelier of the two positive ones, not the first."""
    from avatar.runtime.scan import scan_sarif

    # P(none) 0.4, P(cwe-78) 0.25, P(cwe-89) 0.35: flagged (0.6 >= 0.5), most probable class "none"
    result = _result(("none", "cwe-78", "cwe-89"), ("cwe-78", "cwe-89"), [("f", 0.6, "none", 0.4, "cwe-89")])
    sarif = json.loads(scan_sarif(result))["runs"][0]
    rules = [r["id"] for r in sarif["tool"]["driver"]["rules"]]
    (finding,) = sarif["results"]
    assert rules[finding["ruleIndex"]] == finding["ruleId"] == "AVATAR-CLASSIFY-CWE-89"


@pytest.fixture(scope="module")
def three_class_pairs(tmp_path_factory, tiny_encoder):
    """A tiny pair student for a 3-class Python pairs task (JSONL), distilled from a predictions file keyed by
    the pair, and its export."""
    from avatar.distill import distill
    from avatar.export import export
    from avatar.labels import load_soft_labels
    from avatar.predictions import import_predictions
    from avatar.settings import DistillConfig, ExportConfig

    from test_distill import TINY

    root = tmp_path_factory.mktemp("pairs3")
    data_dir = write_pairs_data(root / "data", "jsonl", sizes=(400, 60, 60), three=True)
    task = get_task("pairs", data_dir)
    data = task.load(data_dir)
    preds = root / "teacher.csv"  # hard labels by class name, keyed by the pair's two ids
    preds.write_text("idx1,idx2,label\n" + "".join(f"{a},{b},{task.classes[ex.label]}\n"
                                                     for ex in data.unlabelled for a, b in [ex.function_ids]))
    summary = import_predictions(task, preds, data.unlabelled, root / "soft.json")
    student = replace(TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    metrics = distill(task, data, load_soft_labels(root / "soft.json"), student, root / "student", DistillConfig(epochs=4, patience=None, seed=0))
    manifest = export(root / "student", root / "onnx", data.test, data.valid, ExportConfig(int8=False))
    return task, summary, metrics, manifest, root


def test_three_class_pairs_distil_export_and_find_python_clones(three_class_pairs, tmp_path):
    """A pairs task of another language and three classes through distillation, export and avatar clones: the
    Python functions of a folder, each pair scored once, flagged by its probability of a positive class."""
    from avatar.runtime.model import ExportedModel
    from avatar.runtime.scan import clones, clones_json, clones_text

    task, summary, metrics, manifest, root = three_class_pairs
    assert task.classes == ("different", "same-parse", "same-sort") and task.positive == ("same-parse", "same-sort")
    assert sum(summary["predicted"].values()) == 200 and all(n > 0 for n in summary["predicted"].values())
    assert set(metrics["test"]["interval95"]) == {"accuracy", "macro_f1"} and "roc_auc" not in metrics["test"]
    assert metrics["test"]["macro_f1"] >= 0.8 > metrics["test"]["baseline"]["macro_f1"], metrics["history"]  # a kind shows in its words
    assert manifest["classes"] == list(task.classes) and manifest["positive"] == list(task.positive)
    assert manifest["language"] == "python" and manifest["num_inputs"] == 2
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("def s1(v1, v2):\n    return sort(v1, v2)\n\n\nclass P:\n    def p1(self, v23):\n        return parse(v25)\n")
    (src / "b.py").write_text("def s2(v4):\n    return sort(v4)\n")
    (src / "c.c").write_text("void ignored ( ) { sort ; }\n")  # another language: not read
    model = ExportedModel(root / "onnx")
    every = clones([src], [src], model, threshold=0.0)
    assert (every.functions_a, every.functions_b, every.scored_pairs) == (3, 3, 3)
    by_pair = {frozenset((c.a.name, c.b.name)): c.probability for c in every.pairs}
    assert set(by_pair) == {frozenset(p) for p in [("s1", "P.p1"), ("s1", "s2"), ("P.p1", "s2")]}
    # the two sort functions (sort-kind words) are the likeliest clones; either pair with the parse method is less so
    assert by_pair[frozenset(("s1", "s2"))] > max(by_pair[frozenset(("s1", "P.p1"))], by_pair[frozenset(("P.p1", "s2"))]), by_pair
    logits = model.logits([(c.a.code, c.b.code) for c in every.pairs])
    probs = model.class_probabilities_of_logits(logits)
    np.testing.assert_allclose([c.probability for c in every.pairs], probs[:, 1:].sum(axis=1), atol=1e-5)
    cut = sorted(by_pair.values())[1]  # the threshold keeps the pairs at or above it, and only those
    above = clones([src], [src], model, threshold=cut)
    assert sorted(c.probability for c in above.pairs) == [p for p in sorted(by_pair.values()) if p >= cut]
    doc = json.loads(clones_json(every))
    assert doc["scored_pairs"] == 3 and doc["classes"] == list(task.classes) and doc["positive"] == list(task.positive)
    kinds = {frozenset((c["a"]["name"], c["b"]["name"])): c["class"] for c in doc["pairs"]}
    assert kinds[frozenset(("s1", "s2"))] == "same-sort", kinds  # which kind of clone, not only that it is one
    assert "same-sort" in clones_text(every).splitlines()[0]


def test_compress_runs_a_three_class_task_end_to_end(tmp_path, tiny_encoder):
    """The whole pipeline on a user's 3-class CSV data: teacher, soft labels, indicator (macro-F1), search,
    student, export, measurement and report."""
    import avatar
    from test_pipeline import tiny_compress_toml

    data = write_classes_data(tmp_path / "data", "csv", sizes=(120, 30, 30))
    toml = tiny_compress_toml(tmp_path / "c.toml", data, tiny_encoder)
    toml.write_text('task = "classify"\n' + toml.read_text())
    result = avatar.compress(avatar.resolve_settings(toml), tmp_path / "run")
    assert result.stages["indicator"].result["metric"] == "macro_f1"
    metrics = result.metrics
    assert metrics["main_metric"] == "macro_f1"
    student = next(r for r in metrics["results"] if r["role"] == "student")
    assert set(student["test"]["interval95"]) == {"accuracy", "macro_f1"} and "macro_f1" in student["test"]["baseline"]
    manifest = json.loads((tmp_path / "run" / "onnx" / "avatar.json").read_text())
    assert manifest["classes"] == ["clean", "overflow", "smell"] and manifest["language"] == "c"
    assert "macro_f1" in (tmp_path / "run" / "report.md").read_text()


def test_a_graphcodebert_teacher_fine_tunes_on_a_users_task(tmp_path, tiny_encoder):
    import json

    from typer.testing import CliRunner

    from avatar.cli import app

    data = write_classes_data(tmp_path / "cwe", sizes=(40, 12, 12))
    out = tmp_path / "teacher"
    r = CliRunner().invoke(app, ["finetune", "--task", "classify", "--model", str(tiny_encoder), "--data", str(data), "--out", str(out),
                                 "--model-type", "graphcodebert", "--max-length", "32", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    config = json.loads((out / "config.json").read_text())
    assert config["avatar_model_type"] == "graphcodebert" and config["avatar_flow_length"] == 114  # one function an example: Devign's default


# --- bad input from the command line: one line, exit 2, nothing written -------------------------------------

def _mixed_labels(root: Path) -> str:
    _bad(root, "test.jsonl", 2, '{"id": 902, "code": "x", "cwe": 3}')
    return f"{root / 'test.jsonl'}:2: mixed label types: int here, str at train.jsonl:1"


def _ghost_pair(root: Path) -> str:
    _bad(root, "valid.csv", 3, "sort0,ghost,same")
    return f"{root / 'valid.csv'}:3: function id 'ghost' is not in data.csv"


def _unknown_pair_prediction(root: Path) -> str:
    (root / "teacher.csv").write_text("idx1,idx2,label\nsort0,nobody,same\n")
    return f"{root / 'teacher.csv'}:2: pair sort0/nobody is not an example of the unlabelled half"


@pytest.mark.parametrize("kind,write,spoil,command", [
    ("classify", write_classes_data, _mixed_labels, ["compress", "--task", "classify", "--data", "DATA", "--out", "OUT"]),
    ("pairs", write_pairs_data, _ghost_pair, ["compress", "--task", "pairs", "--data", "DATA", "--out", "OUT"]),
    ("pairs", write_pairs_data, _ghost_pair, ["finetune", "--task", "pairs", "--data", "DATA", "--out", "OUT"]),
    ("pairs", write_pairs_data, _unknown_pair_prediction,
     ["label", "--task", "pairs", "--data", "DATA", "--predictions", "DATA/teacher.csv", "--out", "OUT/soft.json"]),
])
def test_a_users_bad_data_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, monkeypatch, kind, write, spoil, command):
    from test_cli import _run

    root = write(tmp_path / kind)
    want = spoil(root)
    args = [a.replace("DATA", str(root)).replace("OUT", str(tmp_path / "out")) for a in command]
    assert _run(args, monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {want}") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
