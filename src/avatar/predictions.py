"""Teacher knowledge made elsewhere: a predictions file (a GPU box's CodeBERT, a colleague's model) turned into
the soft-label file the pipeline distils from, instead of running a teacher here.

Formats, by extension:
- ``.jsonl``: one object per line, keyed by ``id`` (or ``idx``) for one-function tasks and for pair tasks by the
  pair files' two id fields (``idx1``/``idx2`` unless the task file's ``pair_fields`` names others), with
  exactly one of ``logits`` (one number per class, in the task's order), ``probability`` (of class 1; two-class
  tasks) or ``label`` (a class, as the data writes it);
- ``.csv`` / ``.tsv``: a header naming the key columns as above and ``logit0``, ``logit1``, ... (one per class)
  or ``probability`` or ``label``;
- ``.txt``: CodeXGLUE's pair-file style without a header, tab-separated: the key column(s) first, the hard label
  last (``idx1 idx2 [gold] prediction``, as Compressor publishes its teacher's predictions).

Every unlabelled example must be covered, each once: a defect id may appear once; a clone pair as often as the
unlabelled half has it, always with the same value. Unknown ids, duplicates, non-finite logits, probabilities
outside [0, 1] and labels that are not a class stop the import with one line naming file:line, and nothing is
written.
Hard labels are distilled as what they are (cross-entropy on the label, ``[distill] label_smoothing``): a
temperature does not apply to them.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from pathlib import Path

from avatar._io import read_text, sha256_file, sha256_json
from avatar.errors import AvatarError
from avatar.labels import FORMAT, KINDS, write_soft_labels
from avatar.tasks import Example, Task, fingerprint, read_jsonl

ALIASES = {"idx": "id"}
EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS] before their log-odds are taken


def _key(task: Task, ex: Example) -> tuple[str, ...]:
    return ex.function_ids if task.num_inputs == 2 else (ex.id,)


def _key_columns(task: Task) -> tuple[str, ...]:
    """What a prediction is keyed by: the example's id, or a pair's two function ids as its pair files name them."""
    return task.spec.pair_fields if task.kind == "pairs" else ("id",)


def _name(key: tuple[str, ...]) -> str:
    return f"id {key[0]!r}" if len(key) == 1 else f"pair {key[0]}/{key[1]}"


def _number(raw, what: str, path: Path, lineno: int) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise AvatarError(f"{what} {raw!r} is not a number", path, lineno) from None
    if isinstance(raw, bool) or not math.isfinite(value):
        raise AvatarError(f"{what} {raw!r} is not a finite number", path, lineno)
    return value


def _value_columns(task: Task) -> dict[str, tuple[str, ...]]:
    return {"logits": tuple(f"logit{i}" for i in range(task.num_classes)), "probability": ("probability",), "label": ("label",)}


def _value(task: Task, kind: str, raw: list, path: Path, lineno: int) -> tuple[list[float] | None, int]:
    """(logits or None, predicted class index) of one row's raw value(s)."""
    n = task.num_classes
    if kind == "logits":
        if not isinstance(raw, list) or len(raw) != n:
            raise AvatarError(f"logits must be {n} numbers, one per class ({', '.join(task.classes)})", path, lineno)
        logits = [_number(v, "logit", path, lineno) for v in raw]
        return logits, max(range(n), key=logits.__getitem__)
    if kind == "probability":
        if n != 2:
            raise AvatarError(f"a probability says too little for {n} classes: give logits (one per class) or a label", path, lineno)
        p = _number(raw[0], "probability", path, lineno)
        if not 0.0 <= p <= 1.0:
            raise AvatarError(f"probability {raw[0]!r} is outside [0, 1]", path, lineno)
        q = min(max(p, EPS), 1 - EPS)
        return [0.0, math.log(q / (1 - q))], int(p >= 0.5)
    value = raw[0]
    name = str(value).strip() if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)) else None
    if name not in task.classes:
        raise AvatarError(f"label {value!r} is not a class of the task ({', '.join(task.classes)})", path, lineno)
    return None, task.classes.index(name)


def _rows_jsonl(task: Task, path: Path):
    keys = _key_columns(task)
    for lineno, obj in read_jsonl(path):
        obj = {ALIASES.get(k, k): v for k, v in obj.items()}
        missing = [k for k in keys if k not in obj]
        if missing:
            raise AvatarError(f"missing field {missing[0]!r} (a {task.name} prediction is keyed by {', '.join(keys)})", path, lineno)
        given = [k for k in KINDS if k in obj]
        if len(given) != 1:
            raise AvatarError(f"give exactly one of {', '.join(KINDS)} (found {', '.join(given) or 'none'})", path, lineno)
        kind = given[0]
        yield lineno, tuple(str(obj[k]) for k in keys), kind, obj[kind] if kind == "logits" else [obj[kind]]


