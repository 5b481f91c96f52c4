"""Tasks: where their data lives, how it is checked, how a model reads an example, how it is scored.

Two kinds of task, each on any number N >= 2 of classes:

- ``classify``: one function per example. ``train``, ``valid``, ``test`` files (``.jsonl``: one JSON object a
  line; ``.csv`` / ``.tsv``: a header row), each example's code and label in fields named by the data set
  (CodeXGLUE's defaults: ``func`` and ``target``; ``idx`` is the example id where present).
- ``pairs``: two functions per example. A functions file (``data.jsonl`` or ``data.csv``: id and code fields)
  plus pair files: CodeXGLUE's ``train.txt`` etc. (``idx1<TAB>idx2<TAB>label``, no header), or ``.csv`` /
  ``.jsonl`` with the two function-id fields (``idx1``, ``idx2`` unless ``pair_fields`` names others) and the
  label field.

``defect`` (Devign, C) and ``clone`` (BigCloneBench, Java) are presets of them, in CodeXGLUE's layouts with
the classes 0 and 1. A data folder describes itself in an optional ``task.toml`` (see ``TASK_FILE_KEYS``):
its language, field names, classes in order (or those train has, sorted), the classes that mean a finding and
the metric that picks checkpoints. The classes' order is saved with every model: class ``i`` is logit ``i``.
In a two-class task the class that means a finding is class 1 (its probability is what thresholds read).

Both kinds may give the two halves of train themselves (``label_train.*`` / ``unlabel_train.*``); otherwise
train is split into halves here, seeded and stratified. The teacher learns from the labelled half; the student
learns from the teacher's logits on the unlabelled half (and, when told, the labelled half's labels).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
import tomllib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import ClassVar

from avatar._io import toml_line
from avatar.errors import AvatarError
from avatar.runtime import TASK_LANGUAGE
from avatar.runtime.parsers import LANGUAGES
from avatar.runtime.text import normalize_code
from avatar.settings import SEED

SAMPLES_DIR = Path(__file__).parent / "samples"
SPLITS = ("labelled", "unlabelled", "valid", "test")


@dataclass(frozen=True)
class Example:
    id: str  # stable key: a defect's idx, or "file:line" of a clone pair
    texts: tuple[str, ...]  # what the model reads: one function (defect) or two (clone)
    label: int  # ground truth, 0 or 1
    function_ids: tuple[str, ...] = ()  # a clone pair's two function ids in data.jsonl (what predictions files name)


@dataclass
class TaskData:
    labelled: list[Example]  # half of train the teacher is fine-tuned on
    unlabelled: list[Example]  # half the teacher labels; the student learns only from those labels
    valid: list[Example]
    test: list[Example]

    def split(self, name: str) -> list[Example]:
        if name not in SPLITS:
            raise AvatarError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")
        return getattr(self, name)


def fingerprint(examples: Sequence[Example]) -> str:
    """Content hash of examples (ids, code, labels): a cache key for anything computed from them."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.id, ex.texts, ex.label]).encode())
    return h.hexdigest()


def stratified_sample(examples: Sequence[Example], n: int, seed: int) -> tuple[list[Example], list[Example]]:
    """Pick ``n`` examples keeping the label ratio; return (picked, rest), each in the original order."""
    if n >= len(examples):
        return list(examples), []
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, ex in enumerate(examples):
        by_label.setdefault(ex.label, []).append(i)
    picked: set[int] = set()
    remaining = n
    groups = sorted(by_label.items())
    for k, (_, idxs) in enumerate(groups):
        share = remaining if k == len(groups) - 1 else round(n * len(idxs) / len(examples))
        share = min(share, len(idxs), remaining)
        picked.update(rng.sample(idxs, share))
        remaining -= share
    return [ex for i, ex in enumerate(examples) if i in picked], [
        ex for i, ex in enumerate(examples) if i not in picked
    ]


