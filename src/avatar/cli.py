"""Command line: ``avatar finetune``, ``avatar label``, ``avatar teacher``. Errors a user causes: one line, exit 2."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from avatar.errors import AvatarError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
err_console = Console(stderr=True)

TaskOpt = Annotated[str, typer.Option("--task", help="defect (Devign) or clone (BigCloneBench)")]
DataOpt = Annotated[Path | None, typer.Option("--data", help="data folder in CodeXGLUE format [default: built-in sample]")]


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress details")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@contextmanager
def _progress():
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    ) as progress:
        yield progress


def _metrics_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title)
    table.add_column("split")
    for name in ("accuracy", "precision", "recall", "f1"):
        table.add_column(name, justify="right")
    for split, m in rows.items():
        table.add_row(split, *(f"{m[k]:.4f}" for k in ("accuracy", "precision", "recall", "f1")))
    return table


def _finetune_config(model, max_length, limit, eval_limit, epochs, lr, batch_size, seed):
    from avatar.teacher import FinetuneConfig
    from avatar.trainer import TrainConfig

    for name, value in (("--max-length", max_length), ("--epochs", epochs), ("--batch-size", batch_size)):
        if value < 1:
            raise AvatarError(f"{name} must be at least 1, got {value}")
    if lr <= 0:
        raise AvatarError(f"--lr must be positive, got {lr}")
    train = TrainConfig(epochs=epochs, learning_rate=lr, batch_size=batch_size, seed=seed)
    return FinetuneConfig(model=model, max_length=max_length, limit=limit, eval_limit=eval_limit, train=train)


Model = Annotated[str, typer.Option("--model", help="pretrained encoder: 'minilm' (packaged), a local folder, or a hub id")]
Epochs = Annotated[int, typer.Option(help="training epochs")]
Lr = Annotated[float, typer.Option("--lr", help="peak learning rate")]
Batch = Annotated[int, typer.Option(help="training batch size")]
MaxLen = Annotated[int, typer.Option(help="tokens per function")]
Seed = Annotated[int, typer.Option(help="random seed (data split, shuffling, initialisation)")]
Limit = Annotated[int | None, typer.Option(help="at most this many labelled training examples")]
EvalLimit = Annotated[int | None, typer.Option(help="at most this many validation and test examples each")]


@app.command()
def finetune(
    out: Annotated[Path, typer.Option("--out", help="folder for the fine-tuned teacher")],
    task: TaskOpt = "defect",
    data: DataOpt = None,
    model: Model = "minilm",
    epochs: Epochs = 3,
    lr: Lr = 2e-5,
    batch_size: Batch = 16,
    max_length: MaxLen = 256,
    seed: Seed = 42,
    limit: Limit = None,
    eval_limit: EvalLimit = None,
) -> None:
    """Fine-tune a pretrained encoder (the teacher) on the labelled half of train."""
    from avatar.tasks import get_task
    from avatar.teacher import finetune as run

    t = get_task(task)
    config = _finetune_config(model, max_length, limit, eval_limit, epochs, lr, batch_size, seed)
    task_data = t.load(data, seed=seed)
    with _progress() as progress:
        metrics = run(t, task_data, out, config, progress)
    console.print(_metrics_table(f"teacher {model} on {task}", {"valid": metrics["valid"], "test": metrics["test"]}))
    console.print(f"saved to {out} ({metrics['train_seconds']} s of training)")


@app.command("label")
def label_cmd(
    teacher: Annotated[Path, typer.Option("--teacher", help="fine-tuned teacher folder")],
    out: Annotated[Path, typer.Option("--out", help="soft-label file to write (JSON)")],
    task: TaskOpt = "defect",
    data: DataOpt = None,
    seed: Seed = 42,
    batch_size: Annotated[int, typer.Option(help="inference batch size")] = 32,
) -> None:
    """Write the teacher's logits on the unlabelled half of train (cached by teacher and data)."""
    from avatar.labels import label
    from avatar.tasks import get_task

    t = get_task(task)
    task_data = t.load(data, seed=seed)
    with _progress() as progress:
        summary = label(teacher, t, task_data.unlabelled, out, batch_size, progress)
    console.print(f"{summary['examples']} soft labels ({summary['predicted_positive']} predicted positive) in {out}")


@app.command()
def teacher(
    task: TaskOpt = "defect",
    data: DataOpt = None,
    model: Model = "minilm",
    out: Annotated[Path, typer.Option("--out", help="run directory")] = Path("avatar-run"),
    epochs: Epochs = 3,
    lr: Lr = 5e-5,
    batch_size: Batch = 16,
    max_length: MaxLen = 256,
    seed: Seed = 42,
    limit: Limit = None,
    eval_limit: EvalLimit = None,
) -> None:
    """Teacher stage of the pipeline in a run directory: fine-tune (unless done) and write soft labels.

    With no options it runs on the built-in sample with the packaged MiniLM teacher.
    """
    from avatar.pipeline import teacher_stage
    from avatar.tasks import get_task

    t = get_task(task)
    config = _finetune_config(model, max_length, limit, eval_limit, epochs, lr, batch_size, seed)
    task_data = t.load(data, seed=seed)
    with _progress() as progress:
        result = teacher_stage(out, t, task_data, config, progress)
    m = result["teacher"]
    reused = " (reused)" if result["reused_teacher"] else ""
    console.print(_metrics_table(f"teacher {model} on {task}{reused}", {"valid": m["valid"], "test": m["test"]}))
    soft = result["soft_labels"]
    console.print(f"teacher: {out / 'teacher'}\nsoft labels: {soft['file']} ({soft['examples']} unlabelled examples)")


def main() -> None:
    try:
        app()
    except AvatarError as e:
        err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
