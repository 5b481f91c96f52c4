"""The pipeline over a run directory: one function per stage, each writing its artefacts atomically.

Stages run on the engine of ``avatar.engine`` (records, keys, resume). Long stages resume inside as well:
finished indicator candidates are never distilled again.

Run directory: ``config.toml``, ``teacher/``, ``soft_labels.json``, ``space.json``, ``indicator/``,
``latency.json``, ``pareto.csv``, ``pareto.json``, ``chosen_student.json``, ``student/``, ``onnx/`` (the
student for ``avatar scan``), ``metrics.json``, ``report.md`` and its PNG plots, ``stages/``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from dataclasses import asdict, dataclass

import numpy as np
from pathlib import Path

from rich.progress import Progress

from avatar._io import write_json_atomic, write_text_atomic
from avatar.config import CompressConfig, to_toml
from avatar.device import CPU, Accelerator, accelerator
from avatar.engine import STAGES, Run, Stage
from avatar.errors import AvatarError
from avatar.settings import DeviceConfig, DistillConfig, ExportConfig, FinetuneConfig, MeasureConfig, SearchSettings, check_settings
from avatar.space import Space
from avatar.tasks import Task, TaskData, fingerprint
from avatar.teacher import data_fingerprints

# --- teacher ---------------------------------------------------------------------------------------------

def teacher_stage(run: Run, task: Task, data: TaskData, config: FinetuneConfig, finetuned: str | None = None,
                  progress: Progress | None = None, accel: Accelerator = CPU) -> Stage:
    """Fine-tune the teacher into ``RUN/teacher``, or take ``finetuned`` (a folder fine-tuned before) as it is."""
    from avatar.labels import teacher_hash
    from avatar.modeling import check_model_folder
    from avatar.teacher import finetune

    if finetuned is not None:
        folder = Path(finetuned).resolve()
        if not folder.is_dir():
            raise AvatarError("a fine-tuned teacher must be a local folder written by avatar finetune", finetuned)
        check_model_folder(folder)
        try:  # scores recorded when it was fine-tuned, if any: shown, never needed
            metrics = json.loads((folder / "metrics.json").read_text())
        except (OSError, ValueError):
            metrics = {}
        result = {"dir": str(folder), "fine_tuned_here": False, "valid": metrics.get("valid"), "test": metrics.get("test")}
        return run.stage("teacher", {"finetuned": teacher_hash(folder), "task": task.name}, [], lambda: result)

    def fn() -> dict:
        m = finetune(task, data, run.root / "teacher", config, progress, accel=accel)
        return {"dir": "teacher", "fine_tuned_here": True, "valid": m["valid"], "test": m["test"],
                "train_seconds": m["train_seconds"], "examples": m["examples"]}

    inputs = {"task": task.name, "data": data_fingerprints(data), "settings": asdict(config)}
    return run.stage("teacher", inputs, ["teacher/model.safetensors"], fn)


def teacher_dir(run: Run, teacher: Stage) -> Path:
    """The teacher's folder: the run's own (wherever the run directory now is), or the given fine-tuned one."""
    return run.root / "teacher" if teacher.result["fine_tuned_here"] else Path(teacher.result["dir"])


def labels_stage(run: Run, task: Task, data: TaskData, teacher: Stage, progress: Progress | None = None, accel: Accelerator = CPU) -> Stage:
    """The teacher's logits on the unlabelled half: ``RUN/soft_labels.json``."""
    from avatar.labels import label, teacher_hash

    folder = teacher_dir(run, teacher)
    fn = lambda: label(folder, task, data.unlabelled, run.root / "soft_labels.json", progress=progress, accel=accel)  # noqa: E731
    # keyed by the teacher's files, not its stage: a teacher trained again with the same settings is another teacher
    return run.stage("soft_labels", {"teacher": teacher_hash(folder), "data": fingerprint(data.unlabelled)}, ["soft_labels.json"], fn)


