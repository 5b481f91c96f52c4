"""Avatar: compress large language models of code into tiny students. Errors a user causes: one line, exit 2."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from avatar._render import footer, metrics_table, results_table, space_summary, space_table
from avatar.cost import MB
from avatar.errors import AvatarError
from avatar.runtime import COMMAND, TASK_DATASET, TRAINING_MODULES
from avatar.settings import (
    BUDGET_MB, MINILM, SEED, DeviceConfig, DistillConfig, ExportConfig, FinetuneConfig, MeasureConfig, SearchSettings, check_settings,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
err_console = Console(stderr=True)

TaskOpt = Annotated[str, typer.Option("--task", help="defect (Devign), clone (BigCloneBench), or your own data: classify or pairs (the data folder's task.toml describes it)")]
DataOpt = Annotated[Path | None, typer.Option("--data", help="data folder in CodeXGLUE format [default: built-in sample]")]


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress details")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
    )
    # quiet transformers through its environment: importing it here would drag torch into scan, clones and space
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already imported (a notebook, the tests): tell it directly
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


@contextmanager
def _progress(transient: bool = False):
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
        disable=not err_console.is_terminal,  # bars are for a person watching; in a log they would only leave blank lines
    ) as progress:
        yield progress


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _at_least(minimum: float, **options: float | None) -> None:
    """Options (by their python names) that must be at least ``minimum`` when given."""
    for name, value in options.items():
        if value is not None and not value >= minimum:
            raise AvatarError(f"{_flag(name)} must be at least {minimum:g}, got {value}")


def _checked(settings, **flags: str):
    """``settings`` checked where settings are defined (``check_settings``), the error naming the flag typed
    (``flags`` maps a field to its flag where the two differ)."""
    try:
        check_settings(settings)
    except AvatarError as e:
        message = e.message
        for name in sorted((f.name for f in fields(settings)), key=len, reverse=True):
            if message.startswith(name):
                message = flags.get(name, _flag(name)) + message[len(name):]
                break
        raise AvatarError(message) from None
    return settings


def _finetune_config(model, max_length, limit, eval_limit, epochs, lr, batch_size, seed, model_type="encoder", flow_length=None):
    config = FinetuneConfig(model=model, model_type=model_type, max_length=max_length, flow_length=flow_length, limit=limit,
                            eval_limit=eval_limit, epochs=epochs, learning_rate=lr, batch_size=batch_size, seed=seed)
    return _checked(config, learning_rate="--lr")


_FT, _DISTILL, _SEARCH, _MEASURE, _EXPORT, _DEVICE = (FinetuneConfig(), DistillConfig(), SearchSettings(), MeasureConfig(), ExportConfig(),
                                                       DeviceConfig())
DEFAULT_RUN = Path("avatar-run")  # where avatar compress writes its run, and where scan and clones look for a model
Model = Annotated[str, typer.Option("--model", help="pretrained encoder: 'minilm' (packaged), a local folder, or a hub id")]
MaxLength = Annotated[int | None, typer.Option(help="tokens per function (GraphCodeBERT: code tokens) [default: 256; graphcodebert: 400 defect, 384 clone]")]
Epochs = Annotated[int, typer.Option(help="training epochs")]
Lr = Annotated[float, typer.Option("--lr", help="peak learning rate")]
Batch = Annotated[int, typer.Option(help="training batch size")]
Seed = Annotated[int, typer.Option(help="random seed (data split, shuffling, initialisation)")]
Limit = Annotated[int | None, typer.Option(help="at most this many labelled training examples")]
EvalLimit = Annotated[int | None, typer.Option(help="at most this many validation and test examples each")]
DeviceOpt = Annotated[str, typer.Option("--device", help="where to train, label and score: auto (CUDA when present), cpu, cuda, "
                                        "cuda:N or mps; students are timed on the CPU")]


MeasureDeviceOpt = Annotated[str, typer.Option("--device", help="scores computed, and an extra GPU latency column timed, here: "
                                               "auto, cpu, cuda, cuda:N or mps; CPU latency is always measured")]


def _accel(device: str, **settings):
    """The accelerator ``--device`` names (one line when this machine has no such device); ``settings``: more of
    ``DeviceConfig`` (``eval_batch_size`` is ``--batch-size``)."""
    from avatar.device import accelerator

    return accelerator(_checked(DeviceConfig(device=device, **settings), device="--device", eval_batch_size="--batch-size"))


@app.command()
def finetune(
    out: Annotated[Path, typer.Option("--out", help="folder for the fine-tuned teacher")],
    task: TaskOpt = "defect",
    data: DataOpt = None,
    model: Model = MINILM,
    epochs: Epochs = _FT.epochs,
    lr: Lr = _FT.learning_rate,
    batch_size: Batch = _FT.batch_size,
    max_length: MaxLength = None,
    seed: Seed = SEED,
    limit: Limit = None,
    eval_limit: EvalLimit = None,
    model_type: Annotated[str, typer.Option("--model-type", help="encoder (code tokens) or graphcodebert (code tokens and "
                                            "data-flow graph; a RoBERTa model such as microsoft/graphcodebert-base)")] = _FT.model_type,
    flow_length: Annotated[int | None, typer.Option(help="graphcodebert: data-flow nodes per function [default: 114 defect, 128 clone]")] = None,
    device: DeviceOpt = _DEVICE.device,
) -> None:
    """Fine-tune a pretrained encoder (the teacher) on the labelled half of train."""
    from avatar.tasks import get_task
    from avatar.teacher import finetune as run

    t = get_task(task, data)
    config = _finetune_config(model, max_length, limit, eval_limit, epochs, lr, batch_size, seed, model_type, flow_length)
    accel = _accel(device)
    task_data = t.load(data, seed=seed)
    with _progress() as progress:
        metrics = run(t, task_data, out, config, progress, accel)
    console.print(metrics_table(f"teacher {model} on {task}", {"valid": metrics["valid"], "test": metrics["test"]}))
    console.print(f"saved to {out} ({metrics['train_seconds']} s of training)")


@app.command("label")
def label_cmd(
    out: Annotated[Path, typer.Option("--out", help="soft-label file to write (JSON)")],
    teacher: Annotated[Path | None, typer.Option("--teacher", help="fine-tuned teacher folder")] = None,
    predictions: Annotated[Path | None, typer.Option("--predictions", help="the teacher's predictions made elsewhere "
                                                     "(.jsonl, .csv, .tsv or CodeXGLUE-style .txt), instead of --teacher")] = None,
    task: TaskOpt = "defect",
    data: DataOpt = None,
    seed: Seed = SEED,
    batch_size: Annotated[int, typer.Option(help="inference batch size")] = _DEVICE.eval_batch_size,
    device: DeviceOpt = _DEVICE.device,
) -> None:
    """Write the teacher's logits on the unlabelled half of train (cached by teacher and data), from a teacher
    folder or from a file of its predictions."""
    from avatar.labels import label
    from avatar.predictions import import_predictions
    from avatar.tasks import get_task

    if (teacher is None) == (predictions is None):
        raise AvatarError("give either --teacher (a model folder) or --predictions (a file of its predictions)")
    _at_least(1, batch_size=batch_size)
    accel = _accel(device, eval_batch_size=batch_size)
    t = get_task(task, data)
    task_data = t.load(data, seed=seed)
    if predictions is not None:
        summary = import_predictions(t, predictions, task_data.unlabelled, out)
    else:
        with _progress() as progress:
            summary = label(teacher, t, task_data.unlabelled, out, progress, accel)
    counts = ", ".join(f"{n} {c}" for c, n in summary["predicted"].items())
    console.print(f"{summary['examples']} soft labels (predicted: {counts}) in {out}", soft_wrap=True)
    if summary["kind"] == "label":
        console.print(escape("hard labels only: the student is distilled with cross-entropy on them ([distill] label_smoothing); "
                             "the temperature does not apply"), soft_wrap=True)


@app.command()
def teacher(
    task: TaskOpt = "defect",
    data: DataOpt = None,
    model: Model = MINILM,
    out: Annotated[Path, typer.Option("--out", help="run directory")] = DEFAULT_RUN,
    epochs: Epochs = _FT.epochs,
    lr: Lr = _FT.learning_rate,
    batch_size: Batch = _FT.batch_size,
    max_length: MaxLength = None,
    seed: Seed = SEED,
    limit: Limit = None,
    eval_limit: EvalLimit = None,
    device: DeviceOpt = _DEVICE.device,
) -> None:
    """Teacher stage of the pipeline in a run directory: fine-tune (unless done) and write soft labels.

    With no options it runs on the built-in sample with the packaged MiniLM teacher.
    """
    from avatar.pipeline import Run, labels_stage, teacher_stage
    from avatar.tasks import get_task

    t = get_task(task, data)
    config = _finetune_config(model, max_length, limit, eval_limit, epochs, lr, batch_size, seed)
    accel = _accel(device)
    task_data = t.load(data, seed=seed)
    with Run(out).writing() as run, _progress() as progress:
        trained = teacher_stage(run, t, task_data, config, progress=progress, accel=accel)
        soft = labels_stage(run, t, task_data, trained, progress, accel).result
    reused = " (reused)" if trained.reused else ""
    console.print(metrics_table(f"teacher {model} on {task}{reused}", {"valid": trained.result["valid"], "test": trained.result["test"]}))
    console.print(f"teacher: {out / 'teacher'}\nsoft labels: {soft['file']} ({soft['examples']} unlabelled examples)")


@app.command("distill")
def distill_cmd(
    soft_labels: Annotated[Path, typer.Option("--soft-labels", help="the teacher's soft-label file (avatar label)")],
    out: Annotated[Path, typer.Option("--out", help="folder for the student")],
    config: Annotated[Path | None, typer.Option("--config", help="student configuration JSON [default: built-in ~2.3 MB config]")] = None,
    task: TaskOpt = "defect",
    data: DataOpt = None,
    epochs: Epochs = _DISTILL.epochs,
    temperature: Annotated[float, typer.Option(help="distillation temperature T")] = _DISTILL.temperature,
    alpha: Annotated[float, typer.Option(help="weight of cross-entropy on the teacher's argmax")] = _DISTILL.alpha,
    ground_truth: Annotated[float, typer.Option(help="weight of cross-entropy on the labelled half's true labels (0: the teacher's targets alone)")] = _DISTILL.ground_truth,
    patience: Annotated[int, typer.Option(help="validations without improvement before stopping (0: never stop early)")] = _DISTILL.patience,
    seed: Seed = SEED,
    limit: Annotated[int | None, typer.Option(help="at most this many unlabelled examples (short budget)")] = None,
    eval_limit: EvalLimit = None,
    device: DeviceOpt = _DEVICE.device,
) -> None:
    """Train a student from scratch on the teacher's soft labels, with its own tokenizer."""
    from avatar._io import check_replaceable
    from avatar.distill import distill
    from avatar.labels import load_soft_labels
    from avatar.student import StudentConfig
    from avatar.tasks import get_task

    _at_least(0, patience=patience)
    settings = _checked(DistillConfig(epochs=epochs, temperature=temperature, alpha=alpha, ground_truth=ground_truth, limit=limit,
                                      eval_limit=eval_limit, patience=patience or None, seed=seed))
    check_replaceable(out)  # before any reading: a folder that must not be replaced is the first thing to say
    accel = _accel(device)
    student = StudentConfig.load(config) if config else StudentConfig()
    t = get_task(task, data)
    task_data = t.load(data, seed=seed)
    labels = load_soft_labels(soft_labels)
    with _progress() as progress:
        metrics = distill(t, task_data, labels, student, out, settings, progress, accel)
    console.print(metrics_table(f"student on {task}", {"valid": metrics["valid"], "test": metrics["test"]}))
    console.print(
        f"{metrics['parameters']:,} parameters, agreement with teacher {metrics['agreement_with_teacher']:.3f}; saved to {out}"
    )