def _rows_table(task: Task, path: Path, text: str, delimiter: str):
    keys = _key_columns(task)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [ALIASES.get(h.strip(), h.strip()) for h in next(reader, [])]
    missing = [k for k in keys if k not in header]
    if missing:
        raise AvatarError(f"the header lacks the key column {missing[0]!r} (a {task.name} prediction is keyed by {', '.join(keys)})", path, 1)
    value_columns = _value_columns(task)
    kinds = [k for k, cols in value_columns.items() if all(c in header for c in cols)]
    if len(kinds) != 1:
        logits = " and ".join(value_columns["logits"])
        raise AvatarError(f"the header must name exactly one of: {logits}, probability, label", path, 1)
    kind = kinds[0]
    at = {name: i for i, name in enumerate(header)}
    for lineno, fields in enumerate(reader, 2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise AvatarError(f"expected {len(header)} fields as the header has, got {len(fields)}", path, lineno)
        yield lineno, tuple(fields[at[k]].strip() for k in keys), kind, [fields[at[c]] for c in value_columns[kind]]


def _rows_txt(task: Task, path: Path, text: str):
    n = len(_key_columns(task))
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < n + 1:
            raise AvatarError(f"expected {n} id column(s) and the predicted label last, tab-separated; got {len(fields)} field(s)", path, lineno)
        yield lineno, tuple(f.strip() for f in fields[:n]), "label", [fields[-1]]


def read_predictions(task: Task, path: Path, examples: list[Example]) -> tuple[str, dict[str, tuple[list[float] | None, int]]]:
    """(kind, example id -> (logits or None, label)) for every one of ``examples``, checked as the module says."""
    path = Path(path)
    suffix = path.suffix.lower()
    readers = {".jsonl": lambda: _rows_jsonl(task, path), ".csv": lambda: _rows_table(task, path, read_text(path), ","),
               ".tsv": lambda: _rows_table(task, path, read_text(path), "\t"), ".txt": lambda: _rows_txt(task, path, read_text(path))}
    if suffix not in readers:
        raise AvatarError(f"unknown predictions format {suffix or '(no extension)'!r}: use .jsonl, .csv, .tsv or .txt", path)
    by_key: dict[tuple[str, ...], list[Example]] = {}
    for ex in examples:
        by_key.setdefault(_key(task, ex), []).append(ex)
    seen: dict[tuple[str, ...], tuple[int, tuple]] = {}  # key -> (first line, value)
    count: Counter = Counter()
    kind_of_file = None
    for lineno, key, kind, raw in readers[suffix]():
        if kind_of_file is None:
            kind_of_file = kind
        elif kind != kind_of_file:
            raise AvatarError(f"this line gives {kind} where the file's first prediction gives {kind_of_file}", path, lineno)
        what = _name(key)
        if key not in by_key:
            raise AvatarError(f"{what} is not an example of the unlabelled half", path, lineno)
        value = _value(task, kind, raw, path, lineno)
        if key in seen:
            first, before = seen[key]
            if len(key) == 1:
                raise AvatarError(f"duplicate {what} (first at line {first})", path, lineno)
            if before != (tuple(value[0]) if value[0] else None, value[1]):
                raise AvatarError(f"{what} again with another prediction (first at line {first})", path, lineno)
            if count[key] >= len(by_key[key]):
                raise AvatarError(f"{what} more often than the unlabelled half has it ({len(by_key[key])}); first at line {first}", path, lineno)
        else:
            seen[key] = (lineno, (tuple(value[0]) if value[0] else None, value[1]))
        count[key] += 1
    missing = [ex for ex in examples if _key(task, ex) not in seen]
    if missing:
        raise AvatarError(f"{len(missing)} unlabelled example(s) have no prediction, e.g. {_name(_key(task, missing[0]))}: "
                          "every one must be covered", path)
    out = {}
    for ex in examples:
        logits, label = seen[_key(task, ex)][1]
        out[ex.id] = (list(logits) if logits else None, label)
    return kind_of_file, out


def import_predictions(task: Task, path: Path, examples: list[Example], out_file: Path) -> dict:
    """Write the soft-label file for ``examples`` from the predictions in ``path``; return its summary."""
    kind, values = read_predictions(task, path, examples)
    data_hash = fingerprint(examples)
    key = sha256_json({"format": FORMAT, "task": task.name, "predictions": sha256_file(path), "data": data_hash})
    return write_soft_labels(out_file, key=key, task=task.name, teacher=f"predictions in {Path(path).resolve()}", data=data_hash,
                             kind=kind, rows=[(ex.id, *values[ex.id]) for ex in examples], classes=task.classes)