def check_given_labels(path: Path, task: Task, data: TaskData):
    """The soft labels of a file made elsewhere, if they are for this task's classes and this data's unlabelled half."""
    from avatar.labels import load_soft_labels

    labels = load_soft_labels(path)
    labels.check_task(task, path)
    if labels.data != fingerprint(data.unlabelled):
        raise AvatarError("these soft labels were made for other data (or another split of train): make them with "
                          "avatar label on this data and --seed", path)
    return labels


def given_labels_stage(run: Run, task: Task, data: TaskData, path: Path) -> Stage:
    """Soft labels made elsewhere (``avatar label``, e.g. from a predictions file), checked against this data and
    copied in: ``RUN/soft_labels.json``. No teacher model runs."""
    from avatar._io import copy_atomic, sha256_file
    from avatar.labels import predicted_counts

    labels = check_given_labels(path, task, data)

    def fn() -> dict:
        copy_atomic(path, run.root / "soft_labels.json")
        return {"file": str(path), **predicted_counts(labels.preds.values(), labels.classes),
                "key": labels.key, "kind": labels.kind}

    return run.stage("soft_labels", {"given": sha256_file(path), "data": labels.data}, ["soft_labels.json"], fn)


# --- search ----------------------------------------------------------------------------------------------

def space_stage(run: Run, task: Task, space: Space, settings: SearchSettings) -> Stage:
    """SMT analysis of the space under the budget: ``RUN/space.json``."""
    from avatar.smt import analyse

    c = settings.constraints(task.num_inputs)

    def fn() -> dict:
        d = analyse(space, c).to_dict(space)
        write_json_atomic(run.root / "space.json", d)
        return d["configurations"]

    return run.stage("space", {"space": space.describe(), "constraints": asdict(c)}, ["space.json"], fn)