def limit_examples(examples: Sequence[Example], n: int | None, seed: int) -> list[Example]:
    """All examples, or a stratified, seeded subset of ``n`` of them."""
    return list(examples) if n is None else stratified_sample(examples, n, seed)[0]


def _lines(path: Path, keep_blank: bool = False) -> Iterator[tuple[int, str]]:
    """Non-blank lines (or all) with their 1-based numbers."""
    if not path.is_file():
        raise AvatarError("missing file", path)
    with open(path, "rb") as f:  # line by line, so that a byte that is not UTF-8 is reported where it is
        for lineno, data in enumerate(f, start=1):
            try:
                raw = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise AvatarError(f"not UTF-8 text at column {e.start + 1} ({e.reason})", path, lineno) from None
            if lineno == 1:
                raw = raw.removeprefix("\ufeff")  # the byte-order mark spreadsheets write: not part of the first field
            if keep_blank or raw.strip():
                yield lineno, raw


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each non-blank line of a JSONL file; a line that is not a JSON object is one error."""
    for lineno, raw in _lines(path):
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise AvatarError(f"malformed JSON ({e.msg})", path, lineno) from None
        if not isinstance(obj, dict):
            raise AvatarError("expected a JSON object", path, lineno)
        yield lineno, obj


def _require(obj: dict, field: str, kinds: type | tuple[type, ...], path: Path, line: int):
    if field not in obj:
        raise AvatarError(f"missing field {field!r} (fields: {', '.join(map(str, obj)) or 'none'})", path, line)
    value = obj[field]
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise AvatarError(f"field {field!r} has the wrong type ({type(value).__name__})", path, line)
    return value


TASK_FILE = "task.toml"  # a data folder's description of itself (optional)
KINDS = ("classify", "pairs")
METRICS = ("accuracy", "f1", "macro_f1")  # f1: of class 1, two-class tasks only
TASK_FILE_KEYS = {  # what task.toml may set, with what each means
    "language": "the code's language: " + ", ".join(LANGUAGES),
    "code_field": "field holding a function's code",
    "label_field": "field holding an example's label",
    "id_field": "field holding an example's (classify) or a function's (pairs) id",
    "pair_fields": "the two fields of a .csv / .jsonl pair file holding its functions' ids (pairs; default idx1, idx2)",
    "classes": "the classes in order, as the label field writes them (none: those train has, sorted)",
    "positive": "the classes that mean a finding, which avatar scan reports (two classes: the second one)",
    "metric": "the validation score that picks checkpoints: " + ", ".join(METRICS),
}


@dataclass(frozen=True)
class TaskSpec:
    """Everything that decides how a task's data reads and what its model means: saved with every model."""

    name: str  # defect, clone (presets), classify or pairs
    kind: str  # classify (one function per example) or pairs (two)
    language: str
    code_field: str = "func"
    label_field: str = "target"
    id_field: str = "idx"
    pair_fields: tuple[str, str] = ("idx1", "idx2")  # pairs: a pair file's two function-id fields (.csv / .jsonl)
    classes: tuple[str, ...] | None = None  # None until the data is read (then those train has, sorted)
    positive: tuple[str, ...] | None = None  # None: the second of two classes; no class of more than two
    metric: str | None = None  # None: accuracy (classify), f1 (two-class pairs), macro_f1 (more than two classes)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> TaskSpec:
        known = {f: d[f] for f in cls.__dataclass_fields__ if f in d}
        for k in ("classes", "positive", "pair_fields"):
            if known.get(k) is not None:
                known[k] = tuple(str(v) for v in known[k])
        return cls(**known)


PRESETS = {  # CodeXGLUE's two binary tasks, as the generic kinds
    "defect": TaskSpec("defect", "classify", TASK_LANGUAGE["defect"], classes=("0", "1")),  # Devign
    "clone": TaskSpec("clone", "pairs", TASK_LANGUAGE["clone"], label_field="label", classes=("0", "1")),  # BigCloneBench
}
GENERIC = {"classify": TaskSpec("classify", "classify", "c"), "pairs": TaskSpec("pairs", "pairs", "java", label_field="label")}
TASK_NAMES = (*PRESETS, *GENERIC)