Runs = Annotated[int, typer.Option(help="batch-1 passes timed per model")]
Threads = Annotated[int | None, typer.Option(help="torch CPU threads [default: torch's]")]
Country = Annotated[str | None, typer.Option(help="ISO alpha-3 country for carbon intensity [default: world mean]")]
JsonOut = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _measure(specs: list[str], task: str, data: Path | None, seed: int, runs: int, threads: int | None, country: str | None,
             eval_limit: int | None, device: str):
    from avatar.measure import load_subjects, measure
    from avatar.tasks import get_task

    cfg = _checked(MeasureConfig(runs=runs, threads=threads, country=country, eval_limit=eval_limit))
    accel = _accel(device)
    t = get_task(task, data)
    task_data = t.load(data, seed=seed)
    subjects = load_subjects(specs, t, task_data.test, cfg, seed, accel)
    with err_console.status("measuring"):
        return t, measure(subjects, t, cfg, accel=accel)


@app.command()
def evaluate(
    model: Annotated[str, typer.Option("--model", help="model folder, or arch:codebert-base (random weights, costs only)")],
    task: TaskOpt = "defect",
    data: DataOpt = None,
    seed: Seed = SEED,
    runs: Runs = _MEASURE.runs,
    threads: Threads = None,
    country: Country = None,
    eval_limit: Annotated[int | None, typer.Option(help="score on at most this many test examples")] = None,
    as_json: JsonOut = False,
    device: MeasureDeviceOpt = _DEVICE.device,
) -> None:
    """Test scores, size, CPU latency, throughput, energy and carbon of one model."""
    t, results = _measure([model], task, data, seed, runs, threads, country, eval_limit, device)
    if as_json:
        console.print_json(json.dumps(results[0]))
    else:
        console.print(results_table(results, t.main_metric))
        console.print(footer(results), soft_wrap=True)


