"""Teacher stage, part two: the teacher's logits on the unlabelled half ("soft labels") for the student.

The file holds raw two-class logits (not probabilities), so distillation can pick its own temperature.
A result is cached under a key made of the teacher's files and the examples, so asking again costs nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from rich.progress import Progress

from avatar._io import cache_dir, sha256_file, sha256_json, write_json_atomic
from avatar.errors import AvatarError
from avatar.modeling import load_classifier
from avatar.tasks import Example, Task, fingerprint
from avatar.trainer import encode, predict_logits

log = logging.getLogger(__name__)

FORMAT = "avatar-soft-labels/1"
DEFAULT_MAX_LENGTH = 256


def teacher_hash(teacher_dir: Path) -> str:
    """Hash of everything that decides the teacher's outputs: weights, config, tokenizer."""
    files = sorted(p for p in Path(teacher_dir).iterdir() if p.is_file() and p.name != "metrics.json")
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
    key = sha256_json({"task": task.name, "teacher": teacher_hash(teacher_dir), "data": fingerprint(examples)})
    existing = _read_if_valid(out_file)
    if existing is not None and existing["key"] == key:
        log.info("soft labels up to date: %s", out_file)
        return _summary(out_file, existing)
    cached = cache_dir() / "soft_labels" / f"{key}.json"
    if (_read_if_valid(cached) or {}).get("key") != key:
        model, tokenizer = load_classifier(teacher_dir, task)
        max_length = getattr(model.config, "avatar_max_length", DEFAULT_MAX_LENGTH)
        data = encode(tokenizer, examples, max_length)
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
                "labels": [
                    {"id": ex_id, "logits": [round(float(v), 6) for v in row], "pred": int(row.argmax())}
                    for ex_id, row in zip(data.ids, logits)
                ],
            },
            indent=None,  # tens of thousands of rows: keep the file compact
        )
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.tmp")
    shutil.copyfile(cached, tmp)
    os.replace(tmp, out_file)
    return _summary(out_file, _read(out_file))


def load_soft_labels(path: Path) -> dict[str, list[float]]:
    """Example id -> teacher logits, from a file :func:`label` wrote."""
    doc = _read(path)
    return {row["id"]: row["logits"] for row in doc["labels"]}


def _read(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AvatarError("soft-label file not found", path) from None
    except json.JSONDecodeError as e:
        raise AvatarError(f"malformed soft-label file ({e.msg})", path, e.lineno) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise AvatarError(f"not an Avatar soft-label file (expected format {FORMAT!r})", path)
    return doc


def _read_if_valid(path: Path) -> dict | None:
    try:
        return _read(path)
    except AvatarError:  # absent or damaged: it is simply redone
        return None


def _summary(path: Path, doc: dict) -> dict:
    preds = [row["pred"] for row in doc["labels"]]
    return {"file": str(path), "examples": len(preds), "predicted_positive": sum(preds), "key": doc["key"]}
