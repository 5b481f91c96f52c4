"""Teacher stage, part two: the teacher's logits on the unlabelled half ("soft labels") for the student.

The file holds raw two-class logits (not probabilities), so distillation can pick its own temperature.
A result is cached under a key made of the teacher's files and the examples, so asking again costs nothing.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from rich.progress import Progress

from avatar._io import METRICS, cache_dir, copy_atomic, sha256_file, sha256_json, write_json_atomic
from avatar.errors import AvatarError
from avatar.modeling import TRAIN_IDS, check_model_folder, load_classifier, model_max_length
from avatar.tasks import Example, Task, fingerprint
from avatar.trainer import encode_for, predict_logits

log = logging.getLogger(__name__)

FORMAT = "avatar-soft-labels/2"


@dataclass
class SoftLabels:
    data: str  # fingerprint of the examples that were labelled
    logits: dict[str, list[float]]  # example id -> the teacher's two logits
    key: str = ""  # hash of teacher and data: changes whenever the teacher does


def teacher_hash(teacher_dir: Path) -> str:
    """Hash of everything that decides the teacher's outputs: weights, config, tokenizer."""
    files = sorted(p for p in Path(teacher_dir).iterdir() if p.is_file() and p.name not in (METRICS, TRAIN_IDS))
    return sha256_json({p.name: sha256_file(p) for p in files})


def label(
    teacher_dir: Path,
    task: Task,
    examples: list[Example],
    out_file: Path,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> dict:
    """Write the teacher's logits and predictions on ``examples`` to ``out_file``; return the file's summary."""
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
        max_length = model_max_length(model)
        data = encode_for(model, tokenizer, examples, task)
        bar = progress.add_task("labelling", total=len(data)) if progress else None
        logits = predict_logits(model, data, batch_size, on_batch=(lambda k: progress.advance(bar, k)) if bar is not None else None)
        write_json_atomic(
            cached,
            {
                "format": FORMAT,
                "key": key,
                "task": task.name,
                "teacher": str(teacher_dir.resolve()),
                "max_length": max_length,
                "data": data_hash,
                "labels": [
                    {"id": ex_id, "logits": [round(float(v), 6) for v in row], "pred": int(row.argmax())}
                    for ex_id, row in zip(data.ids, logits)
                ],
            },
            indent=None,  # tens of thousands of rows: keep the file compact
        )
    copy_atomic(cached, out_file)
    return _summary(out_file, _read(out_file))


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
    return SoftLabels(doc["data"], {row["id"]: row["logits"] for row in doc["labels"]}, doc["key"])


def _read(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AvatarError("soft-label file not found", path) from None
    except json.JSONDecodeError as e:
        raise AvatarError(f"malformed soft-label file ({e.msg})", path, e.lineno) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise AvatarError(f"not an Avatar soft-label file (expected format {FORMAT!r}); make it again with avatar label", path)
    rows = doc.get("labels")
    ok = isinstance(doc.get("key"), str) and isinstance(doc.get("data"), str) and isinstance(rows, list)
    ok = ok and all(
        isinstance(r, dict) and isinstance(r.get("id"), str) and isinstance(r.get("logits"), list) and len(r["logits"]) == 2
        and all(isinstance(v, int | float) and math.isfinite(v) for v in r["logits"]) and r.get("pred") in (0, 1)
        for r in rows
    )
    if not ok:
        raise AvatarError("damaged soft-label file (missing fields or rows that are not two finite logits)", path)
    return doc


def _read_if_valid(path: Path) -> dict | None:
    try:
        return _read(path)
    except AvatarError:  # absent or damaged: it is simply redone
        return None


def _summary(path: Path, doc: dict) -> dict:
    preds = [row["pred"] for row in doc["labels"]]
    return {"file": str(path), "examples": len(preds), "predicted_positive": sum(preds), "key": doc["key"]}
