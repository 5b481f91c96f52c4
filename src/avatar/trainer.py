"""Training and running classifiers: tokenised example sets, batching, a supervised ``Trainer``.

Distillation (a later stage) subclasses ``Trainer`` and replaces only its loss.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from transformers import PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from avatar.device import CPU, Accelerator, cpu_copy, model_device
from avatar.graphcodebert import GraphInput
from avatar.modeling import Classifier, model_max_length
from avatar.settings import TrainConfig
from avatar.tasks import Example, Task

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    """Token ids of examples, ready for batching."""

    ids: list[str]  # example ids, in order
    tokens: list[list[list[int]]]  # per example, per function: token ids (truncated, with special tokens)
    labels: np.ndarray  # (N,) ground-truth labels
    pad_id: int
    graphs: list[list[GraphInput]] | None = None  # GraphCodeBERT inputs per example, per function (else token-only)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: Sequence[int]) -> Encoded:
        """These rows, in this order (repeats allowed)."""
        return Encoded([self.ids[r] for r in rows], [self.tokens[r] for r in rows], self.labels[list(rows)], self.pad_id,
                       None if self.graphs is None else [self.graphs[r] for r in rows])


def encode(tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], max_length: int) -> Encoded:
    n_inputs = len(examples[0].texts) if examples else 1
    per_input = [
        tokenizer([ex.texts[k] for ex in examples], truncation=True, max_length=max_length)["input_ids"]
        for k in range(n_inputs)
    ]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(
        ids=[ex.id for ex in examples],
        tokens=[list(funcs) for funcs in zip(*per_input)],
        labels=np.array([ex.label for ex in examples], dtype=np.int64),
        pad_id=pad_id,
    )


def encode_graphs(tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], language: str, code_length: int,
                  flow_length: int) -> Encoded:
    """GraphCodeBERT inputs of examples: each function's code tokens, then its data-flow nodes."""
    from avatar.graphcodebert import build, flows

    n = len(examples[0].texts) if examples else 1
    extracted = flows([ex.texts[k] for ex in examples for k in range(n)], language)  # (N * n,), from the cache if there
    graphs = [[build(extracted[i * n + k], tokenizer, code_length, flow_length) for k in range(n)] for i in range(len(examples))]
    return Encoded(
        ids=[ex.id for ex in examples],
        tokens=[[list(g.input_ids[: g.code_end + len(g.node_tokens)]) for g in funcs] for funcs in graphs],
        labels=np.array([ex.label for ex in examples], dtype=np.int64),
        pad_id=tokenizer.pad_token_id,
        graphs=graphs,
    )


def encode_for(model: Classifier, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], task: Task) -> Encoded:
    """Examples as a saved model reads them: token-only, or GraphCodeBERT's graph input when its folder says so."""
    from avatar.graphcodebert import FLOW_LENGTH_KEY, MODEL_TYPE_KEY

    if getattr(model.config, MODEL_TYPE_KEY, None) == "graphcodebert":
        return encode_graphs(tokenizer, examples, task.language, model_max_length(model), getattr(model.config, FLOW_LENGTH_KEY))
    return encode(tokenizer, examples, model_max_length(model))


def collate(data: Encoded, rows: Sequence[int]) -> tuple[torch.Tensor, ...]:
    """Pad the chosen examples to the longest function among them: (B, n, T) ids and mask; for graph inputs
    (B, n, L) ids, (B, n, L, L) attention and (B, n, L) positions."""
    if data.graphs is not None:
        return _collate_graphs(data, rows)
    n = len(data.tokens[rows[0]])
    T = max(len(t) for r in rows for t in data.tokens[r])
    ids = torch.full((len(rows), n, T), data.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), n, T), dtype=torch.long)
    for i, r in enumerate(rows):
        for k, toks in enumerate(data.tokens[r]):
            ids[i, k, : len(toks)] = torch.tensor(toks)
            mask[i, k, : len(toks)] = 1
    return ids, mask


def _collate_graphs(data: Encoded, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from avatar.graphcodebert import attention_mask

    graphs = [data.graphs[r] for r in rows]
    n = len(graphs[0])
    L = max(len(t) for r in rows for t in data.tokens[r])  # the padding of the longest is left out
    ids = torch.full((len(rows), n, L), data.pad_id, dtype=torch.long)
    positions = torch.full((len(rows), n, L), data.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), n, L, L), dtype=torch.bool)
    for i, funcs in enumerate(graphs):
        for k, g in enumerate(funcs):
            ids[i, k] = torch.tensor(g.input_ids[:L])
            positions[i, k] = torch.tensor(g.position_ids[:L])
            mask[i, k] = torch.from_numpy(attention_mask(g)[:L, :L])
    return ids, mask, positions


def collate_chunks(data: Encoded, size: int, rows: Sequence[int]) -> list[tuple[torch.Tensor, ...]]:
    """One batch as the tensors of its micro-batches of ``size`` rows (one of them when it fits)."""
    return [collate(data, rows[start : start + size]) for start in range(0, len(rows), size)]