def _read_task_file(data_dir: Path, spec: TaskSpec) -> tuple[TaskSpec, dict[str, int | None]]:
    """``spec`` with what the data folder's task.toml sets (checked, with its line on error), and the lines that
    set the classes, the positive ones and the metric."""
    path = data_dir / TASK_FILE
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as e:
        raise AvatarError(f"cannot read the task file ({e.__class__.__name__})", path) from None
    except tomllib.TOMLDecodeError as e:
        raise AvatarError(f"malformed TOML ({str(e).split(' (at')[0]})", path) from None
    changes = {}
    for key, value in raw.items():
        where = toml_line(text, key, None)
        if key not in TASK_FILE_KEYS:
            raise AvatarError(f"unknown key {key!r}; expected one of {', '.join(TASK_FILE_KEYS)}", path, where)
        if key in ("classes", "positive"):
            if not isinstance(value, list) or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
                raise AvatarError(f"{key} must be a list of class names (strings or integers)", path, where)
            names = tuple(str(v) for v in value)
            if len(set(names)) != len(names):
                raise AvatarError(f"{key} names a class twice", path, where)
            changes[key] = names
        elif key == "pair_fields":
            if spec.kind != "pairs":
                raise AvatarError("pair_fields is for tasks of pairs (--task pairs)", path, where)
            if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) and v for v in value) and value[0] != value[1]):
                raise AvatarError('pair_fields must name two different fields, like ["idx1", "idx2"]', path, where)
            changes[key] = tuple(value)
        elif not isinstance(value, str):
            raise AvatarError(f"{key} must be a string", path, where)
        else:
            changes[key] = value
    spec = replace(spec, **changes)
    check = {"language": (spec.language, LANGUAGES), "metric": (spec.metric, (None, *METRICS))}
    for key, (value, allowed) in check.items():
        if value not in allowed:
            raise AvatarError(f"{key} must be one of {', '.join(a for a in allowed if a)}, got {value!r}", path, toml_line(text, key, None))
    lines = {k: toml_line(text, k, None) for k in ("classes", "positive", "metric", "id_field") if k in raw}
    if spec.classes is not None:
        _check_classes(spec, path, lines)
    return spec, lines


def _check_classes(spec: TaskSpec, path: Path | None, lines: dict[str, int | None]) -> None:
    """The classes and what refers to them, consistent; ``lines``: where the task file sets each key."""
    classes = spec.classes or ()
    if len(classes) < 2:
        raise AvatarError(f"a task needs at least 2 classes, got {len(classes)}", path, lines.get("classes"))
    unknown = [c for c in spec.positive or () if c not in classes]
    if unknown:
        raise AvatarError(f"positive class {unknown[0]!r} is not one of the classes ({', '.join(classes)})", path, lines.get("positive"))
    if len(classes) == 2 and spec.positive is not None and tuple(spec.positive) not in ((), (classes[1],)):
        raise AvatarError(f"in a two-class task the class that means a finding is the second one: order classes as "
                          f"[{', '.join(repr(c) for c in classes if c not in spec.positive)}, {spec.positive[0]!r}]", path,
                          lines.get("classes") or lines.get("positive"))
    if spec.metric == "f1" and len(classes) != 2:
        raise AvatarError(f"metric f1 is for two-class tasks; this one has {len(classes)} classes: use macro_f1 or accuracy", path, lines.get("metric"))


