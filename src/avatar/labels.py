"""Teacher stage, part two: the teacher's logits on the unlabelled half ("soft labels") for the student.

The file holds raw logits, one per class (not probabilities), so distillation can pick its own temperature; one
imported from a predictions file (``avatar.predictions``) may hold log-odds of probabilities, or hard labels
only (``kind``). A result is cached under a key made of the teacher's files and the examples, so asking again
costs nothing.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import Progress

from avatar._io import METRICS, cache_dir, copy_atomic, sha256_file, sha256_json, write_json_atomic
from avatar.device import CPU, Accelerator
from avatar.errors import AvatarError
from avatar.modeling import TRAIN_IDS, check_model_folder, load_classifier, model_max_length
from avatar.tasks import Example, Task, fingerprint
from avatar.trainer import encode_for, predict_logits

log = logging.getLogger(__name__)

FORMAT = "avatar-soft-labels/2"
KINDS = ("logits", "probability", "label")  # what a teacher gave: logits, a probability (stored as log-odds), a label
BINARY = ("0", "1")  # the classes of the CodeXGLUE tasks: a file that names no classes has these


@dataclass
class SoftLabels:
    data: str  # fingerprint of the examples that were labelled
    logits: dict[str, list[float]]  # example id -> the teacher's logits, one per class (empty for hard labels)
    key: str = ""  # hash of teacher and data: changes whenever the teacher does
    kind: str = "logits"  # "logits" | "probability" (logits are its log-odds) | "label" (hard labels only)
    preds: dict[str, int] = field(default_factory=dict)  # example id -> the teacher's label (a class index)
    classes: tuple[str, ...] = ("0", "1")  # the task's classes, in the order of the logits

    def __post_init__(self) -> None:
        if not self.preds:  # given logits only: the label is their argmax (ties to the first class, as numpy's)
            self.preds = {i: max(range(len(v)), key=v.__getitem__) for i, v in self.logits.items()}

    def check_task(self, task: Task, path: Path | None = None) -> None:
        """These labels must be for ``task``'s classes, in its order."""
        if tuple(self.classes) != tuple(task.classes):
            raise AvatarError(f"these soft labels are for the classes {', '.join(self.classes)}, not the task's "
                              f"{', '.join(task.classes)}: make them again with avatar label", path)


def teacher_hash(teacher_dir: Path) -> str:
    """Hash of everything that decides the teacher's outputs: weights, config, tokenizer."""
    files = sorted(p for p in Path(teacher_dir).iterdir() if p.is_file() and p.name not in (METRICS, TRAIN_IDS))
    return sha256_json({p.name: sha256_file(p) for p in files})


def label(
    teacher_dir: Path,
    task: Task,
    examples: list[Example],
    out_file: Path,
    progress: Progress | None = None,
    accel: Accelerator = CPU,
) -> dict:
    """Write the teacher's logits and predictions on ``examples`` to ``out_file``, computed on ``accel``'s device in
    batches of its ``eval_batch_size``; return the file's summary."""
    teacher_dir = Path(teacher_dir)
    check_model_folder(teacher_dir)
    _check_not_taught_on(teacher_dir, examples)
    data_hash = fingerprint(examples)
    key = sha256_json({"format": FORMAT, "task": task.name, "teacher": teacher_hash(teacher_dir), "data": data_hash})
    existing = _read_if_valid(out_file)
    if existing is not None and existing["key"] == key:
        log.info("soft labels up to date: %s", out_file)
        return _summary(out_file, existing)
    cached = cache_dir() / "soft_labels" / f"{key}.json"
    if (_read_if_valid(cached) or {}).get("key") != key:
        model, tokenizer = load_classifier(teacher_dir, task)
        model.to(accel.device)
        max_length = model_max_length(model)
        data = encode_for(model, tokenizer, examples, task)
        bar = progress.add_task("labelling", total=len(data)) if progress else None
        logits = predict_logits(model, data, accel.eval_batch_size, (lambda k: progress.advance(bar, k)) if bar is not None else None, accel)
        rows = [(ex_id, [float(v) for v in row], int(row.argmax())) for ex_id, row in zip(data.ids, logits)]
        write_soft_labels(cached, key=key, task=task.name, teacher=str(teacher_dir.resolve()), data=data_hash, kind="logits",
                          rows=rows, classes=task.classes, max_length=max_length)
    copy_atomic(cached, out_file)
    return _summary(out_file, _read(out_file))


