"""The pipeline over a run directory: each stage writes its artefact atomically and is skipped when it is done.

Stages so far: ``teacher/`` (fine-tuned teacher + metrics.json) and ``soft_labels.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from rich.progress import Progress

from avatar.labels import label
from avatar.tasks import Task, TaskData
from avatar._io import METRICS
from avatar.teacher import FinetuneConfig, data_fingerprints, finetune

log = logging.getLogger(__name__)


def teacher_stage(run_dir: Path, task: Task, data: TaskData, config: FinetuneConfig, progress: Progress | None = None) -> dict:
    """Fine-tune the teacher unless ``run_dir/teacher`` already holds one made with the same settings; then label."""
    teacher_dir = run_dir / "teacher"
    metrics_file = teacher_dir / METRICS
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    done = (
        metrics.get("task") == task.name
        and metrics.get("data") == data_fingerprints(data)
        and metrics.get("settings") == asdict(config)
    )
    if done:
        log.info("teacher up to date: %s", teacher_dir)
    else:
        metrics = finetune(task, data, teacher_dir, config, progress)
    soft = label(teacher_dir, task, data.unlabelled, run_dir / "soft_labels.json", config.train.eval_batch_size, progress)
    return {"teacher": metrics, "soft_labels": soft, "reused_teacher": done}
