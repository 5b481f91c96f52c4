"""The pipeline over a run directory: each stage writes its artefacts atomically.

Stages so far: ``teacher/`` (fine-tuned teacher + metrics.json) and ``soft_labels.json`` (skipped when done);
the search stage: ``space.json``, ``indicator/`` (samples, candidate results, indicator.json), ``latency.json``,
``pareto.csv``, ``pareto.json``, ``chosen_student.json`` (finished candidates are never redone).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.progress import Progress

from avatar._io import METRICS, write_json_atomic, write_text_atomic
from avatar.distill import DistillConfig, teacher_view
from avatar.errors import AvatarError
from avatar.labels import label
from avatar.space import Space
from avatar.tasks import Task, TaskData
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


@dataclass
class SearchSettings:
    budget_mb: float = 3.0  # largest student, MB (2^20 bytes) of fp32 weights
    max_gflops: float | None = None  # optional cap on inference GFLOPs per example
    min_head_dim: int = 4  # smallest hidden_size / heads allowed
    samples: int = 20  # configurations distilled briefly to train the indicator
    short_budget: DistillConfig = field(default_factory=lambda: DistillConfig(epochs=1, limit=2000, eval_limit=500, patience=None))
    objective: str = "latency"  # "latency" (measured on this CPU) or "flops" (the paper's proxy)
    latency_architectures: int = 24  # random-weight architectures timed to fit the latency model
    algorithm: str = "nsga2"  # "nsga2" or "paper-ga"
    population: int = 40  # NSGA-II population
    generations: int = 50  # NSGA-II generations
    prefer: str = "effectiveness"  # automatic choice rule: effectiveness, knee, fastest, smallest
    executor: str = "local"  # "local" process pool or "ray"
    workers: int | None = None  # local workers (default: one per core)
    ray_address: str | None = None  # join this Ray cluster instead of starting Ray locally
    seed: int = 0  # sampling and search


def check_search_settings(s: SearchSettings) -> None:
    """Every setting checked before any work starts (the stage distils candidates for a long time)."""
    from avatar.search import PREFERENCES

    choices = {"objective": ("latency", "flops"), "algorithm": ("nsga2", "paper-ga"), "prefer": PREFERENCES, "executor": ("local", "ray")}
    for name, allowed in choices.items():
        if getattr(s, name) not in allowed:
            raise AvatarError(f"{name} must be one of {', '.join(allowed)}, got {getattr(s, name)!r}")
    if s.samples < 3:
        raise AvatarError(f"the indicator needs at least 3 samples, got {s.samples}")
    if not (0 < s.budget_mb <= 1e6) or (s.max_gflops is not None and not 0 < s.max_gflops < 1e9):
        raise AvatarError(f"budget must be a positive number of MB up to 1e6 (got {s.budget_mb}) and a GFLOPs cap positive")


def search_stage(
    run_dir: Path, task: Task, data_dir: Path | None, data_seed: int, soft_labels: Path, settings: SearchSettings,
    space: Space | None = None,
) -> dict:
    """Space -> SMT -> sampled candidates -> indicator -> latency model -> search -> choice, into ``run_dir``."""
    import csv
    import io
    import os

    from avatar.candidates import score_candidates
    from avatar.cost import MB
    from avatar.executor import make_executor
    from avatar.indicator import Indicator
    from avatar.labels import load_soft_labels
    from avatar.latency import LatencyCache, LatencyModel
    from avatar.sampling import sample
    from avatar.search import Objectives, choose, flops_objective, nsga2, paper_ga
    from avatar.smt import Constraints, Feasibility, analyse
    from avatar.student import StudentConfig
    from avatar.teacher import data_fingerprints

    check_search_settings(settings)
    space = space or Space.paper()
    c = Constraints(int(settings.budget_mb * MB), task.num_inputs, settings.max_gflops, settings.min_head_dim)
    smt = analyse(space, c)
    write_json_atomic(run_dir / "space.json", smt.to_dict(space))
    feas = Feasibility(space, c)

    configs = sample(space, feas, settings.samples, settings.seed)
    write_json_atomic(run_dir / "indicator" / "samples.json", configs)
    soft = load_soft_labels(soft_labels)
    data = task.load(data_dir, seed=data_seed)
    teacher_view(data.unlabelled, soft)  # soft labels made for other data: fail here, not in every worker
    workers = settings.workers or os.cpu_count() or 1
    executor = make_executor(settings.executor, workers, settings.ray_address)
    results = score_candidates(
        configs, task.name, None if data_dir is None else str(Path(data_dir).resolve()), data_seed, soft_labels,
        soft.key, data_fingerprints(data), settings.short_budget, run_dir / "indicator" / "candidates", executor,
        threads=max(1, (os.cpu_count() or 1) // workers),
    )
    indicator = Indicator.fit(space, configs, [r["score"] for r in results], settings.seed)
    indicator.save(run_dir / "indicator" / "indicator.json")

    if settings.objective == "latency":
        timed = configs + sample(space, feas, max(settings.latency_architectures - len(configs), 3), settings.seed + 1)
        latencies = LatencyCache().measure(timed, task)
        latency = LatencyModel.fit(timed, latencies, task.num_inputs)
        write_json_atomic(run_dir / "latency.json", {"report": latency.report, "measured_ms": latencies, "configs": timed})
        speed, speed_name = latency.predict, "latency_ms"
    else:
        speed, speed_name = flops_objective(task.num_inputs), "gflops"

    objectives = Objectives(indicator.predict, speed, speed_name, task.num_inputs)
    if settings.algorithm == "nsga2":
        result = nsga2(space, feas, objectives, settings.population, settings.generations, settings.seed)
    else:
        result = paper_ga(space, feas, objectives, settings.population, settings.generations, seed=settings.seed)
    rows = result.rows()
    pick = choose(result, settings.prefer)
    write_json_atomic(run_dir / "pareto.json", {"objectives": ["predicted_effectiveness", speed_name, "size_mb"], "choice": pick, "prefer": settings.prefer, "rows": rows})
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(run_dir / "pareto.csv", table.getvalue())
    chosen = StudentConfig(**result.configs[pick])
    chosen.save(run_dir / "chosen_student.json")
    return {
        "space": smt.to_dict(space)["configurations"],
        "indicator": {"choice": indicator.choice, **indicator.report[indicator.choice]},
        "pareto_size": len(rows),
        "choice": rows[pick],
        "evaluations": result.evaluations,
    }
