import json
from collections import Counter

import pytest

from avatar.errors import AvatarError
from avatar.tasks import SPLITS, fingerprint, get_task, stratified_sample


@pytest.mark.parametrize("name", ["defect", "clone"])
def test_builtin_sample_loads_with_disjoint_stratified_halves(name):
    task = get_task(name)
    data = task.load()
    sizes = {s: len(data.split(s)) for s in SPLITS}
    assert all(n >= 100 for n in sizes.values()), sizes
    assert not {e.id for e in data.labelled} & {e.id for e in data.unlabelled}
    assert all(len(e.texts) == task.num_inputs for s in SPLITS for e in data.split(s))
    assert set(Counter(e.label for e in data.labelled)) == {0, 1}


def test_halves_are_split_seeded_and_stratified(defect_data):
    task = get_task("defect")
    a, b, c = task.load(defect_data, seed=1), task.load(defect_data, seed=1), task.load(defect_data, seed=2)
    assert [e.id for e in a.labelled] == [e.id for e in b.labelled]
    assert [e.id for e in a.labelled] != [e.id for e in c.labelled]
    assert len(a.labelled) + len(a.unlabelled) == 120
    assert Counter(e.label for e in a.labelled) == Counter({0: 30, 1: 30})


def test_stratified_sample_keeps_ratio_and_order(defect_data):
    examples = get_task("defect").load(defect_data).test
    picked, rest = stratified_sample(examples, 10, seed=3)
    assert len(picked) == 10 and len(rest) == 30
    assert Counter(e.label for e in picked) == Counter({0: 5, 1: 5})
    positions = [examples.index(e) for e in picked]
    assert positions == sorted(positions)


def test_clone_pairs_read_both_functions(clone_data):
    data = get_task("clone").load(clone_data)
    functions = {json.loads(line)["idx"]: json.loads(line)["func"] for line in open(clone_data / "data.jsonl")}
    a, b, label = open(clone_data / "valid.txt").readline().rstrip("\n").split("\t")
    first = data.valid[0]
    assert first.id == "valid:1" and first.texts == (functions[a], functions[b]) and first.label == int(label)


def test_clone_uses_given_halves(clone_data):
    pairs = (clone_data / "train.txt").read_text().splitlines()
    (clone_data / "label_train.txt").write_text("\n".join(pairs[:50]) + "\n")
    (clone_data / "unlabel_train.txt").write_text("\n".join(pairs[50:]) + "\n")
    (clone_data / "train.txt").unlink()  # not needed when the halves are given
    data = get_task("clone").load(clone_data)
    assert len(data.labelled) == 50 and len(data.unlabelled) == 70
    assert data.unlabelled[0].id == "unlabel_train:1"


def test_one_half_without_the_other_is_an_error(clone_data):
    (clone_data / "label_train.txt").write_text((clone_data / "train.txt").read_text())
    with pytest.raises(AvatarError, match="unlabel_train.txt: missing file"):
        get_task("clone").load(clone_data)


