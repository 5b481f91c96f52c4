"""Tasks: where their data lives, how it is checked, how a model reads an example, how it is scored.

Two binary classification tasks on code, in CodeXGLUE's formats:

- ``defect``: Devign vulnerability prediction. ``train.jsonl``, ``valid.jsonl``, ``test.jsonl``, one JSON
  object a line with ``func`` (a C function) and ``target`` (0/1); ``idx`` is the example id where present.
- ``clone``: BigCloneBench clone detection. ``data.jsonl`` (``idx``, ``func``) plus pair files
  ``train.txt``, ``valid.txt``, ``test.txt`` with lines ``idx1<TAB>idx2<TAB>label``.

Both may give the two halves of train themselves (``label_train.*`` / ``unlabel_train.*``); otherwise train
is split into halves here, seeded and stratified. The teacher learns from the labelled half; the student
only ever sees the teacher's logits on the unlabelled half.
"""

from __future__ import annotations

import hashlib
import json
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from avatar.errors import AvatarError
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


def _check_label(value: object, path: Path, line: int, field: str) -> int:
    if isinstance(value, bool) or value not in (0, 1):
        raise AvatarError(f"{field} must be 0 or 1, got {value!r}", path, line)
    return int(value)  # type: ignore[arg-type]


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers."""
    if not path.is_file():
        raise AvatarError("missing file", path)
    with open(path, "rb") as f:  # line by line, so that a byte that is not UTF-8 is reported where it is
        for lineno, data in enumerate(f, start=1):
            try:
                raw = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise AvatarError(f"not UTF-8 text at column {e.start + 1} ({e.reason})", path, lineno) from None
            if raw.strip():
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
        raise AvatarError(f"missing field {field!r}", path, line)
    value = obj[field]
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise AvatarError(f"field {field!r} has the wrong type ({type(value).__name__})", path, line)
    return value


class Task(ABC):
    name: ClassVar[str]
    num_inputs: ClassVar[int]  # functions a model reads per example: 1 (defect) or 2 (clone pair)
    main_metric: ClassVar[str]  # the validation score that picks checkpoints
    halves: ClassVar[tuple[str, str]]  # file names of a given labelled/unlabelled split of train

    def load(self, data_dir: Path | None = None, seed: int = SEED) -> TaskData:
        """Read and check every split; split train into labelled/unlabelled halves unless given."""
        data_dir = Path(data_dir) if data_dir is not None else self.sample_dir()
        if not data_dir.is_dir():
            raise AvatarError("data folder not found", data_dir)
        self._prepare(data_dir)
        self._seen: dict[str, str] = {}  # example id -> "file:line" where it was first read
        label_file, unlabel_file = (data_dir / h for h in self.halves)
        if label_file.exists() or unlabel_file.exists():
            for f in (label_file, unlabel_file):
                if not f.exists():
                    raise AvatarError(f"missing file (given together with {self.halves[0]} / {self.halves[1]})", f)
            labelled, unlabelled = self._read_split(label_file), self._read_split(unlabel_file)
        else:
            train = self._read_split(data_dir / self._split_file("train"))
            if len(train) < 2:
                raise AvatarError("train needs at least 2 examples to split into halves", data_dir / self._split_file("train"))
            unlabelled, labelled = stratified_sample(train, len(train) // 2, seed)
        data = TaskData(
            labelled=labelled,
            unlabelled=unlabelled,
            valid=self._read_split(data_dir / self._split_file("valid")),
            test=self._read_split(data_dir / self._split_file("test")),
        )
        return data

    def sample_dir(self) -> Path:
        """The small real sample shipped with Avatar (see samples/ATTRIBUTION.md)."""
        return SAMPLES_DIR / self.name

    def metrics(self, labels: Sequence[int], preds: Sequence[int], positive_scores: Sequence[float] | None = None) -> dict:
        """CodeXGLUE's accuracy, precision, recall and F1; with ``positive_scores`` (e.g. the probability of class
        1) also ROC AUC, which ranks examples without a threshold (None when only one class is present)."""
        from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score  # training install only

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

    def _read_split(self, path: Path) -> list[Example]:
        examples = []
        for lineno, ex in self._read_examples(path):
            if ex.id in self._seen:
                raise AvatarError(f"duplicate example id {ex.id!r} (first at {self._seen[ex.id]})", path, lineno)
            self._seen[ex.id] = f"{path.name}:{lineno}"
            examples.append(ex)
        if not examples:
            raise AvatarError("empty split: no examples", path)
        return examples

    def _prepare(self, data_dir: Path) -> None:
        """Read whatever the splits refer to (clone: the function table)."""

    @abstractmethod
    def _split_file(self, split: str) -> str: ...

    @abstractmethod
    def _read_examples(self, path: Path) -> Iterator[tuple[int, Example]]: ...


class DefectTask(Task):
    name = "defect"
    num_inputs = 1
    main_metric = "accuracy"  # CodeXGLUE's defect-detection metric
    halves = ("label_train.jsonl", "unlabel_train.jsonl")

    def _split_file(self, split: str) -> str:
        return f"{split}.jsonl"

    def _read_examples(self, path: Path) -> Iterator[tuple[int, Example]]:
        for lineno, obj in read_jsonl(path):
            func = _require(obj, "func", str, path, lineno)
            label = _check_label(_require(obj, "target", int, path, lineno), path, lineno, "target")
            ex_id = str(obj["idx"]) if "idx" in obj else f"{path.stem}:{lineno}"
            yield lineno, Example(ex_id, (normalize_code(func),), label)


class CloneTask(Task):
    name = "clone"
    num_inputs = 2
    main_metric = "f1"  # CodeXGLUE's BigCloneBench metric
    halves = ("label_train.txt", "unlabel_train.txt")

    def __init__(self) -> None:
        self._functions: dict[str, str] = {}

    def _split_file(self, split: str) -> str:
        return f"{split}.txt"

    def _prepare(self, data_dir: Path) -> None:
        path = data_dir / "data.jsonl"
        functions: dict[str, str] = {}
        first_line: dict[str, int] = {}
        for lineno, obj in read_jsonl(path):
            idx = str(_require(obj, "idx", (str, int), path, lineno))
            func = _require(obj, "func", str, path, lineno)
            if idx in first_line:
                raise AvatarError(f"duplicate idx {idx!r} (first at line {first_line[idx]})", path, lineno)
            first_line[idx] = lineno
            functions[idx] = normalize_code(func)
        if not functions:
            raise AvatarError("no functions", path)
        self._functions = functions

    def _read_examples(self, path: Path) -> Iterator[tuple[int, Example]]:
        for lineno, raw in _lines(path):
            fields = raw.rstrip("\r\n").split("\t")
            if len(fields) != 3:
                raise AvatarError(f"expected 'idx1<TAB>idx2<TAB>label', got {len(fields)} field(s)", path, lineno)
            a, b, raw_label = (x.strip() for x in fields)
            for idx in (a, b):
                if idx not in self._functions:
                    raise AvatarError(f"function id {idx!r} is not in data.jsonl", path, lineno)
            label = _check_label(int(raw_label) if raw_label in ("0", "1") else raw_label, path, lineno, "label")
            # pairs repeat inside BigCloneBench's files, so the line, not the pair, identifies an example
            yield lineno, Example(f"{path.stem}:{lineno}", (self._functions[a], self._functions[b]), label, (a, b))


TASKS: dict[str, type[Task]] = {"defect": DefectTask, "clone": CloneTask}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise AvatarError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name]()