@app.command()
def compare(
    models: Annotated[list[str], typer.Argument(help="reference model first (the teacher), then the others")],
    task: TaskOpt = "defect",
    data: DataOpt = None,
    seed: Seed = SEED,
    runs: Runs = _MEASURE.runs,
    threads: Threads = None,
    country: Country = None,
    eval_limit: Annotated[int | None, typer.Option(help="score on at most this many test examples")] = None,
    as_json: JsonOut = False,
    device: MeasureDeviceOpt = _DEVICE.device,
) -> None:
    """Measure models in one interleaved run and print each one's ratios against the first."""
    from avatar.measure import ratios
    from avatar.report import difference_words, ratio_sentence

    if len(models) < 2:
        raise AvatarError("compare needs at least two models (the reference first)")
    t, results = _measure(models, task, data, seed, runs, threads, country, eval_limit, device)
    rel = [ratios(results[0], r, t.main_metric) for r in results[1:]]
    if as_json:
        console.print_json(json.dumps({"results": results, "ratios_vs_first": rel}))
        return
    console.print(results_table(results, t.main_metric))
    for name, q in zip(models[1:], rel):
        diff = difference_words(q, t.main_metric)
        console.print(
            f"{name}: {ratio_sentence(q)}" + (f", {diff}" if diff else "") + f" vs {results[0]['model']}",
            soft_wrap=True,  # one line per model, however long its path: easy to grep and copy
        )
    console.print(footer(results), soft_wrap=True)