def _label_name(value: object, field_name: str, path: Path, line: int) -> str:
    """A label as a class name: strings without surrounding spaces (a CSV cell's " 1" is class "1"), integers
    written out."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise AvatarError(f"{field_name} must be a string or an integer, got {value!r}", path, line)
    return value.strip() if isinstance(value, str) else str(value)


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict]]:
    """(line number, row by header name) of a CSV/TSV file with a header; fields may span lines."""
    csv.field_size_limit(1 << 30)  # a function is one field, and functions can be long
    reader = csv.reader((raw for _, raw in _lines(path, keep_blank=True)), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    header = [h.strip() for h in header]
    lineno = reader.line_num + 1
    for fields in reader:
        if any(f.strip() for f in fields):
            if len(fields) != len(header):
                raise AvatarError(f"expected {len(header)} fields as the header has, got {len(fields)}", path, lineno)
            yield lineno, dict(zip(header, fields))
        lineno = reader.line_num + 1


def read_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, record) of a JSONL, CSV or TSV file, by its extension."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix in (".csv", ".tsv"):
        return _csv_rows(path, "," if suffix == ".csv" else "\t")
    raise AvatarError(f"unknown file format {suffix or '(no extension)'!r}: use .jsonl, .csv or .tsv", path)


class Task(ABC):
    """A task of some kind on some data set: reads its splits, knows its classes once read, scores predictions."""

    kind: ClassVar[str]
    num_inputs: ClassVar[int]  # functions a model reads per example: 1 (classify) or 2 (pairs)
    formats: ClassVar[tuple[str, ...]]  # extensions a split file may have, in order of preference

    def __init__(self, spec: TaskSpec, task_file: Path | None = None, lines: dict[str, int | None] | None = None) -> None:
        self.spec = spec
        self.task_file, self.lines = task_file, lines or {}  # where the task file sets classes, positive, metric: for errors
        self._seen: dict[str, str] = {}
        self._label_type: tuple[type, str] | None = None  # (type, where) of the first label read: types may not mix
        self._inferred = False  # the classes are those train has (none were named)

    # --- what the task is ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def language(self) -> str:
        return self.spec.language

    @property
    def classes(self) -> tuple[str, ...]:
        if self.spec.classes is None:
            raise AvatarError(f"the {self.name} task's classes are known once its data is read")
        return self.spec.classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def positive(self) -> tuple[str, ...]:
        """The classes that mean a finding (two classes: the second one, unless the data set says none)."""
        if self.spec.positive is not None:
            return self.spec.positive
        return (self.classes[1],) if self.num_classes == 2 else ()

    @property
    def main_metric(self) -> str:
        """The validation score that picks checkpoints and indicator samples."""
        if self.spec.metric is not None:
            return self.spec.metric
        if self.spec.classes is not None and len(self.spec.classes) > 2:
            return "macro_f1"
        return "accuracy" if self.kind == "classify" else "f1"

    @property
    def halves(self) -> tuple[str, str]:
        return ("label_train", "unlabel_train")

    # --- reading ------------------------------------------------------------------------------------------
    def load(self, data_dir: Path | None = None, seed: int = SEED) -> TaskData:
        """Read and check every split; split train into labelled/unlabelled halves unless given. The classes
        become known here: those the data set names, or those train has (sorted)."""
        data_dir = Path(data_dir) if data_dir is not None else self.sample_dir()
        if not data_dir.is_dir():
            raise AvatarError("data folder not found", data_dir)
        self._seen, self._label_type = {}, None
        self._prepare(data_dir)
        label_file, unlabel_file = (self._file(data_dir, h, required=False) for h in self.halves)
        raw: dict[str, list[tuple[Path, int, RawExample]]] = {}
        if label_file or unlabel_file:
            for name, f in zip(self.halves, (label_file, unlabel_file)):
                if f is None:
                    other = (label_file or unlabel_file).name
                    raise AvatarError(f"missing file (given together with {other})", data_dir / (name + self.formats[0]))
            raw["labelled"], raw["unlabelled"] = self._read_split(label_file), self._read_split(unlabel_file)
            train_rows = raw["labelled"] + raw["unlabelled"]
        else:
            train_rows = self._read_split(self._file(data_dir, "train"))
        self._set_classes(train_rows)
        for split in ("valid", "test"):
            raw[split] = self._read_split(self._file(data_dir, split))
        to_examples = lambda rows: [self._example(*row) for row in rows]  # noqa: E731
        if "labelled" in raw:
            labelled, unlabelled = to_examples(raw["labelled"]), to_examples(raw["unlabelled"])
        else:
            train = to_examples(train_rows)
            if len(train) < 2:
                raise AvatarError("train needs at least 2 examples to split into halves", train_rows[0][0])
            unlabelled, labelled = stratified_sample(train, len(train) // 2, seed)
            taught = {ex.label for ex in labelled}
            for k, name in enumerate(self.classes):  # the teacher learns from the labelled half: each class must be in it
                if k not in taught:
                    n = sum(ex.label == k for ex in train)
                    raise AvatarError(f"class {name!r} has {n} training example(s): too few to be in both halves of train "
                                      "(the teacher learns from one, the student from the other); give it at least 2", train_rows[0][0])
        return TaskData(labelled=labelled, unlabelled=unlabelled, valid=to_examples(raw["valid"]), test=to_examples(raw["test"]))

    def _set_classes(self, train_rows: list) -> None:
        """The classes from the data set's list, checked against train, or train's own (sorted)."""
        seen: dict[str, tuple[Path, int]] = {}
        for path, lineno, ex in train_rows:
            seen.setdefault(ex.label, (path, lineno))
        if self.spec.classes is None:
            ints = all(re.fullmatch(r"-?[0-9]+", c) for c in seen)  # integers sort as numbers (2 before 10)
            classes = tuple(sorted(seen, key=(lambda c: (int(c), c)) if ints else None))
            if len(classes) < 2:
                path, _ = next(iter(seen.values()))
                raise AvatarError(f"train has only one class ({classes[0]!r}); a classifier needs at least 2", path)
            spec = replace(self.spec, classes=classes)
            _check_classes(spec, self.task_file, self.lines)
            self.spec, self._inferred = spec, True
        missing = [c for c in self.classes if c not in seen]
        if missing:
            names = ", ".join(sorted({p.name for p, _, _ in train_rows}))
            where = self.task_file if self.task_file else train_rows[0][0]
            raise AvatarError(f"class {missing[0]!r} has no training example in {names}", where, self.lines.get("classes"))

    def _example(self, path: Path, lineno: int, ex: RawExample) -> Example:
        if ex.label not in self.classes:
            named = "a class of train" if self._inferred else "one of the classes"
            raise AvatarError(f"label {ex.label!r} is not {named} ({', '.join(self.classes)})", path, lineno)
        return Example(ex.id, ex.texts, self.classes.index(ex.label), ex.function_ids)

    def _label(self, value: object, path: Path, lineno: int) -> str:
        """A label as its class name. JSON gives labels types, and a data set must not mix them (1 and "1")."""
        name = _label_name(value, f"field {self.spec.label_field!r}", path, lineno)
        if path.suffix.lower() == ".jsonl":
            if self._label_type is None:
                self._label_type = (type(value), f"{path.name}:{lineno}")
            elif self._label_type[0] is not type(value):
                raise AvatarError(f"mixed label types: {type(value).__name__} here, {self._label_type[0].__name__} at "
                                  f"{self._label_type[1]}", path, lineno)
        return name

    def _read_split(self, path: Path) -> list[tuple[Path, int, RawExample]]:
        rows = []
        for lineno, ex in self._read_examples(path):
            if ex.id in self._seen:
                raise AvatarError(f"duplicate example id {ex.id!r} (first at {self._seen[ex.id]})", path, lineno)
            self._seen[ex.id] = f"{path.name}:{lineno}"
            rows.append((path, lineno, ex))
        if not rows:
            raise AvatarError("empty split: no examples", path)
        return rows

    def _file(self, data_dir: Path, stem: str, required: bool = True) -> Path | None:
        """The split file ``stem`` in one of the task's formats (exactly one may be there)."""
        found = [data_dir / (stem + ext) for ext in self.formats if (data_dir / (stem + ext)).is_file()]
        if len(found) > 1:
            raise AvatarError(f"two files for one split ({found[0].name} and {found[1].name}): keep one", data_dir)
        if not found and required:
            raise AvatarError(f"missing file (or {', '.join(stem + e for e in self.formats[1:])})", data_dir / (stem + self.formats[0]))
        return found[0] if found else None

    def sample_dir(self) -> Path:
        """The small real sample shipped with Avatar (see samples/ATTRIBUTION.md): the presets have one."""
        if self.name not in PRESETS:
            raise AvatarError(f"task {self.name} reads your own data: give its folder (--data DIR, with a {TASK_FILE} describing it)")
        return SAMPLES_DIR / self.name

    def _prepare(self, data_dir: Path) -> None:
        """Read whatever the splits refer to (pairs: the functions file)."""

    @abstractmethod
    def _read_examples(self, path: Path) -> Iterator[tuple[int, RawExample]]: ...

    # --- scoring ------------------------------------------------------------------------------------------
    def read_logits(self, logits) -> tuple[list[int], list[float] | None]:
        """Predicted classes of logits (N, C), and with two classes each example's margin (logit 1 - logit 0,
        which ranks examples as the probability of class 1 does; None with more classes)."""
        import numpy as np

        logits = np.asarray(logits)
        margin = (logits[:, 1] - logits[:, 0]).tolist() if self.num_classes == 2 else None
        return logits.argmax(axis=1).tolist(), margin

    def metrics(self, labels: Sequence[int], preds: Sequence[int], positive_scores: Sequence[float] | None = None) -> dict:
        """Two classes: CodeXGLUE's accuracy, precision, recall and F1 of class 1; with ``positive_scores`` (e.g.
        the probability of class 1) also ROC AUC, which ranks examples without a threshold (None when only one
        class is present). More classes: accuracy and the macro averages of precision, recall and F1."""
        from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score  # training install only

        if self.num_classes > 2:
            p, r, f1, _ = precision_recall_fscore_support(labels, preds, labels=list(range(self.num_classes)), average="macro",
                                                          zero_division=0)
            return {"accuracy": float(accuracy_score(labels, preds)), "macro_precision": float(p), "macro_recall": float(r),
                    "macro_f1": float(f1)}
        p, r, f1, _ = precision_recall_fscore_support(labels, preds, average="binary", zero_division=0)
        out = {
            "accuracy": float(accuracy_score(labels, preds)),
            "precision": float(p),
            "recall": float(r),
            "f1": float(f1),
        }
        if positive_scores is not None:
            out["roc_auc"] = float(roc_auc_score(labels, positive_scores)) if len(set(labels)) == 2 else None
        return out


