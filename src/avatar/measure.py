"""Honest measurement of teachers and students: scores, size, CPU latency, throughput, energy, carbon.

Like for like:
- every subject reads the same test functions; a reference architecture (random weights, costs only) reads each
  one at the length a real tokenisation gives it (the first model folder's tokenizer), capped at its block size;
- several models measured together are interleaved run by run and block by block, so that a slow spell of the
  machine hits them alike; threads are fixed and reported;
- energy blocks last a fixed wall time (a block of a fast model holds more passes, not less time); a counter
  that includes the machine at rest (RAPL, NVML) has an idle baseline, measured the same way, subtracted; an
  energy figure the method cannot tell from zero is marked unresolved and gives no ratio;
- an exported model (``onnx-fp32:DIR``, ``onnx-int8:DIR``) is run through the runtime ``avatar scan`` uses;
- latency is CPU latency, the deployment target's, wherever the models were trained; on an accelerator the
  PyTorch models are also timed there, in an extra column labelled with the device and precision (GPU energy by
  NVML), and their test scores are computed there in full precision.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from transformers import RobertaConfig

from avatar.cost import FP32_BYTES, MB
from avatar.device import CPU, Accelerator
from avatar.energy import J_PER_KWH, EnergyMeter, NvmlMeter, carbon_intensity, pick_meter
from avatar.errors import AvatarError
from avatar.modeling import build_from_config, load_classifier
from avatar.settings import ARCHITECTURES, MeasureConfig
from avatar.student import POSITION_OFFSET
from avatar.tasks import Example, Task
from avatar.trainer import Encoded, encode_for, predict_logits

ARCH_PREFIX = "arch:"
ONNX_PREFIXES = {"onnx-fp32:": "fp32", "onnx-int8:": "int8"}  # an export folder through onnxruntime, at that precision
IDLE = "idle"  # the pseudo-subject of the idle baseline


@dataclass
class Subject:
    """One model under measurement and its inputs."""

    name: str
    runtime: str  # what runs it: "pytorch", "onnxruntime fp32", "onnxruntime int8"
    logits: Callable[[Encoded, int], np.ndarray]  # (examples, batch size) -> logits (N, C)
    parameters: int | None
    size_bytes: int  # what the size ratios compare: fp32 weights, or for an export every file its precision loads
    size_basis: str
    disk_bytes: int | None  # every file of the model folder (None for an architecture without files)
    test: Encoded | None  # tokenised test examples; None when the weights are random (no score)
    inputs: Encoded  # what latency and energy runs feed the model: the same functions for every subject
    tokenisation: str  # whose tokenisation the inputs follow
    on_device: Callable[[Encoded, int], np.ndarray] | None = None  # the same model on the accelerator (PyTorch subjects, not on the CPU)
    scores: Callable[[Encoded, int], np.ndarray] | None = None  # what computes its test logits (none: ``logits``)


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _torch_logits(model: torch.nn.Module, accel: Accelerator = CPU) -> Callable[[Encoded, int], np.ndarray]:
    return lambda data, batch_size: predict_logits(model, data, batch_size, accel=accel)


def _placed(subject: Subject, model: torch.nn.Module, accel: Accelerator) -> Subject:
    """``subject`` (on the CPU) with a copy of its model on ``accel``'s device, when that is not the CPU: timed
    there at ``accel``'s precision, scored there in full precision."""
    if accel.device.type == "cpu":
        return subject
    there = copy.deepcopy(model).to(accel.device).eval()
    timed = replace(accel, loader_workers=0)  # a batch-1 pass collates one example: no worker processes to start
    return replace(subject, on_device=_torch_logits(there, timed), scores=_torch_logits(there, replace(accel, dtype=None)))


