"""The indicator's training data: sampled configurations, each distilled briefly and scored on validation.

A candidate's key hashes its configuration, the data, the teacher's soft labels and the short budget, so any
change of those is new work while an interrupted stage resumes where it stopped, on either executor backend.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from avatar._io import sha256_json
from avatar.cost import PAIR_HEAD
from avatar.distill import DistillConfig
from avatar.executor import Executor, run_jobs


RESULT_FORMAT = 3  # 3: per-example validation margins included; results of another format are redone, not misread


def candidate_key(config: dict, data: dict, soft_labels_key: str, budget: DistillConfig, num_inputs: int = 1) -> str:
    """A pair task's key also names the pair head: a result of another head is other work."""
    head = {"pair_head": PAIR_HEAD} if num_inputs > 1 else {}  # single-function keys are those of earlier versions
    return sha256_json({"format": RESULT_FORMAT, "config": config, "data": data, "teacher": soft_labels_key, "budget": asdict(budget),
                        **head})[:24]


def distill_candidate(job: dict) -> dict:
    """Distil one sampled configuration on the short budget; runs in a worker process or a Ray task."""
    import torch
    from transformers.utils import logging as hf_logging

    from avatar.device import accelerator
    from avatar.distill import distill
    from avatar.labels import load_soft_labels
    from avatar.settings import DeviceConfig
    from avatar.student import StudentConfig
    from avatar.tasks import get_task

    hf_logging.set_verbosity_error()
    threads = torch.get_num_threads()
    torch.set_num_threads(job["threads"])
    try:  # a single-worker executor runs jobs in the calling process: give its thread count back afterwards
        task = get_task(job["task"], job["data_dir"])
        data = task.load(job["data_dir"], seed=job["seed"])
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            metrics = distill(task, data, load_soft_labels(Path(job["soft_labels"])), StudentConfig(**job["config"]),
                              Path(tmp) / "student", DistillConfig(**job["budget"]), accel=accelerator(DeviceConfig(**job.get("device", {}))))
    finally:
        torch.set_num_threads(threads)
    return {
        "valid": metrics["valid"],
        **{k: metrics[k] for k in ("valid_margins", "valid_preds") if k in metrics},  # two classes: margins; more: classes
        "parameters": metrics["parameters"],
        "seconds": round(time.perf_counter() - start, 2),
    }


def score_candidates(
    configs: list[dict], task_name: str, data_dir: str | None, seed: int, soft_labels: Path, soft_labels_key: str,
    data_fingerprint: dict, budget: DistillConfig, results_dir: Path, executor: Executor, threads: int = 1,
    device: dict | None = None,
) -> list[dict]:
    """Validation results of every configuration, in order (``valid``: every metric, so the indicator can choose
    which one to learn); finished candidates are read back, not redone. ``device``: where each job trains (a
    ``DeviceConfig`` as a dict; not in the key: a result is the same work wherever it ran)."""
    from avatar.tasks import get_task

    num_inputs = get_task(task_name, data_dir).num_inputs
    jobs = [
        {
            "key": candidate_key(c, data_fingerprint, soft_labels_key, budget, num_inputs),
            "config": c, "task": task_name, "data_dir": data_dir, "seed": seed,
            "soft_labels": str(Path(soft_labels).resolve()), "budget": asdict(budget), "threads": threads,
            "device": device or {},
        }
        for c in configs
    ]
    results = run_jobs(distill_candidate, jobs, results_dir, executor)
    return [results[j["key"]] for j in jobs]


def successive_halving(n: int, rungs: int, eta: int, run_rung: Callable[[int, list[int]], list[dict]],
                       score: Callable[[dict], float | None]) -> dict[int, tuple[int, dict]]:
    """Successive halving (as in Hyperband / ASHA) over samples 0..n-1: all of them at rung 0, then at each rung the
    best ceil(k / eta) by ``score`` go on to the next. ``run_rung(rung, samples)`` gives their results in order
    (finished ones are read back, so a killed run resumes per sample and rung). Returns each sample's highest rung
    and its result there."""
    alive, reached = list(range(n)), {}
    for rung in range(rungs):
        for i, result in zip(alive, run_rung(rung, alive)):
            reached[i] = (rung, result)
        if rung + 1 < rungs:
            value = lambda i: -math.inf if score(reached[i][1]) is None else score(reached[i][1])  # noqa: E731
            alive = sorted(sorted(alive, key=lambda i: (-value(i), i))[: max(1, math.ceil(len(alive) / eta))])
    return reached