@dataclass(frozen=True)
class RawExample:
    """An example as read, before its label becomes a class index."""

    id: str
    texts: tuple[str, ...]
    label: str
    function_ids: tuple[str, ...] = ()


class ClassifyTask(Task):
    kind = "classify"
    num_inputs = 1
    formats = (".jsonl", ".csv", ".tsv")

    def _read_examples(self, path: Path) -> Iterator[tuple[int, RawExample]]:
        s = self.spec
        for lineno, record in read_records(path):
            code = _require(record, s.code_field, str, path, lineno)
            label = self._label(_require(record, s.label_field, (str, int), path, lineno), path, lineno)
            if s.id_field in record or "id_field" in self.lines:  # a field the task file names must be there
                ex_id = str(_require(record, s.id_field, (str, int), path, lineno))
            else:  # CodeXGLUE's default id field is optional: the example is then known by its place
                ex_id = f"{path.stem}:{lineno}"
            yield lineno, RawExample(ex_id, (normalize_code(code),), label)


class PairsTask(Task):
    kind = "pairs"
    num_inputs = 2
    formats = (".txt", ".csv", ".jsonl")
    functions_files = ("data.jsonl", "data.csv")

    def __init__(self, spec: TaskSpec, task_file: Path | None = None, lines: dict[str, int | None] | None = None) -> None:
        super().__init__(spec, task_file, lines)
        self._functions: dict[str, str] = {}
        self._functions_file = "data.jsonl"

    def _prepare(self, data_dir: Path) -> None:
        found = [data_dir / f for f in self.functions_files if (data_dir / f).is_file()]
        if len(found) > 1:
            raise AvatarError(f"two functions files ({found[0].name} and {found[1].name}): keep one", data_dir)
        path = found[0] if found else data_dir / self.functions_files[0]
        if not found:
            raise AvatarError(f"missing file (or {', '.join(self.functions_files[1:])})", path)
        self._functions_file = path.name
        functions: dict[str, str] = {}
        first_line: dict[str, int] = {}
        for lineno, record in read_records(path):
            idx = str(_require(record, self.spec.id_field, (str, int), path, lineno))
            func = _require(record, self.spec.code_field, str, path, lineno)
            if idx in first_line:
                raise AvatarError(f"duplicate {self.spec.id_field} {idx!r} (first at line {first_line[idx]})", path, lineno)
            first_line[idx] = lineno
            functions[idx] = normalize_code(func)
        if not functions:
            raise AvatarError("no functions", path)
        self._functions = functions

    def _pair_rows(self, path: Path) -> Iterator[tuple[int, str, str, object]]:
        if path.suffix.lower() == ".txt":  # CodeXGLUE's: no header, tab-separated
            for lineno, raw in _lines(path):
                fields = raw.rstrip("\r\n").split("\t")
                if len(fields) != 3:
                    raise AvatarError(f"expected 'idx1<TAB>idx2<TAB>label', got {len(fields)} field(s)", path, lineno)
                a, b, label = (x.strip() for x in fields)
                yield lineno, a, b, label
            return
        for lineno, record in read_records(path):
            a, b = (str(_require(record, k, (str, int), path, lineno)) for k in self.spec.pair_fields)
            yield lineno, a, b, _require(record, self.spec.label_field, (str, int), path, lineno)

    def _read_examples(self, path: Path) -> Iterator[tuple[int, RawExample]]:
        for lineno, a, b, value in self._pair_rows(path):
            for idx in (a, b):
                if idx not in self._functions:
                    raise AvatarError(f"function id {idx!r} is not in {self._functions_file}", path, lineno)
            label = self._label(value, path, lineno)
            # pairs repeat inside BigCloneBench's files, so the line, not the pair, identifies an example
            yield lineno, RawExample(f"{path.stem}:{lineno}", (self._functions[a], self._functions[b]), label, (a, b))