RangeOpt = Annotated[list[str] | None, typer.Option("--range", help="override a numeric dimension: NAME=LOW:HIGH[:STEP] (repeatable)")]
ChoicesOpt = Annotated[list[str] | None, typer.Option("--choices", help="override a categorical dimension: NAME=A,B,C (repeatable)")]


@app.command()
def space(
    task: TaskOpt = "defect",
    budget_mb: Annotated[float, typer.Option("--budget-mb", help="largest student, MB of fp32 weights (1 MB = 2^20 bytes)")] = BUDGET_MB,
    max_gflops: Annotated[float | None, typer.Option("--max-gflops", help="cap on inference GFLOPs per example")] = None,
    min_head_dim: Annotated[int, typer.Option(help="smallest hidden_size / heads allowed")] = _SEARCH.min_head_dim,
    space_file: Annotated[Path | None, typer.Option("--space", help="TOML/JSON file overriding dimension ranges")] = None,
    ranges: RangeOpt = None,
    choices: ChoicesOpt = None,
    as_json: JsonOut = False,
) -> None:
    """Prune the student configuration space with z3: exact feasible bounds and how much is removed."""
    from avatar.smt import analyse
    from avatar.space import Space
    from avatar.tasks import get_task

    settings = _checked(SearchSettings(budget_mb=budget_mb, max_gflops=max_gflops, min_head_dim=min_head_dim))
    t = get_task(task)
    sp = (Space.load(space_file) if space_file else Space.paper()).override_flags(ranges or [], choices or [])
    constraints = settings.constraints(t.num_inputs)
    result = analyse(sp, constraints).to_dict(sp)
    result["task"] = task
    if as_json:
        console.print_json(json.dumps(result))
        return
    console.print(space_table(result, task, budget_mb))
    console.print(space_summary(result))

