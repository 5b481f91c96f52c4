"""Measured-latency objective: time random-weight students on this CPU, fit a small model, predict the rest.

Latency does not depend on weights, so candidate architectures are built with random weights and timed at
batch size 1 on full-length inputs. A linear model on physically motivated features (GFLOPs, layers, layers x
sequence length) is fitted to the measurements; its leave-one-out error is reported. Measurements are cached
per machine (processor, torch version, threads), so a rerun measures only new architectures.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import LeaveOneOut, cross_val_predict

from avatar._io import cache_dir, sha256_json, write_json_atomic
from avatar.cost import flops
from avatar.modeling import build_student
from avatar.student import StudentConfig
from avatar.tasks import Task

ARCHITECTURE = ("vocab_size", "num_hidden_layers", "hidden_size", "hidden_act", "intermediate_size",
                "num_attention_heads", "max_sequence_length", "position_embedding_type")  # what latency depends on


def machine_key() -> str:
    return sha256_json({"cpu": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": torch.get_num_threads()})[:16]


def _arch_key(values: dict, num_inputs: int) -> str:
    return sha256_json({"inputs": num_inputs, **{k: values[k] for k in ARCHITECTURE}})[:20]


@torch.no_grad()
def time_architecture(values: dict, task: Task, runs: int = 10, warmup: int = 2, seed: int = 0) -> float:
    """Median batch-1 latency in ms of a random-weight student reading full-length inputs."""
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
    return np.array([
        [flops(StudentConfig(**c), num_inputs) / 1e9, c["num_hidden_layers"], c["num_hidden_layers"] * c["max_sequence_length"] / 512]
        for c in configs
    ])


@dataclass
class LatencyModel:
    num_inputs: int
    model: LinearRegression
    report: dict  # LOOCV mean absolute percentage error, measurements used

    @classmethod
    def fit(cls, configs: list[dict], latencies_ms: list[float], num_inputs: int) -> LatencyModel:
        X, y = _features(configs, num_inputs), np.asarray(latencies_ms)
        pred = cross_val_predict(LinearRegression(positive=True), X, y, cv=LeaveOneOut())
        report = {"measurements": len(y), "loocv_mape": float(np.mean(np.abs(pred - y) / y)), "loocv_mae_ms": float(np.mean(np.abs(pred - y)))}
        return cls(num_inputs, LinearRegression(positive=True).fit(X, y), report)

    def predict(self, configs: list[dict]) -> np.ndarray:
        """Predicted batch-1 latency in ms (never below a small positive floor)."""
        return np.maximum(self.model.predict(_features(configs, self.num_inputs)), 1e-3)
