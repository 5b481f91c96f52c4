"""Honest measurement of teachers and students: scores, size, CPU latency, throughput, energy, carbon.

Several models measured together are interleaved run by run, so that a slow spell of the machine hits them
alike and their ratios stay fair. Threads are fixed and reported.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import RobertaConfig

from avatar.cost import FP32_BYTES, weights_mb
from avatar.energy import J_PER_KWH, EnergyMeter, carbon_intensity, pick_meter
from avatar.errors import AvatarError
from avatar.modeling import Classifier, build_from_config, load_classifier
from avatar.settings import ARCHITECTURES, MeasureConfig
from avatar.tasks import Example, Task
from avatar.trainer import Encoded, collate, encode_for, predict_logits

ARCH_PREFIX = "arch:"
ARCH_TOKENS = 400  # tokens per function fed to an architecture-only model (CodeXGLUE's CodeBERT block size)


@dataclass
class Subject:
    """One model under measurement and its inputs."""

    name: str
    model: Classifier
    parameters: int
    disk_bytes: int | None  # every file of the model folder (None for an architecture without files)
    test: Encoded | None  # tokenised test examples; None when the weights are random (no score)
    inputs: Encoded  # what latency and energy runs feed the model


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _architecture_inputs(examples: list[Example], config: dict, seed: int = 0) -> Encoded:
    rng = np.random.default_rng(seed)
    bos, eos, pad = config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]
    body = lambda: rng.integers(max(bos, eos, pad) + 1, config["vocab_size"], ARCH_TOKENS - 2).tolist()  # noqa: E731
    tokens = [[[bos, *body(), eos] for _ in ex.texts] for ex in examples]
    return Encoded(ids=[ex.id for ex in examples], tokens=tokens, labels=np.array([ex.label for ex in examples]), pad_id=pad)


def load_subject(spec: str, task: Task, test_examples: list[Example], latency_examples: list[Example]) -> Subject:
    """A model folder, or ``arch:codebert-base`` for that architecture with random weights (costs only)."""
    if spec.startswith(ARCH_PREFIX):
        name = spec[len(ARCH_PREFIX):]
        if name not in ARCHITECTURES:
            raise AvatarError(f"unknown architecture {name!r}; choose from {', '.join(ARCHITECTURES)}")
        torch.manual_seed(0)
        model = build_from_config(task, RobertaConfig(**ARCHITECTURES[name])).eval()
        params = sum(p.numel() for p in model.parameters())
        return Subject(spec, model, params, None, None, _architecture_inputs(latency_examples, ARCHITECTURES[name]))
    model, tokenizer = load_classifier(Path(spec), task)
    return Subject(
        name=spec,
        model=model,
        parameters=sum(p.numel() for p in model.parameters()),
        disk_bytes=_folder_size(Path(spec)),
        test=encode_for(model, tokenizer, test_examples, task),  # a GraphCodeBERT teacher is measured reading graphs
        inputs=encode_for(model, tokenizer, latency_examples, task),
    )


def load_subjects(specs: list[str], task: Task, test: list[Example], cfg: MeasureConfig, seed: int) -> list[Subject]:
    """Every model to measure, scored on ``test`` (at most ``cfg.eval_limit`` of it) and timed on its first examples."""
    from avatar.tasks import limit_examples

    scored = limit_examples(test, cfg.eval_limit, seed)
    timed = test[: max(cfg.runs, cfg.energy_examples)]
    return [load_subject(spec, task, scored, timed) for spec in specs]


@torch.no_grad()
def _forward_one(subject: Subject, row: int) -> float:
    batch = collate(subject.inputs, [row])
    start = time.perf_counter()
    subject.model(*batch)
    return time.perf_counter() - start


def _throughput(subject: Subject, cfg: MeasureConfig) -> float:
    rows = [i % len(subject.inputs) for i in range(cfg.throughput_examples)]
    data = subject.inputs.subset(rows)
    start = time.perf_counter()
    predict_logits(subject.model, data, cfg.throughput_batch)
    return len(rows) / (time.perf_counter() - start)


def measure(subjects: list[Subject], task: Task, cfg: MeasureConfig, meter: EnergyMeter | None = None) -> list[dict]:
    """Measure every subject the same way, interleaved; return one result dict per subject."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    threads = torch.get_num_threads()
    meter = meter or pick_meter(gpu=any(next(s.model.parameters()).is_cuda for s in subjects))
    intensity = carbon_intensity(cfg.country)
    for s in subjects:
        s.model.eval()
        for i in range(cfg.warmup):
            _forward_one(s, i % len(s.inputs))

    times: list[list[float]] = [[] for _ in subjects]  # by position: the same model may be given twice
    for i in range(cfg.runs):
        for k, s in enumerate(subjects):
            times[k].append(_forward_one(s, i % len(s.inputs)))

    joules: list[list[float]] = [[] for _ in subjects]
    for _ in range(cfg.energy_rounds):
        for k, s in enumerate(subjects):
            meter.start()
            for i in range(cfg.energy_examples):
                _forward_one(s, i % len(s.inputs))
            joules[k].append(meter.stop() / cfg.energy_examples)

    results = []
    for k, s in enumerate(subjects):
        t = sorted(times[k])
        j = statistics.median(joules[k])
        scores = None if s.test is None else _test_scores(task, s)
        kwh_1k = j * 1000 / J_PER_KWH
        results.append({
            "model": s.name,
            "task": task.name,
            "test": scores,
            "parameters": s.parameters,
            "size_bytes": FP32_BYTES * s.parameters,  # fp32 weights: the size compared, for folders and architectures alike
            "size_mb": round(weights_mb(s.parameters), 3),
            "disk_bytes": s.disk_bytes,
            "latency_ms": {
                "median": round(1e3 * statistics.median(t), 3),
                "p90": round(1e3 * t[min(len(t) - 1, int(0.9 * len(t)))], 3),
                "runs": len(t),
                "batch_size": 1,
                "threads": threads,
            },
            "throughput": {"batch_size": cfg.throughput_batch, "examples_per_second": round(_throughput(s, cfg), 2)},
            "energy": {
                "method": meter.method,
                "joules_per_example": round(j, 6),
                "kwh_per_1000_examples": kwh_1k,
                "examples": cfg.energy_rounds * cfg.energy_examples,
            },
            "carbon": {
                "grams_per_1000_examples": kwh_1k * intensity["g_per_kwh"],
                "g_per_kwh": intensity["g_per_kwh"],
                "region": intensity["region"],
                "source": intensity["source"],
                "energy_method": meter.method,
            },
        })
    return results


