"""Measured-latency objective: time random-weight students on this CPU, fit a small model, predict the rest.

Latency does not depend on weights, so candidate architectures are built with random weights and timed at
batch size 1 on full-length inputs, with the threads the measurement stage uses. A non-negative linear model on
the terms a CPU spends its time on, per layer and input (projections L·T·H², feed-forward L·T·H·I, attention
products L·T²·H (queries × keys, weights × values), the same again for relative position embeddings, softmax
over L·heads·T² scores, element-wise work L·T·H, the activation over L·T·I values — one term per activation, since
on a CPU their element-wise costs differ by an order of magnitude (gelu_new's tanh formula is built from several
separate operations) — per-layer overhead L, and a constant), is fitted to minimise the relative error (what the
leave-one-out error reports). Measurements are cached per machine (processor, torch version, threads), so a rerun
measures only new architectures.

Timings are taken with the C allocator in its steady state. By default glibc hands a freed block of more than
128 KiB straight back to the system, so every forward pass maps its large temporaries (the feed-forward's T·I
values, the attention scores) afresh and page-faults them in; it raises that threshold only after the process has
freed a larger block, so a timing depended on what was timed before it: the same 1-layer student took 10 ms
first thing in a process and 3.3 ms after larger ones (this 2-core CPU), and the model's leave-one-out error was
14.6-15.9 % on Devign's architectures (4.3 % with this: benchmarks/results/search.md). Pinning the thresholds where glibc's own adjustment
ends (32 MiB, trim at 64 MiB; process-wide, set once) makes each timing the compute alone, as in a scanning
process that has warmed up (onnxruntime keeps its own memory arena).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import platform
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LinearRegression

from avatar._io import cache_dir, sha256_json, write_json_atomic
from avatar.modeling import build_student
from avatar.student import ACTIVATIONS, StudentConfig
from avatar.tasks import Task

TIMING = "steady-allocator"  # how timings are taken: part of the cache key, so earlier timings are not mixed in
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
ARCHITECTURE = ("vocab_size", "num_hidden_layers", "hidden_size", "hidden_act", "intermediate_size",
                "num_attention_heads", "max_sequence_length", "position_embedding_type")  # what latency depends on


def machine_key() -> str:
    return sha256_json({"cpu": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                        "timing": TIMING})[:16]


@functools.cache
def steady_allocator() -> bool:
    """Keep freed memory in the process for reuse (glibc only; elsewhere nothing to do): whether it was set."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):  # no C library found, or one without mallopt (macOS, musl)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 64 << 20))


def _arch_key(values: dict, num_inputs: int) -> str:
    return sha256_json({"inputs": num_inputs, **{k: values[k] for k in ARCHITECTURE}})[:20]


@torch.no_grad()
def time_architecture(values: dict, task: Task, runs: int = 10, warmup: int = 2, seed: int = 0) -> float:
    """Median batch-1 latency in ms of a random-weight student reading full-length inputs."""
    steady_allocator()
    cfg = StudentConfig(**{**values, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
    torch.manual_seed(seed)
    model = build_student(task, cfg).eval()
    T = cfg.max_sequence_length
    ids = torch.randint(5, cfg.vocab_size, (1, task.num_inputs, T))
    mask = torch.ones_like(ids)
    for _ in range(warmup):
        model(ids, mask)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model(ids, mask)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


class LatencyCache:
    def __init__(self) -> None:
        self.path = cache_dir() / "latency" / f"{machine_key()}.json"
        try:
            self.data: dict[str, float] = json.loads(self.path.read_text())
        except (OSError, ValueError):  # absent or damaged: measure again
            self.data = {}

    def measure(self, configs: list[dict], task: Task, runs: int = 10) -> list[float]:
        out = []
        for values in configs:
            key = _arch_key(values, task.num_inputs)
            if key not in self.data:
                self.data[key] = time_architecture(values, task, runs)
                write_json_atomic(self.path, self.data)  # after each: an interruption keeps what was timed
            out.append(self.data[key])
        return out


def _features(configs: list[dict], num_inputs: int) -> np.ndarray:
    """Per configuration: the cost terms (scaled to similar sizes) and a constant, for ``num_inputs`` sequences."""
    rows = []
    for c in configs:
        L, T, H, I, A = (c["num_hidden_layers"], c["max_sequence_length"], c["hidden_size"], c["intermediate_size"],
                         c["num_attention_heads"])
        relative = int(c["position_embedding_type"] != "absolute")
        activation = [num_inputs * L * T * I / 1e7 * (c["hidden_act"] == a) for a in ACTIVATIONS]
        rows.append([num_inputs * L * T * H * H / 1e9, num_inputs * L * T * H * I / 1e9, num_inputs * L * T * T * H / 1e9,
                     relative * num_inputs * L * T * T * H / 1e9,
                     num_inputs * L * A * T * T / 1e8, num_inputs * L * T * H / 1e7, *activation, L, 1.0])
    return np.array(rows)


def _fit_relative(X: np.ndarray, y: np.ndarray) -> LinearRegression:
    """Non-negative least squares on relative errors: rows divided by their latency, target 1."""
    return LinearRegression(positive=True, fit_intercept=False).fit(X / y[:, None], np.ones(len(y)))


@dataclass
class LatencyModel:
    num_inputs: int
    model: LinearRegression
    report: dict  # LOOCV mean absolute percentage error, measurements used

    @classmethod
    def fit(cls, configs: list[dict], latencies_ms: list[float], num_inputs: int) -> LatencyModel:
        X, y = _features(configs, num_inputs), np.asarray(latencies_ms, dtype=float)
        pred = np.array([_fit_relative(np.delete(X, i, 0), np.delete(y, i)).predict(X[i : i + 1])[0] for i in range(len(y))])
        report = {"measurements": len(y), "loocv_mape": float(np.mean(np.abs(pred - y) / y)), "loocv_mae_ms": float(np.mean(np.abs(pred - y))),
                  "threads": torch.get_num_threads()}
        return cls(num_inputs, _fit_relative(X, y), report)

    def predict(self, configs: list[dict]) -> np.ndarray:
        """Predicted batch-1 latency in ms (never below a small positive floor)."""
        return np.maximum(self.model.predict(_features(configs, self.num_inputs)), 1e-3)