def indicator_stage(
    run: Run, task: Task, space: Space, settings: SearchSettings, space_key: str,
    data_dir: Path | None, data_seed: int, soft_labels: Path, distill: DistillConfig | None = None,
    device: DeviceConfig | None = None,
) -> Stage:
    """Sample feasible configurations, distil each on the short budget (on ``device``: one job per core on the
    CPU, one per GPU on CUDA), fit the indicator: ``RUN/indicator/``."""
    from avatar.candidates import score_candidates, successive_halving
    from avatar.device import placement
    from avatar.distill import teacher_view
    from avatar.executor import make_executor
    from avatar.indicator import FORMAT, Indicator
    from avatar.labels import load_soft_labels
    from avatar.sampling import sample
    from avatar.smt import Feasibility

    soft = load_soft_labels(soft_labels)
    metric = settings.metric_for(task.num_classes)
    if metric == "macro_f1" and task.num_classes == 2:
        raise AvatarError("search.sample_metric macro_f1 is for tasks of more than two classes; use roc_auc, accuracy or f1")
    short_budget = settings.short_budget(distill)
    full = space

    def fn() -> dict:
        space = searched_space(run.root, full)  # z3's bounds: the sampler draws only where feasible configurations are
        configs = sample(space, Feasibility(space, settings.constraints(task.num_inputs)), settings.samples, settings.seed)
        write_json_atomic(run.root / "indicator" / "samples.json", configs)
        data = task.load(data_dir, seed=data_seed)
        teacher_view(data.unlabelled, soft)  # soft labels made for other data: fail here, not in every worker
        local, gpus, job_device = placement(device or DeviceConfig(), settings.executor)
        workers = gpus or local or settings.workers or os.cpu_count() or 1
        executor = make_executor(settings.executor, workers, settings.ray_address, gpus)

        def run_rung(rung: int, chosen: list[int]) -> list[dict]:
            return score_candidates(
                [configs[i] for i in chosen], task.name, None if data_dir is None else str(Path(data_dir).resolve()), data_seed,
                soft_labels, soft.key, data_fingerprints(data), settings.short_budget(distill, rung),
                run.root / "indicator" / "candidates", executor, threads=max(1, (os.cpu_count() or 1) // workers), device=job_device,
            )

        reached = successive_halving(len(configs), settings.rungs, settings.eta, run_rung, lambda r: r["valid"][metric])
        results = [reached[i][1] for i in range(len(configs))]
        scores = [r["valid"][metric] for r in results]
        if None in scores:
            raise AvatarError(f"the validation split has one class only: {metric} is undefined; use accuracy")
        fidelity = [reached[i][0] / (settings.rungs - 1) for i in range(len(configs))] if settings.rungs > 1 else None
        noise = score_noise(task, data, short_budget, results, metric)
        indicator = Indicator.fit(space, configs, scores, settings.seed, fidelity)
        indicator.save(run.root / "indicator" / "indicator.json")
        return {"choice": indicator.choice, "metric": metric, **indicator.report[indicator.choice], "scores": scores,
                "rungs_reached": [reached[i][0] for i in range(len(configs))],
                "sampled_grid": space.total(), "full_grid": full.total(), "pruned_by_bounds": 1 - space.total() / full.total(),
                "score_noise": noise, "score_spread": float(np.std(scores))}

    inputs = {"indicator": FORMAT, "space": space_key, "soft_labels": soft.key, "samples": settings.samples, "metric": metric,
              "seed": settings.seed, "short_budget": asdict(short_budget), "rungs": settings.rungs, "eta": settings.eta, "data_seed": data_seed}
    return run.stage("indicator", inputs, ["indicator/indicator.json"], fn)


def score_noise(task: Task, data: TaskData, budget: DistillConfig, results: list[dict], metric: str) -> float:
    """The typical standard error of one sample's validation ``metric`` from resampling its validation examples
    (mean over the samples): spread between samples below it says nothing."""
    from avatar.stats import bootstrap_sd
    from avatar.tasks import limit_examples

    labels = np.array([ex.label for ex in limit_examples(data.valid, budget.eval_limit, budget.seed)])

    def sd(r: dict) -> float:
        if "valid_margins" in r:  # two classes: the margins give the predictions and the ranking
            return bootstrap_sd(labels, (np.asarray(r["valid_margins"]) > 0).astype(int), r["valid_margins"], samples=200)[metric]
        return bootstrap_sd(labels, r["valid_preds"], None, samples=200, num_classes=task.num_classes)[metric]

    sds = [sd(r) for r in results]
    return float(np.mean(sds))


def latency_stage(run: Run, task: Task, space: Space, settings: SearchSettings, space_key: str, threads: int | None = None) -> Stage:
    """Time random-weight architectures on this CPU (with the measurement stage's ``threads``) and fit the latency
    model: ``RUN/latency.json``."""
    import torch

    from avatar.latency import LatencyCache, LatencyModel, machine_key
    from avatar.sampling import sample
    from avatar.smt import Feasibility

    def fn() -> dict:
        searched = searched_space(run.root, space)
        feas = Feasibility(searched, settings.constraints(task.num_inputs))
        timed = sample(searched, feas, settings.latency_architectures, settings.seed + 1)
        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        try:
            latencies = LatencyCache().measure(timed, task)
            report = LatencyModel.fit(timed, latencies, task.num_inputs).report
        finally:
            torch.set_num_threads(before)
        write_json_atomic(run.root / "latency.json", {"report": report, "measured_ms": latencies, "configs": timed})
        return report

    inputs = {"space": space_key, "architectures": settings.latency_architectures, "seed": settings.seed, "threads": threads,
              "machine": machine_key()}
    return run.stage("latency", inputs, ["latency.json"], fn)


def searched_space(run_dir: Path, space: Space) -> Space:
    """The space cut to the run's SMT bounds (``RUN/space.json``): what sampling and search draw from."""
    doc = json.loads((Path(run_dir) / "space.json").read_text())
    return space.within({name: d["feasible"] for name, d in doc["dimensions"].items()})


def objectives_of(run_dir: Path, task: Task, space: Space, speed_name: str):
    """The search's objectives, rebuilt from a run directory's indicator (and latency measurements); ``space`` is
    the configured one (the indicator was fitted on its SMT-cut ``searched_space``)."""
    from avatar.indicator import Indicator
    from avatar.latency import LatencyModel
    from avatar.search import Objectives, flops_objective

    indicator = Indicator.load(run_dir / "indicator" / "indicator.json", searched_space(run_dir, space))
    if speed_name == "latency_ms":
        timed = json.loads((run_dir / "latency.json").read_text())
        speed = LatencyModel.fit(timed["configs"], timed["measured_ms"], task.num_inputs).predict
    else:
        speed = flops_objective(task.num_inputs)
    return Objectives(indicator.predict, speed, speed_name, task.num_inputs)


def pareto_stage(run: Run, task: Task, space: Space, settings: SearchSettings, indicator: Stage, speed: Stage | None) -> Stage:
    """Multi-objective search on the indicator and the speed objective: ``RUN/pareto.csv`` and ``pareto.json``."""
    from avatar.indicator import Indicator
    from avatar.search import ALGORITHMS, objective_names, search, with_measured
    from avatar.smt import Feasibility

    speed_name = "latency_ms" if settings.objective == "latency" else "gflops"

    def fn() -> dict:
        objectives = objectives_of(run.root, task, space, speed_name)
        searched = searched_space(run.root, space)  # the search, too, stays inside z3's bounds
        feas = Feasibility(searched, settings.constraints(task.num_inputs))
        algorithm = ALGORITHMS[settings.algorithm](population=settings.population, generations=settings.generations)
        indicator = Indicator.load(run.root / "indicator" / "indicator.json", searched)
        # the distilled samples are candidates with what they measured; predictions only from a surrogate that
        # beats the samples' mean in leave-one-out
        top_configs, top_scores = indicator.top()  # measured at the budget predictions are made for
        result = with_measured(search(searched, feas, objectives, algorithm, settings.seed), top_configs, top_scores,
                               objectives, use_predictions=indicator.beats_mean)
        rows = result.rows()
        write_json_atomic(run.root / "pareto.json", {"objectives": objective_names(speed_name),
                                                     "algorithm": settings.algorithm, "rows": rows})
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(run.root / "pareto.csv", table.getvalue())
        return {"pareto_size": len(rows), "evaluations": result.evaluations, "speed_name": speed_name,
                "surrogate_beats_mean": indicator.beats_mean, "measured_in_front": result.sources.count("measured")}

    inputs = {"indicator": indicator.key, "speed": speed.key if speed else "flops", "algorithm": settings.algorithm,
              "population": settings.population, "generations": settings.generations, "seed": settings.seed}
    return run.stage("pareto", inputs, ["pareto.json", "pareto.csv"], fn)


def choose_stage(run: Run, pareto: Stage, prefer: str) -> Stage:
    """The automatic choice from the Pareto set: ``RUN/chosen_student.json``."""
    from avatar.search import choose, objectives_of_rows
    from avatar.space import NAMES
    from avatar.student import StudentConfig

    def fn() -> dict:
        doc = json.loads((run.root / "pareto.json").read_text())
        speed = doc["objectives"][1]
        pick = choose(objectives_of_rows(doc["rows"], speed), prefer)
        row = doc["rows"][pick]
        StudentConfig(**{n: row[n] for n in NAMES}).save(run.root / "chosen_student.json")
        return {"index": pick, "prefer": prefer, "row": row}

    return run.stage("choose", {"pareto": pareto.key, "prefer": prefer}, ["chosen_student.json"], fn)


def search_stages(run: Run, task: Task, space: Space, settings: SearchSettings, data_dir: Path | None, data_seed: int,
                  soft_labels: Path, space_done: Stage | None = None, distill: DistillConfig | None = None,
                  threads: int | None = None, device: DeviceConfig | None = None) -> dict[str, Stage]:
    """Space (unless ``space_done``) -> indicator -> latency model -> search -> choice, each skipped when done.
    The indicator's samples are distilled with ``distill``'s loss on their short budget."""
    check_settings(settings)
    stages = {"space": space_done or space_stage(run, task, space, settings)}
    stages["indicator"] = indicator_stage(run, task, space, settings, stages["space"].key, data_dir, data_seed, soft_labels, distill, device)
    speed = latency_stage(run, task, space, settings, stages["space"].key, threads) if settings.objective == "latency" else None
    if speed:
        stages["latency"] = speed
    stages["pareto"] = pareto_stage(run, task, space, settings, stages["indicator"], speed)
    stages["choose"] = choose_stage(run, stages["pareto"], settings.prefer)
    return stages


# --- student, measurement, report ------------------------------------------------------------------------

def student_stage(run: Run, task: Task, data: TaskData, labels: Stage, choice: Stage, config: DistillConfig,
                  progress: Progress | None = None, accel: Accelerator = CPU) -> Stage:
    """Distil the chosen configuration fully: ``RUN/student/``."""
    from avatar.distill import distill
    from avatar.labels import load_soft_labels
    from avatar.student import StudentConfig

    def fn() -> dict:
        student = StudentConfig.load(run.root / "chosen_student.json")
        m = distill(task, data, load_soft_labels(run.root / "soft_labels.json"), student, run.root / "student", config, progress, accel=accel)
        keep = ("valid", "test", "agreement_with_teacher", "parameters", "best_step", "steps", "train_seconds", "examples", "loss")
        return {k: m[k] for k in keep}

    return run.stage("student", {"soft_labels": labels.key, "choice": choice.key, "settings": asdict(config)}, ["student/model.safetensors"], fn)


def export_stage(run: Run, data: TaskData, student: Stage, config: ExportConfig, about: dict) -> Stage:
    """The student in ONNX (and int8) for the torch-free runtime, parity-checked on the test split, calibrated and
    thresholded on validation, with its model card: ``RUN/onnx/``."""
    from avatar.export import export
    from avatar.runtime.model import MANIFEST, RUN_EXPORT

    def fn() -> dict:
        manifest = export(run.root / "student", run.root / RUN_EXPORT, data.test, data.valid, config, about)
        return {"sizes": {p: s["bytes"] for p, s in manifest["sizes"].items()}, "parity": manifest["parity"],
                "decisions": {p: {k: d[k] for k in ("threshold", "rule", "validation", "test", "learned_nothing") if k in d}
                              for p, d in manifest["decisions"].items()}}

    inputs = {"student": student.key, "settings": asdict(config), "about": about}
    return run.stage("export", inputs, [f"{RUN_EXPORT}/{MANIFEST}"], fn)


def measure_stage(run: Run, task: Task, data: TaskData, teacher: Stage | None, student: Stage, exported: Stage,
                  config: MeasureConfig, seed: int, accel: Accelerator = CPU) -> Stage:
    """Teacher (when the run has a teacher model), student, the exported student through onnxruntime (and
    reference architectures) measured side by side: ``RUN/metrics.json``."""
    from avatar.measure import ARCH_PREFIX, ONNX_PREFIXES, load_subjects, measure, ratios
    from avatar.runtime.model import RUN_EXPORT, read_manifest

    def fn() -> dict:
        onnx = run.root / RUN_EXPORT
        precisions = read_manifest(onnx)["precisions"]
        models = [(str(teacher_dir(run, teacher)), "teacher")] if teacher is not None else []
        models.append((str((run.root / "student").resolve()), "student"))
        deployed = [(prefix + str(onnx.resolve()), f"student (ONNX {p})") for prefix, p in ONNX_PREFIXES.items() if p in precisions]
        specs = [*models, *deployed, *((ARCH_PREFIX + a, a) for a in config.architectures)]
        results = measure(load_subjects([s for s, _ in specs], task, data.test, config, seed, accel=accel), task, config, accel=accel)
        for r, (_, role) in zip(results, specs):
            r["role"] = role
        by_role = {r["role"]: r for r in results}
        student_r = by_role["student"]
        archs = results[len(models) + len(deployed):]
        doc = {
            "task": task.name,
            "main_metric": task.main_metric,
            "results": results,
            **({"student_vs_teacher": ratios(by_role["teacher"], student_r, task.main_metric)} if teacher is not None else {}),
            "student_vs_architectures": {a["role"]: ratios(a, student_r, task.main_metric) for a in archs},
        }
        write_json_atomic(run.root / "metrics.json", doc)
        return {"student_vs_teacher": doc.get("student_vs_teacher")}

    inputs = {"teacher": None if teacher is None else teacher.key, "student": student.key, "export": exported.key,
              "settings": asdict(config), "seed": seed}
    return run.stage("measure", inputs, ["metrics.json"], fn)


def report_stage(run: Run, upstream: list[Stage]) -> Stage:
    """``RUN/report.md`` and its plots, from the artefacts of the stages before."""
    from avatar.report import write_report

    return run.stage("report", {s.name: s.key for s in upstream}, ["report.md"], lambda: write_report(run.root))


@dataclass
class CompressRun:
    """A finished ``avatar compress`` run: its folder, settings and stages, and where its results are."""

    root: Path  # the run directory
    config: CompressConfig  # the resolved settings (also in root/config.toml)
    stages: dict[str, Stage]  # by name, in the order they ran

    @property
    def metrics(self) -> dict:
        """Teacher, student and reference architectures measured side by side (``metrics.json``)."""
        return json.loads((self.root / "metrics.json").read_text())


def compress(config: CompressConfig, out: Path, progress: Progress | None = None, on_start=None, on_end=None) -> CompressRun:
    """Every stage of ``avatar compress`` in ``out``; ``config`` is checked (``avatar.config.resolve`` checks it)."""
    run = Run(out, on_start, on_end)
    fresh = not run.root.exists()
    with run.writing():  # a second writer is refused here, before anything is touched
        try:
            return CompressRun(run.root, config, _compress(run, config, progress))
        except AvatarError:
            if fresh and not (run.root / STAGES).is_dir():  # this run made the folder and finished nothing in it
                shutil.rmtree(run.root, ignore_errors=True)
            raise


def _compress(run: Run, config: CompressConfig, progress: Progress | None) -> dict[str, Stage]:
    from avatar.modeling import check_model_folder, resolve_source
    from avatar.tasks import get_task

    data_dir = None if config.data is None else Path(config.data)
    task = get_task(config.task, data_dir)
    data = task.load(data_dir, seed=config.seed)
    if config.teacher_labels is None:
        if config.teacher_finetuned:  # a teacher that cannot be found stops the run before any stage starts
            check_model_folder(Path(config.teacher))
        else:
            resolve_source(config.teacher)
    else:  # soft labels that do not read, or are for other data, stop the run before any stage starts
        check_given_labels(Path(config.teacher_labels), task, data)
    if config.measure.length_tokenizer is not None:
        resolve_source(config.measure.length_tokenizer)
    accel = accelerator(config.device)  # a device this machine does not have stops the run here
    write_text_atomic(run.root / "config.toml", to_toml(config))

    space = Space.paper().override(config.space)
    stages = {"space": space_stage(run, task, space, config.search)}  # an impossible budget stops the run first
    if config.teacher_labels is None:
        stages["teacher"] = teacher_stage(run, task, data, config.finetune, config.teacher if config.teacher_finetuned else None, progress, accel)
        stages["soft_labels"] = labels_stage(run, task, data, stages["teacher"], progress, accel)
    else:
        stages["soft_labels"] = given_labels_stage(run, task, data, Path(config.teacher_labels))
    stages |= search_stages(run, task, space, config.search, data_dir, config.seed, run.root / "soft_labels.json", distill=config.distill,
                            space_done=stages["space"], threads=config.measure.threads, device=config.device)
    stages["student"] = student_stage(run, task, data, stages["soft_labels"], stages["choose"], config.distill, progress, accel)
    about = {"data": f"{config.task} data in {data_dir}" if data_dir else f"the built-in {config.task} sample (a few hundred examples)",
             "teacher": (f"its predictions, imported into {config.teacher_labels}" if config.teacher_labels else
                         config.teacher + (" (fine-tuned elsewhere)" if config.teacher_finetuned else ", fine-tuned by this run"))}
    stages["export"] = export_stage(run, data, stages["student"], config.export, about)
    stages["measure"] = measure_stage(run, task, data, stages.get("teacher"), stages["student"], stages["export"], config.measure, config.seed, accel)
    stages["report"] = report_stage(run, list(stages.values()))
    return stages