def reference_lengths(tokenizer, examples: list[Example], cap: int) -> list[list[int]]:
    """Tokens per function (special tokens included) as ``tokenizer`` reads it untruncated, capped at ``cap``."""
    out = []
    for ex in examples:
        ids = tokenizer(list(ex.texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        out.append([min(cap, len(t)) for t in ids])
    return out


def _architecture_inputs(examples: list[Example], lengths: list[list[int]], config: dict, seed: int = 0) -> Encoded:
    """Random token ids (they do not change the cost) at the given lengths, framed by the special tokens."""
    rng = np.random.default_rng(seed)
    bos, eos, pad = config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]
    low = max(bos, eos, pad) + 1
    tokens = [[[bos, *rng.integers(low, config["vocab_size"], n - 2).tolist(), eos] for n in ex_lengths] for ex_lengths in lengths]
    return Encoded(ids=[ex.id for ex in examples], tokens=tokens, labels=np.array([ex.label for ex in examples]), pad_id=pad)


def _architecture(spec: str, task: Task, timed: list[Example], reference: tuple[str, object] | None, cap: int,
                  accel: Accelerator) -> Subject:
    name = spec[len(ARCH_PREFIX):]
    if name not in ARCHITECTURES:
        raise AvatarError(f"unknown architecture {name!r}; choose from {', '.join(ARCHITECTURES)}")
    if reference is None:
        raise AvatarError(f"{spec} reads the test functions at the lengths a real tokenizer gives them: list a model folder before it")
    config = ARCHITECTURES[name]
    if cap > config["max_position_embeddings"] - POSITION_OFFSET:
        raise AvatarError(f"measure.architecture_tokens {cap} exceeds what {name} can read "
                          f"({config['max_position_embeddings'] - POSITION_OFFSET} tokens)")
    torch.manual_seed(0)
    model = build_from_config(task, RobertaConfig(**config)).eval()
    params = sum(p.numel() for p in model.parameters())
    ref_name, tokenizer = reference
    inputs = _architecture_inputs(timed, reference_lengths(tokenizer, timed, cap), config)
    return _placed(Subject(spec, "pytorch", _torch_logits(model), params, FP32_BYTES * params, "fp32 weights", None, None, inputs,
                           f"{ref_name}'s tokenizer, capped at {cap}"), model, accel)


def _export(spec: str, precision: str, task: Task, scored: list[Example], timed: list[Example], threads: int) -> Subject:
    from avatar.runtime.model import ExportedModel

    model = ExportedModel(Path(spec.split(":", 1)[1]), precision, threads=threads)
    if (model.task, model.classes) != (task.name, task.classes):
        raise AvatarError(f"{spec} is a {model.task} model (classes {', '.join(model.classes)}), not {task.name} "
                          f"(classes {', '.join(task.classes)})")

    def encoded(examples: list[Example]) -> Encoded:
        flat = model.encode([t for ex in examples for t in ex.texts])
        k = task.num_inputs
        tokens = [flat[i : i + k] for i in range(0, len(flat), k)]
        return Encoded(ids=[ex.id for ex in examples], tokens=tokens, labels=np.array([ex.label for ex in examples]), pad_id=model.pad_id)

    size = model.manifest["sizes"][precision]["bytes"]
    return Subject(spec, f"onnxruntime {precision}", lambda data, batch_size: model.logits_of_tokens(data.tokens, batch_size),
                   model.manifest.get("parameters"), size, f"{precision} files (graph, weights, tokenizer)", size,
                   encoded(scored), encoded(timed), "its own")


def load_subjects(specs: list[str], task: Task, test: list[Example], cfg: MeasureConfig, seed: int,
                  accel: Accelerator = CPU) -> list[Subject]:
    """Every model to measure, scored on ``test`` (at most ``cfg.eval_limit`` of it) and timed on its first examples;
    PyTorch models also placed on ``accel``'s device when it is not the CPU."""
    from avatar.tasks import limit_examples

    scored = limit_examples(test, cfg.eval_limit, seed)
    timed = test[: cfg.runs]
    threads = cfg.threads or torch.get_num_threads()
    subjects: dict[int, Subject] = {}
    reference = None  # (name, tokenizer) whose lengths an architecture reads: the setting's, else the first model folder's
    if cfg.length_tokenizer is not None and any(s.startswith(ARCH_PREFIX) for s in specs):
        from avatar.modeling import load_tokenizer

        reference = (Path(cfg.length_tokenizer).name, load_tokenizer(cfg.length_tokenizer))
    for i, spec in enumerate(specs):
        precision = next((p for prefix, p in ONNX_PREFIXES.items() if spec.startswith(prefix)), None)
        if precision is not None:
            subjects[i] = _export(spec, precision, task, scored, timed, threads)
        elif not spec.startswith(ARCH_PREFIX):
            model, tokenizer = load_classifier(Path(spec), task)
            reference = reference or (Path(spec).name, tokenizer)
            params = sum(p.numel() for p in model.parameters())
            subjects[i] = _placed(Subject(
                name=spec, runtime="pytorch", logits=_torch_logits(model), parameters=params,
                size_bytes=FP32_BYTES * params, size_basis="fp32 weights", disk_bytes=_folder_size(Path(spec)),
                test=encode_for(model, tokenizer, scored, task),  # a GraphCodeBERT teacher is measured reading graphs
                inputs=encode_for(model, tokenizer, timed, task), tokenisation="its own",
            ), model, accel)
    for i, spec in enumerate(specs):
        if spec.startswith(ARCH_PREFIX):
            subjects[i] = _architecture(spec, task, timed, reference, cfg.architecture_tokens, accel)
    return [subjects[i] for i in range(len(specs))]


def _forward_one(subject: Subject, row: int) -> None:
    subject.logits(subject.inputs.subset([row % len(subject.inputs)]), 1)


def _timed_one(subject: Subject, row: int, accel: Accelerator = CPU) -> float:
    accel.synchronize()
    start = time.perf_counter()
    _forward_one(subject, row)
    accel.synchronize()
    return time.perf_counter() - start


def _throughput(subject: Subject, cfg: MeasureConfig) -> float:
    rows = [i % len(subject.inputs) for i in range(cfg.throughput_examples)]
    data = subject.inputs.subset(rows)
    start = time.perf_counter()
    subject.logits(data, cfg.throughput_batch)
    return len(rows) / (time.perf_counter() - start)


def tokens_per_input(data: Encoded) -> float:
    """Mean tokens per function read (special tokens included)."""
    lengths = [len(t) for ex in data.tokens for t in ex]
    return float(np.mean(lengths)) if lengths else 0.0


def energy_blocks(subjects: list[Subject], cfg: MeasureConfig, meter: EnergyMeter,
                  clock: Callable[[], float] = time.perf_counter, sleep: Callable[[float], None] = time.sleep) -> dict:
    """Interleaved blocks of ``cfg.energy_seconds`` each, ``cfg.energy_rounds`` per subject (and per idle baseline
    when the meter counts the machine at rest): per subject, per block, (joules, passes, seconds)."""
    blocks: dict = {IDLE: [], **{k: [] for k in range(len(subjects))}}  # by position: the same model may be given twice
    for _ in range(cfg.energy_rounds):
        if meter.counts_idle:
            meter.start()
            start = clock()
            sleep(cfg.energy_seconds)
            blocks[IDLE].append((meter.stop(), 0, clock() - start))
        for k, s in enumerate(subjects):
            passes = 0
            meter.start()
            start = clock()
            while True:
                _forward_one(s, passes)
                passes += 1
                if clock() - start >= cfg.energy_seconds:
                    break
            blocks[k].append((meter.stop(), passes, clock() - start))
    return blocks


def energy_per_example(blocks: list[tuple[float, int, float]], idle: list[tuple[float, int, float]]) -> dict:
    """Joules per example from a subject's blocks, net of the idle power; resolved only when the net energy of a
    block stands clear of zero (above twice the idle blocks' spread, for a counter with a baseline)."""
    idle_w = statistics.median(j / t for j, _, t in idle) if idle else 0.0
    net = [j - idle_w * t for j, _, t in blocks]
    noise = 2 * statistics.stdev(j / t for j, _, t in idle) * statistics.mean(t for _, _, t in blocks) if len(idle) > 1 else 0.0
    per_example = statistics.median(n / p for n, (_, p, _) in zip(net, blocks))
    return {
        "joules_per_example": per_example,
        "resolved": statistics.median(net) > noise and per_example > 0,
        "idle_watts": idle_w if idle else None,
        "passes": sum(p for _, p, _ in blocks),
        "seconds": round(sum(t for _, _, t in blocks), 3),
    }


def _latency(times: list[float]) -> dict:
    t = sorted(times)
    return {"median": round(1e3 * statistics.median(t), 3), "p90": round(1e3 * t[min(len(t) - 1, int(0.9 * len(t)))], 3), "runs": len(t)}


def on_accelerator(subjects: list[Subject], cfg: MeasureConfig, accel: Accelerator) -> dict[int, dict]:
    """The extra column: batch-1 latency (synchronised) and, where NVML reads the GPU, energy per example of each
    subject that has a copy on the accelerator, interleaved as on the CPU; by subject position."""
    placed = {k: replace(s, logits=s.on_device) for k, s in enumerate(subjects) if s.on_device is not None}
    if not placed:
        return {}
    for s in placed.values():
        for i in range(cfg.warmup):
            _forward_one(s, i)
    times: dict[int, list[float]] = {k: [] for k in placed}
    for i in range(cfg.runs):
        for k, s in placed.items():
            times[k].append(_timed_one(s, i, accel))
    nvml = accel.cuda and NvmlMeter.available()
    blocks = energy_blocks(list(placed.values()), cfg, NvmlMeter(accel.device.index or 0)) if nvml else None
    name = torch.cuda.get_device_name(accel.device) if accel.cuda else accel.device.type
    out = {}
    for j, k in enumerate(placed):
        energy = energy_per_example(blocks[j], blocks[IDLE]) if blocks else None
        out[k] = {"device": name, "precision": "fp32" if accel.dtype is None else f"{str(accel.dtype).removeprefix('torch.')} autocast",
                  "latency_ms": {**_latency(times[k]), "batch_size": 1},
                  "energy": None if energy is None else {"method": "nvml", "joules_per_example": round(energy["joules_per_example"], 6),
                                                         "resolved": energy["resolved"], "idle_watts": energy["idle_watts"]}}
    return out


def measure(subjects: list[Subject], task: Task, cfg: MeasureConfig, meter: EnergyMeter | None = None,
            accel: Accelerator = CPU) -> list[dict]:
    """Measure every subject the same way, interleaved, on the CPU (and those placed on ``accel`` there too, an
    extra "accelerator" entry); return one result dict per subject."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    threads = torch.get_num_threads()
    meter = meter or pick_meter()
    intensity = carbon_intensity(cfg.country)
    for s in subjects:
        for i in range(cfg.warmup):
            _forward_one(s, i)

    times: list[list[float]] = [[] for _ in subjects]
    for i in range(cfg.runs):
        for k, s in enumerate(subjects):
            times[k].append(_timed_one(s, i))
    blocks = energy_blocks(subjects, cfg, meter)
    extra = on_accelerator(subjects, cfg, accel)

    results = []
    for k, s in enumerate(subjects):
        energy = energy_per_example(blocks[k], blocks[IDLE])
        kwh_1k = energy["joules_per_example"] * 1000 / J_PER_KWH
        results.append({
            "model": s.name,
            "task": task.name,
            "runtime": s.runtime,
            "test": None if s.test is None else _test_scores(task, s),
            "parameters": s.parameters,
            "size_bytes": s.size_bytes,
            "size_basis": s.size_basis,
            "size_mb": round(s.size_bytes / MB, 3),
            "disk_bytes": s.disk_bytes,
            "inputs": {"functions": len(s.inputs), "tokens_per_input": round(tokens_per_input(s.inputs), 1),
                       "tokenisation": s.tokenisation},
            "latency_ms": {**_latency(times[k]), "batch_size": 1, "threads": threads},
            "throughput": {"batch_size": cfg.throughput_batch, "examples_per_second": round(_throughput(s, cfg), 2)},
            "energy": {
                "method": meter.method,
                "model": getattr(meter, "model", None),
                "joules_per_example": round(energy["joules_per_example"], 6),
                "resolved": energy["resolved"],
                "idle_watts": energy["idle_watts"],
                "kwh_per_1000_examples": kwh_1k,
                "examples": energy["passes"],
                "blocks": cfg.energy_rounds,
                "block_seconds": cfg.energy_seconds,
            },
            "carbon": {
                "grams_per_1000_examples": kwh_1k * intensity["g_per_kwh"],
                "g_per_kwh": intensity["g_per_kwh"],
                "region": intensity["region"],
                "source": intensity["source"],
                "energy_method": meter.method,
            },
            **({"accelerator": extra[k]} if k in extra else {}),
        })
    return results


def _test_scores(task: Task, s: Subject) -> dict:
    """Test scores with their 95 % bootstrap intervals, the constant-prediction baseline and the spread of the
    predicted probability; the per-example correctness is kept for the paired test between subjects."""
    from avatar.stats import test_scores

    logits = (s.scores or s.logits)(s.test, 32)
    labels = s.test.labels
    return {**test_scores(task, labels, logits), "correct": (logits.argmax(axis=1) == labels).astype(int).tolist()}


def ratios(reference: dict, other: dict, main_metric: str) -> dict:
    """How much smaller, faster and frugal ``other`` is than ``reference``, the score it gives up, and what was
    equal. An energy figure its method could not resolve gives no ratio."""

    def times(a: float, b: float) -> float | None:
        return a / b if b > 0 else None

    resolved = reference["energy"].get("resolved", True) and other["energy"].get("resolved", True)
    out = {
        "size_x": times(reference["size_bytes"], other["size_bytes"]),
        "size_basis": [reference["size_basis"], other["size_basis"]],
        "latency_x": times(reference["latency_ms"]["median"], other["latency_ms"]["median"]),
        "energy_x": times(reference["energy"]["joules_per_example"], other["energy"]["joules_per_example"]) if resolved else None,
        "energy_method": other["energy"]["method"],
        "equal": {"functions": other["inputs"]["functions"], "batch_size": 1, "threads": other["latency_ms"]["threads"],
                  "tokens_per_input": [reference["inputs"]["tokens_per_input"], other["inputs"]["tokens_per_input"]]},
    }
    if reference["test"] and other["test"]:
        out["score_difference"] = other["test"][main_metric] - reference["test"][main_metric]
        a, b = reference["test"].get("correct"), other["test"].get("correct")
        if a is not None and b is not None and len(a) == len(b):  # the same test examples, in order
            from avatar.stats import mcnemar

            out["mcnemar"] = mcnemar(a, b)
    return out