@torch.no_grad()
def predict_logits(model: Classifier, data: Encoded, batch_size: int = 32, on_batch: Callable[[int], None] | None = None,
                   accel: Accelerator = CPU) -> np.ndarray:
    """Logits (N, C) of every example, one per class, batched by length so little compute goes to padding; run
    where the model is, batches collated and cast as ``accel`` says."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    order = sorted(range(len(data)), key=lambda r: max(len(t) for t in data.tokens[r]))
    out = np.zeros((len(data), model.num_classes), dtype=np.float32)
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    for rows, tensors in accel.batches(batches, partial(collate, data)):
        with accel.autocast():
            logits = model(*(t.to(device, non_blocking=True) for t in tensors))
        out[rows] = logits.float().cpu().numpy()
        if on_batch:
            on_batch(len(rows))
    model.train(was_training)
    return out


def score(task: Task, model: Classifier, data: Encoded, batch_size: int = 32, accel: Accelerator = CPU) -> dict[str, float]:
    return score_and_logits(task, model, data, batch_size, accel)[0]


def score_and_logits(task: Task, model: Classifier, data: Encoded, batch_size: int = 32,
                     accel: Accelerator = CPU) -> tuple[dict[str, float], np.ndarray]:
    """The task's metrics on ``data``, and the logits (N, C) they come from."""
    logits = predict_logits(model, data, batch_size, accel=accel)
    return task.metrics(data.labels.tolist(), *task.read_logits(logits)), logits



def batch_rows(data: Encoded, batch_size: int, generator: torch.Generator, length_buckets: int = 1) -> Iterator[list[int]]:
    """An epoch's batches (rows of ``data``): random; with ``length_buckets`` > 1, drawn from shuffled pools of that
    many batches' worth of examples sorted by length (so little of a batch is padding), in random order. Either
    way there are ceil(N / batch size) batches and every example is seen once."""
    perm = torch.randperm(len(data), generator=generator).tolist()
    if length_buckets <= 1:
        for start in range(0, len(perm), batch_size):
            yield perm[start : start + batch_size]
        return
    length = lambda r: max(len(t) for t in data.tokens[r])  # noqa: E731
    pool = batch_size * length_buckets
    batches = []
    for start in range(0, len(perm), pool):
        chunk = sorted(perm[start : start + pool], key=length)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    for k in torch.randperm(len(batches), generator=generator).tolist():
        yield batches[k]