@app.command()
def search(
    soft_labels: Annotated[Path, typer.Option("--soft-labels", help="the teacher's soft-label file (avatar label)")],
    out: Annotated[Path, typer.Option("--out", help="run directory for space.json, indicator/, pareto.*, chosen_student.json")],
    task: TaskOpt = "defect",
    data: DataOpt = None,
    seed: Seed = SEED,
    budget_mb: Annotated[float, typer.Option("--budget-mb", help="largest student, MB of fp32 weights")] = BUDGET_MB,
    max_gflops: Annotated[float | None, typer.Option("--max-gflops", help="cap on inference GFLOPs per example")] = None,
    samples: Annotated[int, typer.Option(help="configurations distilled briefly to train the indicator")] = _SEARCH.samples,
    sample_epochs: Annotated[int, typer.Option(help="epochs of each sample's short distillation")] = _SEARCH.sample_epochs,
    sample_limit: Annotated[int, typer.Option(help="unlabelled examples of each sample's short distillation")] = _SEARCH.sample_limit,
    sample_eval_limit: Annotated[int, typer.Option(help="validation examples scoring each sample")] = _SEARCH.sample_eval_limit,
    sample_metric: Annotated[str, typer.Option(help="validation metric the indicator learns: roc_auc, accuracy or f1")] = _SEARCH.sample_metric,
    objective: Annotated[str, typer.Option(help="latency (measured on this CPU) or flops (the paper's proxy)")] = _SEARCH.objective,
    algorithm: Annotated[str, typer.Option(help="nsga2 or paper-ga (the paper's GA, for comparison)")] = _SEARCH.algorithm,
    generations: Annotated[int, typer.Option(help="generations (NSGA-II, or the paper GA's 50)")] = _SEARCH.generations,
    population: Annotated[int, typer.Option(help="population (NSGA-II 40; the paper GA used 20)")] = _SEARCH.population,
    min_head_dim: Annotated[int, typer.Option(help="smallest hidden_size / heads allowed")] = _SEARCH.min_head_dim,
    space_file: Annotated[Path | None, typer.Option("--space", help="TOML/JSON file overriding dimension ranges")] = None,
    ranges: RangeOpt = None,
    choices: ChoicesOpt = None,
    prefer: Annotated[str, typer.Option(help="automatic choice: effectiveness, knee, fastest or smallest")] = _SEARCH.prefer,
    executor: Annotated[str, typer.Option(help="local (process pool) or ray")] = _SEARCH.executor,
    workers: Annotated[int | None, typer.Option(help="local workers [default: one per core]")] = None,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="join this Ray cluster")] = None,
    device: DeviceOpt = _DEVICE.device,
) -> None:
    """Sample feasible students, distil each briefly, fit the indicator, search the Pareto set and choose one."""
    from avatar.pipeline import Run, search_stages
    from avatar.space import Space
    from avatar.tasks import get_task

    t = get_task(task, data)
    settings = _checked(SearchSettings(
        budget_mb=budget_mb, max_gflops=max_gflops, min_head_dim=min_head_dim, samples=samples, sample_epochs=sample_epochs,
        sample_limit=sample_limit, sample_eval_limit=sample_eval_limit, sample_metric=sample_metric, objective=objective,
        algorithm=algorithm, population=population, generations=generations, prefer=prefer, executor=executor,
        workers=workers, ray_address=ray_address, seed=seed,
    ))
    sp = (Space.load(space_file) if space_file else Space.paper()).override_flags(ranges or [], choices or [])
    _accel(device)  # a device this machine lacks: one line now
    with err_console.status("searching") as status:
        with Run(out, on_start=lambda name: status.update(f"search: {name}"), on_end=_stage_line).writing() as run:
            stages = search_stages(run, t, sp, settings, data, seed, soft_labels, device=DeviceConfig(device=device))
    ind, pareto = stages["indicator"].result, stages["pareto"].result
    tau = "n/a" if ind["kendall_tau"] is None else f"{ind['kendall_tau']:.3f} (p {ind['kendall_tau_p']:.2g} against chance)"
    console.print(f"indicator of validation {ind['metric']}: {ind['choice']}, LOOCV MAE {ind['loocv_mae']:.4f}, Kendall tau {tau}")
    console.print(f"Pareto set: {pareto['pareto_size']} configurations ({pareto['evaluations']} evaluated); choice ({prefer}):")
    console.print_json(data=stages["choose"].result["row"])
    console.print(f"chosen configuration: {out / 'chosen_student.json'} (distil it with avatar distill --config)")


def _stage_line(stage) -> None:
    state = "up to date" if stage.reused else f"done in {stage.seconds:.0f} s"
    err_console.print(f"[green]✓[/green] {stage.name}: {state}")


def _compress_config(config_file: Path | None, flags: dict):
    """The run's settings: defaults, preset, the TOML file, then the flags given on the command line."""
    from avatar.config import resolve

    given = {k: v for k, v in flags.items() if v is not None}
    # paths saved absolute, so RUN/config.toml works from anywhere (a teacher may also be a name or a hub id)
    if "data" in given:
        given["data"] = str(Path(given["data"]).resolve())
    if "teacher" in given and Path(given["teacher"]).exists():
        given["teacher"] = str(Path(given["teacher"]).resolve())
    if "teacher_labels" in given:
        given["teacher_labels"] = str(Path(given["teacher_labels"]).resolve())
    options = {k: given.pop(k) for k in list(given)
               if k in ("task", "data", "preset", "teacher", "teacher_finetuned", "teacher_labels", "budget_mb", "seed")}
    if "epochs" in given:
        options["distill"] = {"epochs": given.pop("epochs")}
    if "device" in given:
        options["device"] = {"device": given.pop("device")}
    if given:
        options["search"] = given
    return resolve(config_file, options)