def write_soft_labels(path: Path, *, key: str, task: str, teacher: str, data: str, kind: str,
                      rows: list[tuple[str, list[float] | None, int]], classes: Sequence[str], max_length: int | None = None) -> dict:
    """The one writer of soft-label files: (id, logits or None for hard labels, predicted class index) per example."""
    write_json_atomic(
        path,
        {
            "format": FORMAT, "key": key, "task": task, "teacher": teacher, "kind": kind, "max_length": max_length, "data": data,
            **({"classes": list(classes)} if tuple(classes) != BINARY else {}),  # files of two classes 0/1 read as before
            "labels": [{"id": i, **({"logits": [round(v, 6) for v in lg]} if lg is not None else {}), "pred": pred}
                       for i, lg, pred in rows],
        },
        indent=None,  # tens of thousands of rows: keep the file compact
    )
    return _summary(path, _read(path))


def _check_not_taught_on(teacher_dir: Path, examples: list[Example]) -> None:
    """The teacher must not label the examples it was fine-tuned on (e.g. data split with another seed)."""
    ids_file = teacher_dir / TRAIN_IDS
    if not ids_file.is_file():
        return  # a teacher fine-tuned elsewhere: nothing to check against
    seen = set(json.loads(ids_file.read_text()))
    overlap = [ex.id for ex in examples if ex.id in seen]
    if overlap:
        raise AvatarError(
            f"the teacher was fine-tuned on {len(overlap)} of the examples it should label, e.g. {overlap[0]!r}: "
            "use the same data and --seed as for fine-tuning",
            ids_file,
        )


def load_soft_labels(path: Path) -> SoftLabels:
    """Example id -> teacher logits, from a file :func:`label` wrote, with the fingerprint of the data labelled."""
    doc = _read(path)
    rows = doc["labels"]
    logits = {} if doc["kind"] == "label" else {row["id"]: row["logits"] for row in rows}
    return SoftLabels(doc["data"], logits, doc["key"], doc["kind"], {row["id"]: row["pred"] for row in rows}, tuple(doc["classes"]))


def _read(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AvatarError("soft-label file not found", path) from None
    except json.JSONDecodeError as e:
        raise AvatarError(f"malformed soft-label file ({e.msg})", path, e.lineno) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise AvatarError(f"not an Avatar soft-label file (expected format {FORMAT!r}); make it again with avatar label", path)
    doc.setdefault("kind", "logits")  # files written before hard labels could be imported
    doc.setdefault("classes", list(BINARY))  # files written before tasks had other classes
    rows, classes = doc.get("labels"), doc["classes"]
    hard = doc["kind"] == "label"
    ok = isinstance(doc.get("key"), str) and isinstance(doc.get("data"), str) and isinstance(rows, list) and doc["kind"] in KINDS
    ok = ok and isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)
    ok = ok and all(
        isinstance(r, dict) and isinstance(r.get("id"), str) and isinstance(r.get("pred"), int) and 0 <= r["pred"] < len(classes)
        and (hard or (isinstance(r.get("logits"), list) and len(r["logits"]) == len(classes)
                      and all(isinstance(v, int | float) and math.isfinite(v) for v in r["logits"])))
        for r in rows
    )
    if not ok:
        raise AvatarError("damaged soft-label file (missing fields, or rows without a class or a finite logit per class)", path)
    return doc


def _read_if_valid(path: Path) -> dict | None:
    try:
        return _read(path)
    except AvatarError:  # absent or damaged: it is simply redone
        return None


def _summary(path: Path, doc: dict) -> dict:
    return {"file": str(path), **predicted_counts([row["pred"] for row in doc["labels"]], doc["classes"]), "key": doc["key"],
            "kind": doc["kind"], "teacher": doc.get("teacher")}


def predicted_counts(preds, classes: Sequence[str]) -> dict:
    """How many examples the teacher puts in each class (with two classes also as 'predicted positive')."""
    preds = list(preds)
    counts = {c: sum(1 for p in preds if p == i) for i, c in enumerate(classes)}
    return {"examples": len(preds), "predicted": counts, **({"predicted_positive": counts[classes[1]]} if len(classes) == 2 else {})}