def test_metrics():
    m = get_task("defect").metrics([1, 1, 0, 0], [1, 0, 0, 1])
    assert m == {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert get_task("defect").metrics([0, 0], [0, 0])["f1"] == 0.0  # no positives: defined, not an exception
    # ROC AUC from scores: every positive above every negative is 1, even when no prediction crosses the threshold
    ranked = get_task("defect").metrics([0, 1, 0, 1], [0, 0, 0, 0], [0.1, 0.4, 0.2, 0.3])
    assert ranked["accuracy"] == 0.5 and ranked["roc_auc"] == 1.0
    assert get_task("defect").metrics([1, 0, 1, 0], [0] * 4, [0.1, 0.4, 0.2, 0.3])["roc_auc"] == 0.0
    assert get_task("defect").metrics([0, 0], [0, 0], [0.1, 0.2])["roc_auc"] is None


def test_fingerprint_sees_code_and_labels(defect_data):
    data = get_task("defect").load(defect_data)
    base = fingerprint(data.test)
    assert base == fingerprint(list(data.test))
    changed = [data.test[0].__class__(data.test[0].id, ("other",), data.test[0].label), *data.test[1:]]
    assert fingerprint(changed) != base


def _replace_line(path, lineno, text):
    lines = path.read_text().splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n")


DEFECT_CASES = [
    ("valid.jsonl", 3, '{"func": "x", "target": 0', "valid.jsonl:3: malformed JSON"),
    ("valid.jsonl", 2, "[1, 2]", "valid.jsonl:2: expected a JSON object"),
    ("train.jsonl", 5, '{"target": 1, "idx": 999}', "train.jsonl:5: missing field 'func'"),
    ("test.jsonl", 4, '{"func": "x", "idx": 998}', "test.jsonl:4: missing field 'target'"),
    ("test.jsonl", 4, '{"func": "x", "target": 2, "idx": 998}', "test.jsonl:4: label '2' is not one of the classes (0, 1)"),
    ("test.jsonl", 4, '{"func": "x", "target": "1", "idx": 998}', "test.jsonl:4: mixed label types: str here, int at train.jsonl:1"),
    ("test.jsonl", 4, '{"func": "x", "target": 1.0, "idx": 998}', "test.jsonl:4: field 'target' has the wrong type"),
    ("test.jsonl", 4, '{"func": 7, "target": 1, "idx": 998}', "test.jsonl:4: field 'func' has the wrong type"),
    ("test.jsonl", 6, '{"func": "x", "target": 1, "idx": 0}', "test.jsonl:6: duplicate example id '0' (first at train.jsonl:1)"),
    ("train.jsonl", 7, '{"func": "x", "target": 1, "idx": 2}', "train.jsonl:7: duplicate example id '2' (first at train.jsonl:3)"),
]


@pytest.mark.parametrize("file,line,text,message", DEFECT_CASES)
def test_defect_bad_input_names_file_and_line(defect_data, file, line, text, message):
    _replace_line(defect_data / file, line, text)
    with pytest.raises(AvatarError) as err:
        get_task("defect").load(defect_data)
    assert str(err.value).startswith(str(defect_data / file)) and message in str(err.value)
    assert err.value.line == line


def test_defect_missing_and_empty_files(defect_data):
    (defect_data / "valid.jsonl").write_text("\n\n")
    with pytest.raises(AvatarError, match=r"valid.jsonl: empty split"):
        get_task("defect").load(defect_data)
    (defect_data / "valid.jsonl").unlink()
    with pytest.raises(AvatarError, match=r"valid.jsonl: missing file"):
        get_task("defect").load(defect_data)
    with pytest.raises(AvatarError, match="data folder not found"):
        get_task("defect").load(defect_data / "nope")


CLONE_CASES = [
    ("data.jsonl", 2, '{"idx": "sort0", "func": "x"}', "data.jsonl:2: duplicate idx 'sort0' (first at line 1)"),
    ("data.jsonl", 3, '{"func": "x"}', "data.jsonl:3: missing field 'idx'"),
    ("data.jsonl", 3, "not json", "data.jsonl:3: malformed JSON"),
    ("valid.txt", 2, "sort0\tghost\t1", "valid.txt:2: function id 'ghost' is not in data.jsonl"),
    ("valid.txt", 2, "sort0\tsort1\t2", "valid.txt:2: label '2' is not one of the classes (0, 1)"),
    ("test.txt", 3, "sort0 sort1 1", "test.txt:3: expected 'idx1<TAB>idx2<TAB>label', got 1 field(s)"),
]


@pytest.mark.parametrize("file,line,text,message", CLONE_CASES)
def test_clone_bad_input_names_file_and_line(clone_data, file, line, text, message):
    _replace_line(clone_data / file, line, text)
    with pytest.raises(AvatarError) as err:
        get_task("clone").load(clone_data)
    assert message in str(err.value) and str(err.value).startswith(str(clone_data / file))


def test_clone_missing_data_jsonl(clone_data):
    (clone_data / "data.jsonl").unlink()
    with pytest.raises(AvatarError, match="data.jsonl: missing file"):
        get_task("clone").load(clone_data)


def test_unknown_task():
    with pytest.raises(AvatarError, match="unknown task 'nope'"):
        get_task("nope")


def test_binary_file_is_a_clear_error(defect_data):
    (defect_data / "valid.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(AvatarError, match=r"valid.jsonl:1: not UTF-8 text at column 1"):
        get_task("defect").load(defect_data)


def test_a_byte_that_is_not_utf8_is_reported_at_its_line_and_column(defect_data, tmp_path):
    from avatar.config import load_config

    lines = (defect_data / "valid.jsonl").read_bytes().splitlines(keepends=True)
    lines[6] = b'{"func": "int f() { return 0; } \xe9", "target": 0}\n'
    (defect_data / "valid.jsonl").write_bytes(b"".join(lines))
    with pytest.raises(AvatarError, match=r"valid.jsonl:7: not UTF-8 text at column 33 \(invalid continuation byte\)"):
        get_task("defect").load(defect_data)
    (tmp_path / "c.toml").write_bytes(b'task = "defect"\n\n[search]\nsamples = 5 # caf\xe9\n')
    with pytest.raises(AvatarError, match=r"c.toml:4: not UTF-8 text at column 18"):
        load_config(tmp_path / "c.toml")