@app.command()
def compress(
    task: Annotated[str | None, typer.Option("--task", help="defect (Devign), clone (BigCloneBench), classify or pairs (your own data: see its task.toml) [default: defect]")] = None,
    data: DataOpt = None,
    teacher: Annotated[str | None, typer.Option("--teacher", help="'minilm' (packaged), a local folder or a hub id [default: minilm]")] = None,
    teacher_finetuned: Annotated[bool | None, typer.Option("--teacher-finetuned", help="the teacher is already fine-tuned: skip fine-tuning")] = None,
    teacher_labels: Annotated[Path | None, typer.Option("--teacher-labels", help="a soft-label file (avatar label, e.g. from "
                                                        "--predictions) instead of a teacher model")] = None,
    budget_mb: Annotated[float | None, typer.Option("--budget-mb", help=f"largest student, MB of fp32 weights [default: {BUDGET_MB:g}]")] = None,
    preset: Annotated[str | None, typer.Option(help="budget profile: demo (small, for the built-in sample) [default: demo without --data]")] = None,
    out: Annotated[Path, typer.Option("--out", help="run directory")] = DEFAULT_RUN,
    config_file: Annotated[Path | None, typer.Option("--config", help="TOML file of options (e.g. a run's config.toml); flags override it")] = None,
    seed: Annotated[int | None, typer.Option(help=f"random seed [default: {SEED}]")] = None,
    samples: Annotated[int | None, typer.Option(help=f"configurations distilled briefly for the indicator [default: {_SEARCH.samples}; demo: 8]")] = None,
    epochs: Annotated[int | None, typer.Option(help=f"epochs of the chosen student's distillation [default: {_DISTILL.epochs}]")] = None,
    objective: Annotated[str | None, typer.Option(help="latency (measured) or flops [default: latency]")] = None,
    algorithm: Annotated[str | None, typer.Option(help="nsga2 or paper-ga [default: nsga2]")] = None,
    prefer: Annotated[str | None, typer.Option(help="automatic choice: effectiveness, knee, fastest or smallest")] = None,
    executor: Annotated[str | None, typer.Option(help="local (process pool) or ray")] = None,
    workers: Annotated[int | None, typer.Option(help="local workers [default: one per core]")] = None,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="join this Ray cluster")] = None,
    device: Annotated[str | None, typer.Option("--device", help="where to train, label and score: auto (CUDA when present), cpu, "
                                               "cuda, cuda:N or mps; students are timed on the CPU [default: auto]")] = None,
) -> None:
    """The whole pipeline, resumable: teacher, soft labels, space, indicator, search, student, measurement, report.

    With no options it compresses the packaged MiniLM teacher on the built-in Devign sample in a few minutes.
    Rerunning the same command skips every finished stage; a changed option reruns only what depends on it.
    """
    from rich.table import Table

    from avatar.pipeline import compress as run_compress
    from avatar.report import decision_lines, headline, ratio_lines
    from avatar.tasks import get_task

    flags = dict(task=task, data=data, preset=preset, teacher=teacher, teacher_finetuned=teacher_finetuned, teacher_labels=teacher_labels,
                 budget_mb=budget_mb, seed=seed,
                 samples=samples, epochs=epochs, objective=objective, algorithm=algorithm, prefer=prefer, executor=executor,
                 workers=workers, ray_address=ray_address, device=device)
    config = _compress_config(config_file, flags)
    with _progress(transient=True) as progress:  # bars go when done: the stage lines stay
        running: dict[str, int] = {}

        def start(name: str) -> None:
            running[name] = progress.add_task(f"stage {name}", total=None)

        def end(stage) -> None:
            if stage.name in running:
                progress.remove_task(running.pop(stage.name))
            _stage_line(stage)

        result = run_compress(config, out, progress, on_start=start, on_end=end)
    stages, metrics = result.stages, result.metrics
    columns, rows = headline(metrics)
    table = Table(title=f"avatar compress: {config.task}, budget {config.budget_mb:g} MB")
    for c in columns:
        table.add_column(c, justify="left" if not c else "right")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    for line in ratio_lines(metrics):
        console.print(line, soft_wrap=True)
    exported = stages["export"].result
    precision = "int8" if "int8" in exported["sizes"] else "fp32"
    console.print(f"exported: {out / 'onnx'} ({precision} {exported['sizes'][precision] / MB:.2f} MB, agreement with PyTorch "
                  f"{exported['parity'][precision]['agreement']:.3f}; model card {out / 'onnx' / 'README.md'}); use it: "
                  f"avatar {COMMAND[get_task(config.task).num_inputs]} ... --model {out}", soft_wrap=True)
    for line in decision_lines({"decisions": {precision: exported["decisions"][precision]}}):
        console.print(line, soft_wrap=True)
    if config.data is None:
        from avatar.runtime.model import builtin_model

        shadows = Path(out).resolve() == DEFAULT_RUN.resolve() and builtin_model(get_task(config.task).num_inputs) is not None
        console.print(f"This was the demo, on the built-in sample of a few hundred examples: its student is not worth using. "
                      f"A model worth using comes from real data with the full settings: `avatar compress --task {config.task} "
                      f"--data DIR` with CodeXGLUE's {TASK_DATASET[config.task]} in DIR (hours on a CPU; "
                      "benchmarks/paper_table.py measures what it gives)."
                      + (f" While {out} is here `avatar scan` uses it; elsewhere (or with it removed) it uses the packaged "
                         "Devign student." if shadows else ""), soft_wrap=True)
    console.print(f"report: {out / 'report.md'} ({', '.join(stages['report'].result['plots'])}); settings: {out / 'config.toml'}")


ModelDir = Annotated[Path | None, typer.Option("--model", help="export folder (avatar export) or avatar compress run "
                                                  "folder [default: $AVATAR_MODEL, else ./avatar-run]")]