@dataclass
class TrainResult:
    best_score: float  # validation main metric of the kept weights
    best_step: int
    steps: int  # optimiser steps taken (fewer than planned after early stopping)
    history: list[dict] = field(default_factory=list)  # one record per validation


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices; none on biases and LayerNorm weights, which are still trained."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class Trainer:
    """Supervised fine-tuning on ground-truth labels, keeping the best weights by validation score (in CPU memory),
    on the device of ``accel`` (the model is moved there)."""

    def __init__(
        self,
        model: Classifier,
        task: Task,
        config: TrainConfig,
        train: Encoded,
        valid: Encoded,
        progress: Progress | None = None,
        checkpoint: Checkpoint | None = None,
        accel: Accelerator = CPU,
    ):
        self.model, self.task, self.config = model.to(accel.device), task, config
        self.accel = accel
        self.train_data, self.valid_data = train, valid
        self.progress = progress
        self.checkpoint = checkpoint

    def loss(self, logits: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        """Cross-entropy against the ground truth; distillation overrides this."""
        return F.cross_entropy(logits, torch.as_tensor(self.train_data.labels[list(rows)], device=logits.device))

    def _step_loss(self, rows: list[int], chunks: list[tuple[torch.Tensor, ...]] | None = None, scaler=None) -> float:
        """Forward and backward over one batch, in micro-batches whose losses are weighted to the batch mean
        (``chunks``: their tensors, collated beforehand; none: collated here)."""
        size = self.config.micro_batch_size or len(rows)
        chunks = collate_chunks(self.train_data, size, rows) if chunks is None else chunks
        total = 0.0
        for start, tensors in zip(range(0, len(rows), size), chunks):
            chunk = rows[start : start + size]
            with self.accel.autocast():
                logits = self.model(*self.accel.to_device(tensors))
            loss = self.loss(logits.float(), chunk) * (len(chunk) / len(rows))
            (loss if scaler is None else scaler.scale(loss)).backward()
            total += loss.item()
        return total

    def _batches(self, generator: torch.Generator) -> Iterator[list[int]]:
        return batch_rows(self.train_data, self.config.batch_size, generator, self.config.length_buckets)

    def train(self) -> TrainResult:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        steps_per_epoch = math.ceil(len(self.train_data) / cfg.batch_size)
        total = cfg.max_steps or steps_per_epoch * cfg.epochs  # a step budget runs the epochs it needs and stops
        epochs = math.ceil(total / steps_per_epoch)
        eval_at = {round(steps_per_epoch * (k + 1) / cfg.evals_per_epoch) for k in range(cfg.evals_per_epoch)}
        optimizer = self.accel.adamw(param_groups(self.model, cfg.weight_decay), cfg.learning_rate)
        schedule = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
        scaler = self.accel.scaler()
        bar = self.progress.add_task("training", total=total) if self.progress else None
        collate_batch = partial(collate_chunks, self.train_data, cfg.micro_batch_size or cfg.batch_size)

        result = TrainResult(best_score=-math.inf, best_step=0, steps=0)
        best_state = cpu_copy(self.model.state_dict())
        stale, first_epoch = 0, 0
        saved = self.checkpoint.load(self.model, optimizer, schedule, generator, scaler) if self.checkpoint else None
        if saved is not None:
            first_epoch, stale, best_state, result = saved
            log.info("resumed after epoch %d from %s", first_epoch, self.checkpoint.path)
            if bar is not None:
                self.progress.update(bar, completed=result.steps)
        self.model.train()
        for epoch in range(first_epoch, epochs):
            batches = list(self._batches(generator))  # the epoch's draws are all made before its first batch
            for i, (rows, chunks) in enumerate(self.accel.batches(batches, collate_batch), start=1):
                if result.steps == total:
                    break
                loss = self._step_loss(rows, chunks, scaler)
                if scaler is not None:
                    scaler.unscale_(optimizer)  # clip the true gradients
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                if scaler is None:
                    optimizer.step()
                else:
                    scaler.step(optimizer)
                    scaler.update()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                result.steps += 1
                if bar is not None:
                    self.progress.update(bar, advance=1, description=f"epoch {epoch + 1} loss {loss:.4f}")
                if i not in eval_at and result.steps != total:  # a step budget ends with a validation
                    continue
                metrics = score(self.task, self.model, self.valid_data, self.accel.eval_batch_size, self.accel)
                value = metrics[self.task.main_metric]
                result.history.append({"epoch": epoch + 1, "step": result.steps, "loss": loss, **metrics})
                log.info("step %d: validation %s %.4f", result.steps, self.task.main_metric, value)
                if value > result.best_score:
                    result.best_score, result.best_step, stale = value, result.steps, 0
                    best_state = cpu_copy(self.model.state_dict())
                else:
                    stale += 1
                if bar is not None:
                    self.progress.update(bar, description=f"epoch {epoch + 1} val {self.task.main_metric} {value:.4f}")
                if cfg.patience is not None and stale >= cfg.patience:
                    log.info("early stop after %d validations without improvement", stale)
                    self.model.load_state_dict(best_state)
                    return result
            if self.checkpoint and epoch + 1 < epochs:
                self.checkpoint.save(epoch + 1, stale, self.model, best_state, result, optimizer, schedule, generator, scaler)
        self.model.load_state_dict(best_state)
        return result


MODEL_STATE, BEST_STATE, TRAINER_STATE = "model.safetensors", "best.safetensors", "trainer.pt"


class Checkpoint:
    """End-of-epoch training state in a folder of its own, so that a killed run resumes where the epoch ended.

    It holds the weights (now and best so far, safetensors), the optimiser, schedule, gradient scaler and
    random-number states (CPU and CUDA) and the validation history; resuming continues exactly as the uninterrupted run would have. ``key`` names
    what was being trained (settings, data, starting model): a folder saved under another key is not resumed.
    """

    def __init__(self, path: Path, key: str):
        self.path, self.key = Path(path), key

    def save(self, epoch: int, stale: int, model: torch.nn.Module, best_state: dict, result: TrainResult,
             optimizer: torch.optim.Optimizer, schedule, generator: torch.Generator, scaler=None) -> None:
        from safetensors.torch import save_file

        from avatar._io import atomic_dir

        with atomic_dir(self.path, kind="checkpoint") as tmp:
            save_file({k: v.contiguous() for k, v in cpu_copy(model.state_dict()).items()}, str(tmp / MODEL_STATE))
            save_file({k: v.contiguous() for k, v in cpu_copy(best_state).items()}, str(tmp / BEST_STATE))
            torch.save({
                "key": self.key, "epoch": epoch, "stale": stale, "result": asdict(result),
                "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
                "scaler": None if scaler is None else scaler.state_dict(),
            }, tmp / TRAINER_STATE)
        log.info("checkpoint after epoch %d in %s", epoch, self.path)

    def load(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule, generator: torch.Generator,
             scaler=None) -> tuple[int, int, dict, TrainResult] | None:
        """Restore the saved state into these objects; None when there is none for this key."""
        from safetensors.torch import load_file

        try:
            state = torch.load(self.path / TRAINER_STATE, weights_only=True, map_location="cpu")
        except FileNotFoundError:
            return None
        if state.get("key") != self.key:
            log.info("checkpoint in %s is for other settings or data: starting afresh", self.path)
            return None
        model.load_state_dict(load_file(str(self.path / MODEL_STATE)))
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        return state["epoch"], state["stale"], load_file(str(self.path / BEST_STATE)), TrainResult(**state["result"])

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)
