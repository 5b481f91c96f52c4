"""The effectiveness indicator: a regression surrogate from configuration to validation score.

Several scikit-learn surrogates (Bayesian ridge as in the paper, a Gaussian process, a tree ensemble) are
scored by leave-one-out error on the distilled samples; the best by mean absolute error is refitted on all of
them. Features, each in [0, 1]: a dimension whose values span a factor of ten or more (vocabulary, intermediate
size, learning rate) on a log scale, as such settings act; the other numeric ones linearly; categories of numbers
(learning rate, batch size) as one ordered value, not one-hot, so that 1e-4 lies between 5e-5 and 1e-3; the
other categories one-hot. With successive halving, the budget level each sample reached (0 to 1): the indicator
learns from every sample at its highest level and predicts at the top one. On the real searches' samples
(benchmarks/results/search.md) these features cut every surrogate's leave-one-out error but Bayesian ridge's on
BigCloneBench, against one-hot choices and linear scales. Saved as JSON (the samples, the choice and the
report) and refitted on load — deterministic and small, and no pickle to trust.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.linear_model import BayesianRidge
from sklearn.model_selection import LeaveOneOut, cross_val_predict

from avatar._io import write_json_atomic
from avatar.errors import AvatarError
from avatar.space import NAMES, CatDim, Space

FORMAT = "avatar-indicator/2"  # /2: log-scaled, ordered features (a /1 file was fitted on one-hot, linear ones)


def _surrogates(seed: int) -> dict:
    return {
        "bayesian_ridge": BayesianRidge(),
        "gaussian_process": GaussianProcessRegressor(
            kernel=ConstantKernel() * Matern(nu=2.5) + WhiteKernel(), normalize_y=True, random_state=seed
        ),
        "extra_trees": ExtraTreesRegressor(n_estimators=200, min_samples_leaf=2, random_state=seed),
    }


SURROGATES = tuple(_surrogates(0))


def _scaled(values: list[float], low: float, high: float) -> list[float]:
    """``values`` mapped to [0, 1] over [low, high]: on a log scale where that range spans a factor of ten."""
    if high <= low:
        return [0.0] * len(values)
    if low > 0 and high / low >= 10:
        values, low, high = np.log(values), np.log(low), np.log(high)
    return [float((v - low) / (high - low)) for v in values]


def features(space: Space, configs: list[dict]) -> np.ndarray:
    """One row per configuration, every column in [0, 1] (see the module's docstring)."""
    columns = []
    for name in NAMES:
        d = space.dims[name]
        values = [c[name] for c in configs]
        if isinstance(d, CatDim) and not all(isinstance(v, int | float) and not isinstance(v, bool) for v in d.choices):
            columns += [[float(v == choice) for v in values] for choice in d.choices]
        elif isinstance(d, CatDim):
            columns.append(_scaled(values, min(d.choices), max(d.choices)))
        else:
            columns.append(_scaled(values, d.low, d.high))
    return np.array(columns, dtype=float).T


def _with_fidelity(X: np.ndarray, fidelity: list[float] | None) -> np.ndarray:
    return X if fidelity is None else np.column_stack([X, np.asarray(fidelity, dtype=float)])


@dataclass
class Indicator:
    space: Space
    configs: list[dict]  # the distilled samples
    scores: list[float]  # their validation scores
    choice: str  # the surrogate kept
    report: dict  # per surrogate: LOOCV MAE, Kendall tau (and its p-value against chance) and the left-out predictions
    seed: int
    fidelity: list[float] | None = None  # successive halving: the budget level each sample reached, 0..1 (none: one level)
    model: object = None

    @classmethod
    def fit(cls, space: Space, configs: list[dict], scores: list[float], seed: int = 0, fidelity: list[float] | None = None) -> Indicator:
        if len(configs) != len(scores) or (fidelity is not None and len(fidelity) != len(configs)):
            raise AvatarError(f"{len(configs)} configurations but {len(scores)} scores")
        if len(configs) < 3:
            raise AvatarError(f"the indicator needs at least 3 scored samples, got {len(scores)}")
        X, y = _with_fidelity(features(space, configs), fidelity), np.asarray(scores, dtype=float)
        report = {}
        for name, model in _surrogates(seed).items():
            with warnings.catch_warnings():  # a GP on 20 points often hits its hyperparameter bounds; LOOCV judges it
                warnings.simplefilter("ignore", ConvergenceWarning)
                pred = cross_val_predict(model, X, y, cv=LeaveOneOut())
            # and the chance of a tau at least this high from a ranking by chance (one-sided: leave-one-out predictions
            # of pure noise anti-correlate, and a negative tau is no evidence of ranking); ten samples at tau 0.33: p ~0.1
            tau = kendalltau(y, pred, alternative="greater")
            report[name] = {"loocv_mae": float(np.abs(pred - y).mean()),
                            "kendall_tau": None if np.isnan(tau.statistic) else float(tau.statistic),
                            "kendall_tau_p": None if np.isnan(tau.pvalue) else float(tau.pvalue),
                            "loocv_predictions": [float(v) for v in pred]}
        report["predict_mean_baseline"] = {"loocv_mae": float(np.abs(y - (y.sum() - y) / (len(y) - 1)).mean()), "kendall_tau": None}
        choice = min(SURROGATES, key=lambda n: report[n]["loocv_mae"])
        return cls(space, list(configs), list(map(float, scores)), choice, report, seed, fidelity)._refit()

    @property
    def beats_mean(self) -> bool:
        """Whether the kept surrogate predicts left-out samples better than their mean does (LOOCV MAE)."""
        return self.report[self.choice]["loocv_mae"] < self.report["predict_mean_baseline"]["loocv_mae"]

    def _refit(self) -> Indicator:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model = _surrogates(self.seed)[self.choice].fit(_with_fidelity(features(self.space, self.configs), self.fidelity),
                                                                  np.asarray(self.scores))
        return self

    def top(self) -> tuple[list[dict], list[float]]:
        """The samples that reached the highest budget level, with their scores (what predictions are made at)."""
        if self.fidelity is None:
            return list(self.configs), list(self.scores)
        level = max(self.fidelity)
        keep = [i for i, f in enumerate(self.fidelity) if f == level]
        return [self.configs[i] for i in keep], [self.scores[i] for i in keep]

    def predict(self, configs: list[dict]) -> tuple[np.ndarray, np.ndarray | None]:
        """Predicted scores, and their standard deviations where the surrogate gives them (GP, ridge)."""
        X = _with_fidelity(features(self.space, configs), None if self.fidelity is None else [1.0] * len(configs))
        if self.choice in ("gaussian_process", "bayesian_ridge"):
            mean, std = self.model.predict(X, return_std=True)
            return mean, std
        return self.model.predict(X), None

    def save(self, path: Path) -> None:
        write_json_atomic(Path(path), {
            "format": FORMAT, "choice": self.choice, "report": self.report, "seed": self.seed,
            "space": self.space.describe(), "configs": self.configs, "scores": self.scores, "fidelity": self.fidelity,
        })

    @classmethod
    def load(cls, path: Path, space: Space) -> Indicator:
        try:
            doc = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise AvatarError("indicator file not found", path) from None
        except json.JSONDecodeError as e:
            raise AvatarError(f"malformed indicator file ({e.msg})", path, e.lineno) from None
        if doc.get("format") != FORMAT or doc.get("choice") not in SURROGATES:
            raise AvatarError("not an Avatar indicator file", path)
        if doc["space"] != space.describe():
            raise AvatarError("the indicator was fitted on another configuration space", path)
        return cls(space, doc["configs"], doc["scores"], doc["choice"], doc["report"], doc["seed"], doc.get("fidelity"))._refit()