Precision = Annotated[str | None, typer.Option(help="fp32 or int8 [default: int8 where the export has it]")]
MaxFileKb = Annotated[int, typer.Option("--max-file-size", help="skip source files larger than this many KB")]
Threshold = Annotated[float | None, typer.Option(help="report what the model gives at least this probability "
                                                   "[default: the threshold the export chose on validation]")]


def _exported(model: Path | None, precision: str | None, num_inputs: int):
    """The model a runtime command uses: --model, else $AVATAR_MODEL, else ./avatar-run, else the package's own
    (one-function models only; said on stderr with what it scored)."""
    from avatar.runtime.model import PRECISIONS, ExportedModel, builtin_model

    if precision is not None and precision not in PRECISIONS:
        raise AvatarError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if model is None and os.environ.get("AVATAR_MODEL"):
        model = Path(os.environ["AVATAR_MODEL"])
        if not model.exists():
            raise AvatarError("model folder not found (set by $AVATAR_MODEL)", model)
    if model is None and DEFAULT_RUN.exists():
        model = DEFAULT_RUN
    if model is not None:
        return ExportedModel(model, precision)
    builtin = builtin_model(num_inputs)
    if builtin is None:
        raise AvatarError(f"no model at {DEFAULT_RUN}: run `avatar compress` first (it exports RUN/onnx) or pass --model DIR")
    exported = ExportedModel(builtin, precision)
    err_console.print(escape(_builtin_line(exported)), highlight=False, soft_wrap=True)
    return exported


def _builtin_line(exported) -> str:
    """What the packaged model is and scored, in one line: a user who passed no model is told which one ran."""
    from avatar.card import CARD

    m, d = exported.manifest, exported.decision
    scores, metric, size = d["scores"], m["metric"], m["sizes"][exported.precision]["bytes"] / MB
    low, high = scores["interval95"][metric]
    return (f"no --model, $AVATAR_MODEL or ./avatar-run: using the built-in {TASK_DATASET.get(m['task'], m['task'])} student "
            f"({exported.precision}, {size:.2f} MB): test {metric} {scores[metric]:.3f} [{low:.3f}, {high:.3f}] (majority class "
            f"{scores['baseline'][metric]:.3f}); at its threshold, test precision {d['test']['precision']:.2f} and recall "
            f"{d['test']['recall']:.2f}; its card: {exported.folder / CARD}")


def _check_output(output: Path | None) -> None:
    """A report path that cannot be written fails before the work, not after it."""
    if output is None:
        return
    if output.is_dir():
        raise AvatarError("output is a folder; give a file name", output)
    if output.parent.exists() and not output.parent.is_dir():
        raise AvatarError("not a folder: the report cannot be written inside it", output.parent)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    from avatar._io import write_text_atomic

    _check_output(output)
    write_text_atomic(output, text)
    err_console.print(f"wrote {output}")


def _warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


@app.command("export")
def export_cmd(
    model: Annotated[Path, typer.Option("--model", help="model folder: a student or a fine-tuned teacher")],
    out: Annotated[Path, typer.Option("--out", help="export folder to write")],
    int8: Annotated[bool, typer.Option("--int8/--no-int8", help="also write int8 graphs (dynamic quantisation)")] = _EXPORT.int8,
    fp32: Annotated[bool, typer.Option("--fp32/--no-fp32", help="with --int8: keep the fp32 graphs too")] = _EXPORT.fp32,
    target_precision: Annotated[float | None, typer.Option(help="threshold: the lowest whose validation precision reaches this "
                                                           "[default: the best validation F1]")] = _EXPORT.target_precision,
    data: Annotated[Path | None, typer.Option("--data", help="data whose test split the parity check runs on [default: built-in sample]")] = None,
    parity_examples: Annotated[int, typer.Option(help="test examples the parity check compares")] = _EXPORT.parity_examples,
    max_prob_diff: Annotated[float, typer.Option(help="int8: largest allowed probability difference from PyTorch")] = _EXPORT.max_prob_diff,
    min_agreement: Annotated[float, typer.Option(help="int8: smallest allowed share of equal predictions")] = _EXPORT.min_agreement,
    seed: Seed = SEED,
) -> None:
    """Export a model folder to ONNX (and int8) for the torch-free runtime, checking parity on real examples."""
    from avatar.card import CARD
    from avatar.export import export
    from avatar.modeling import saved_task
    from avatar.report import decision_lines

    config = _checked(ExportConfig(int8=int8, fp32=fp32, parity_examples=parity_examples, max_prob_diff=max_prob_diff,
                                   min_agreement=min_agreement, target_precision=target_precision))
    task = saved_task(model)
    loaded = task.load(data, seed=seed)
    about = {"data": f"{task.name} data in {data}" if data else f"the built-in {task.name} sample"}
    with err_console.status("exporting"):
        manifest = export(model, out, loaded.test, loaded.valid, config, about)
    for precision in manifest["precisions"]:
        size, par = manifest["sizes"][precision], manifest["parity"][precision]
        console.print(
            f"{precision}: {size['bytes'] / MB:.2f} MB ({' + '.join(size['files'])}); parity on {par['examples']} "
            f"test examples: max probability difference {par['max_prob_diff']:.2g}, agreement {par['agreement']:.4f}",
            soft_wrap=True,
        )
    for line in decision_lines(manifest):
        console.print(line, soft_wrap=True)
    total = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    console.print(f"wrote {out} ({total / MB:.2f} MB in all; model card {out / CARD})")