KIND_CLASSES: dict[str, type[Task]] = {"classify": ClassifyTask, "pairs": PairsTask}


def task_from_spec(spec: TaskSpec | dict, task_file: Path | None = None, lines: dict[str, int | None] | None = None) -> Task:
    """The task a saved spec describes (a model folder's, a job's)."""
    spec = spec if isinstance(spec, TaskSpec) else TaskSpec.from_dict(spec)
    if spec.kind not in KIND_CLASSES:
        raise AvatarError(f"unknown task kind {spec.kind!r}; choose from {', '.join(KINDS)}")
    return KIND_CLASSES[spec.kind](spec, task_file, lines)


def get_task(name: str, data_dir: Path | str | None = None) -> Task:
    """The task ``name`` (a preset or a generic kind) as the data folder's task.toml describes it, if it has one."""
    if name not in TASK_NAMES:
        raise AvatarError(f"unknown task {name!r}; choose from {', '.join(TASK_NAMES)}")
    spec = PRESETS.get(name) or GENERIC[name]
    if data_dir is None or not (Path(data_dir) / TASK_FILE).is_file():
        return task_from_spec(spec)
    spec, lines = _read_task_file(Path(data_dir), spec)
    return task_from_spec(spec, Path(data_dir) / TASK_FILE, lines)