def _test_scores(task: Task, s: Subject) -> dict:
    """Test scores with their 95 % bootstrap intervals and the majority-class baseline; the per-example
    correctness is kept for the paired test between subjects."""
    from avatar.stats import bootstrap_intervals, majority_baseline

    logits = predict_logits(s.model, s.test)
    preds, margin = logits.argmax(axis=1), logits[:, 1] - logits[:, 0]  # the margin ranks as P(class 1) does
    labels = s.test.labels
    return {
        **task.metrics(labels.tolist(), preds.tolist(), margin.tolist()),
        "examples": len(s.test),
        "interval95": bootstrap_intervals(task, labels, preds, margin),
        "majority_baseline": majority_baseline(task, labels),
        "correct": (preds == labels).astype(int).tolist(),
    }


def ratios(reference: dict, other: dict, main_metric: str) -> dict:
    """How much smaller, faster and frugal ``other`` is than ``reference``, and the score it gives up."""

    def times(a: float, b: float) -> float | None:
        return a / b if b > 0 else None  # e.g. a counter too coarse to see a tiny model's work

    out = {
        "size_x": times(reference["size_bytes"], other["size_bytes"]),
        "latency_x": times(reference["latency_ms"]["median"], other["latency_ms"]["median"]),
        "energy_x": times(reference["energy"]["joules_per_example"], other["energy"]["joules_per_example"]),
        "energy_method": other["energy"]["method"],
    }
    if reference["test"] and other["test"]:
        out["score_difference"] = other["test"][main_metric] - reference["test"][main_metric]
        a, b = reference["test"].get("correct"), other["test"].get("correct")
        if a is not None and b is not None and len(a) == len(b):  # the same test examples, in order
            from avatar.stats import mcnemar

            out["mcnemar"] = mcnemar(a, b)
    return out