@app.command("scan")
def scan_cmd(
    paths: Annotated[list[Path], typer.Argument(help="source files or folders in the model's language (searched recursively)")],
    model: ModelDir = None,
    output_format: Annotated[str, typer.Option("--format", help="text, json or sarif")] = "text",
    threshold: Threshold = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the report here [default: stdout]")] = None,
    precision: Precision = None,
    max_file_size: MaxFileKb = 1024,
    batch_size: Annotated[int, typer.Option(help="functions per inference batch")] = 32,
) -> None:
    """Rate every function of a code base with a model (the Devign one: C/C++, its probability of being vulnerable),
    riskiest first; a model of more classes names each function's class."""
    from avatar.runtime.scan import FORMATS, scan, scan_json, scan_sarif, scan_text

    if output_format not in FORMATS:
        raise AvatarError(f"--format must be one of {', '.join(FORMATS)}, got {output_format!r}")
    _at_least(1, max_file_size=max_file_size, batch_size=batch_size)
    _check_output(output)
    exported = _exported(model, precision, 1)
    result = scan(paths, exported, threshold, max_file_size * 1024, batch_size, warn=_warn)
    _write({"text": scan_text, "json": scan_json, "sarif": scan_sarif}[output_format](result), output)


@app.command("clones")
def clones_cmd(
    a: Annotated[Path, typer.Argument(help="file or folder in the model's language")],
    b: Annotated[Path, typer.Argument(help="file or folder (the same as A: pairs within it)")],
    model: ModelDir = None,
    output_format: Annotated[str, typer.Option("--format", help="text or json")] = "text",
    threshold: Threshold = None,
    max_pairs: Annotated[int, typer.Option(help="score at most this many function pairs")] = 100_000,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the report here [default: stdout]")] = None,
    precision: Precision = None,
    max_file_size: MaxFileKb = 1024,
    batch_size: Annotated[int, typer.Option(help="functions per inference batch")] = 32,
) -> None:
    """Find the function pairs a pair model flags (BigCloneBench's: Java clones), likeliest first."""
    from avatar.runtime.scan import clones, clones_json, clones_text

    if output_format not in ("text", "json"):
        raise AvatarError(f"--format must be text or json, got {output_format!r}")
    _at_least(1, max_file_size=max_file_size, batch_size=batch_size)
    _check_output(output)
    exported = _exported(model, precision, 2)
    result = clones([a], [b], exported, threshold, max_pairs, max_file_size * 1024, batch_size, warn=_warn)
    _write((clones_json if output_format == "json" else clones_text)(result), output)


@app.command()
def report(run: Annotated[Path, typer.Argument(help="run directory of avatar compress or avatar search")]) -> None:
    """Regenerate RUN/report.md and its plots from the run's artefacts."""
    from avatar.report import write_report

    written = write_report(run)
    console.print(f"wrote {run / written['report']} and {', '.join(written['plots']) or 'no plots'}")


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM: stop now and keep what is finished. Not a KeyboardInterrupt, which click would turn
    into its own "Aborted!" before the clean-up and the message here."""


def _interrupt(signum, frame) -> None:
    raise Interrupted(signum)


def main() -> None:
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app()
    except Interrupted:
        err_console.print("[red]interrupted:[/red] finished stages and candidates are kept; the same command resumes",
                          highlight=False, soft_wrap=True)
        sys.exit(130)
    except AvatarError as e:
        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in TRAINING_MODULES:
            raise
        _training_install_error(e)
    except OSError as e:  # the machine refused: a path that is a folder, no permission, a full disk
        from avatar._io import user_path

        where = f"{user_path(e.filename)}: " if e.filename else ""
        err_console.print(f"[red]error:[/red] {escape(where + (e.strerror or str(e)))}", highlight=False, soft_wrap=True)
        sys.exit(2)


def _training_install_error(e: ModuleNotFoundError) -> None:
    err_console.print(
        f"[red]error:[/red] this command needs the training install (missing {e.name}): "
        + escape("pip install torch==2.13.0 && pip install 'avatar-distill[train]'"), highlight=False, soft_wrap=True,
    )
    sys.exit(2)
