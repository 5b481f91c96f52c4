"""Multi-objective search for the Pareto set: maximise predicted effectiveness, minimise latency (or FLOPs)
and size, with the budget as a hard constraint.

NSGA-II (pymoo) runs over the grid: numeric dimensions as integer grid indices, categorical ones as pymoo
``Choice`` variables (categories, not numbers). All repair happens in one place, ``_SmtRepair``, which snaps to
the grid, fixes heads and shrinks into the SMT-feasible set. ``paper_ga`` reproduces the paper's genetic
search as described (population 20, 50 generations, tournament of 10, crossover 0.6, mutation 0.1 per gene,
an archive) with a correct Pareto-dominance test, so both can be compared by hypervolume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.callback import Callback
from pymoo.core.mixed import MixedVariableDuplicateElimination, MixedVariableMating, MixedVariableSampling
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.core.variable import Choice, Integer
from pymoo.indicators.hv import HV
from pymoo.optimize import minimize
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from avatar.cost import MB, flops, parameter_count, weights_mb
from avatar.errors import AvatarError
from avatar.smt import Feasibility
from avatar.space import NAMES, CatDim, Space
from avatar.student import StudentConfig
from avatar.settings import PREFERENCES

Predictor = Callable[[list[dict]], tuple[np.ndarray, np.ndarray | None]]  # configs -> (mean score, std or None)
CostModel = Callable[[list[dict]], np.ndarray]  # configs -> latency in ms (or FLOPs)


@dataclass
class Objectives:
    """What the search trades off, each as a function of a batch of configurations."""

    predict: Predictor  # effectiveness (maximised)
    speed: CostModel  # latency ms or GFLOPs (minimised)
    speed_name: str  # "latency_ms" or "gflops"
    num_inputs: int

    def evaluate(self, configs: list[dict]) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, 3) minimisation objectives [-effectiveness, speed, size MB], and the effectiveness std."""
        mean, std = self.predict(configs)
        size = np.array([weights_mb(parameter_count(StudentConfig(**c), self.num_inputs)) for c in configs])
        return np.column_stack([-np.asarray(mean, float), np.asarray(self.speed(configs), float), size]), std


def flops_objective(num_inputs: int) -> CostModel:
    return lambda configs: np.array([flops(StudentConfig(**c), num_inputs) / 1e9 for c in configs])


def _to_values(space: Space, x: dict) -> dict:
    """pymoo's variables (grid indices, categories) -> configuration values."""
    return {n: (d := space.dims[n]).value(d.index(x[n]) if isinstance(d, CatDim) else round(x[n])) for n in NAMES}


def _to_vars(space: Space, values: dict) -> dict:
    return {n: values[n] if isinstance(space.dims[n], CatDim) else space.dims[n].index(values[n]) for n in NAMES}


class _SmtRepair(Repair):
    """The one place where candidates are made valid: on the grid, heads dividing hidden, within the budget."""

    def __init__(self, space: Space, feas: Feasibility):
        super().__init__()
        self.space, self.feas = space, feas

    def _do(self, problem, X, **kwargs):
        for i, x in enumerate(X):
            X[i] = _to_vars(self.space, self.feas.repair(_to_values(self.space, x)))
        return X


class _StudentProblem(Problem):
    def __init__(self, space: Space, feas: Feasibility, objectives: Objectives):
        variables = {
            n: Choice(options=list(d.choices)) if isinstance(d, CatDim) else Integer(bounds=(0, len(d) - 1))
            for n, d in space.dims.items()
        }
        super().__init__(vars=variables, n_obj=3, n_ieq_constr=2)
        self.space, self.feas, self.objectives = space, feas, objectives

    def _evaluate(self, X, out, *args, **kwargs):
        configs = [_to_values(self.space, x) for x in X]
        out["F"], _ = self.objectives.evaluate(configs)
        c = self.feas.c
        size = out["F"][:, 2] * MB  # the size objective, in bytes
        cap = np.array([flops(StudentConfig(**v), c.num_inputs) for v in configs]) if c.max_gflops is not None else None
        out["G"] = np.column_stack([
            size / c.budget_bytes - 1,  # <= 0: within the budget (a hard constraint, not an objective)
            cap / (c.max_gflops * 1e9) - 1 if cap is not None else np.full(len(configs), -1.0),
        ])


def objective_names(speed_name: str) -> list[str]:
    """The columns of a Pareto row holding the objectives, in the order of F: effectiveness, speed, size."""
    return ["predicted_effectiveness", speed_name, "size_mb"]


def objectives_of_rows(rows: list[dict], speed_name: str) -> np.ndarray:
    """F (N, 3) minimisation objectives [-effectiveness, speed, size MB] back from Pareto rows."""
    eff, speed, size = objective_names(speed_name)
    return np.array([[-r[eff], r[speed], r[size]] for r in rows])


@dataclass
class SearchResult:
    configs: list[dict]  # the Pareto set
    F: np.ndarray  # (N, 3) [-effectiveness, speed, size MB]
    std: np.ndarray | None  # predicted effectiveness std, where the surrogate gives one
    speed_name: str
    evaluations: int
    sources: list[str] | None = None  # per configuration: "predicted" (by the indicator) or "measured" (a distilled sample)

    def rows(self) -> list[dict]:
        out = []
        names = objective_names(self.speed_name)
        for k, (c, f) in enumerate(zip(self.configs, self.F)):
            row = {**c, names[0]: float(-f[0]), names[1]: float(f[1]), names[2]: float(f[2])}
            std = None if self.std is None else float(self.std[k])
            row["predicted_std"] = None if std is None or np.isnan(std) else std
            row["source"] = "predicted" if self.sources is None else self.sources[k]
            out.append(row)
        return out


def with_measured(result: SearchResult, configs: list[dict], scores: list[float], objectives: Objectives,
                  use_predictions: bool = True) -> SearchResult:
    """The Pareto set of the search's predicted configurations and the measured samples (their distilled scores
    as effectiveness); only the measured ones when ``use_predictions`` is false (a surrogate no better than the
    mean). A configuration both predicted and measured keeps its measured score."""
    F_measured, _ = objectives.evaluate(configs)
    F_measured[:, 0] = -np.asarray(scores, dtype=float)
    key = lambda c: tuple(c[n] for n in NAMES)  # noqa: E731
    measured = {key(c) for c in configs}
    keep = [i for i, c in enumerate(result.configs) if use_predictions and key(c) not in measured]
    cand = [result.configs[i] for i in keep] + list(configs)
    F = np.vstack([result.F[keep], F_measured]) if keep else F_measured
    std_pred = result.std[keep] if result.std is not None else np.full(len(keep), np.nan)
    std = np.concatenate([std_pred, np.full(len(configs), np.nan)])
    sources = ["predicted"] * len(keep) + ["measured"] * len(configs)
    front = NonDominatedSorting().do(F, only_non_dominated_front=True)
    order = sorted(front, key=lambda i: (F[i, 0], F[i, 1], F[i, 2], tuple(str(cand[i][n]) for n in NAMES)))
    return SearchResult([cand[i] for i in order], F[order], std[order], result.speed_name, result.evaluations,
                        [sources[i] for i in order])


def _pareto(configs: list[dict], F: np.ndarray, objectives: Objectives) -> tuple[list[dict], np.ndarray, np.ndarray | None]:
    """Distinct non-dominated configurations, sorted by effectiveness (best first), then speed."""
    unique: dict[tuple, int] = {}
    for i, c in enumerate(configs):
        unique.setdefault(tuple(c[n] for n in NAMES), i)
    idx = list(unique.values())
    F = F[idx]
    front = NonDominatedSorting().do(F, only_non_dominated_front=True)
    order = sorted(front, key=lambda i: (F[i, 0], F[i, 1], F[i, 2], tuple(str(configs[idx[i]][n]) for n in NAMES)))
    chosen = [configs[idx[i]] for i in order]
    F_out, std = objectives.evaluate(chosen)
    return chosen, F_out, std


@dataclass(frozen=True)
class Nsga2:
    """pymoo's NSGA-II over the mixed grid, every offspring repaired into the feasible set by the SMT predicate."""

    population: int = 40  # individuals per generation
    generations: int = 50  # generations

    def run(self, space: Space, feas: Feasibility, objectives: Objectives, seed: int) -> SearchResult:
        problem = _StudentProblem(space, feas, objectives)
        repair = _SmtRepair(space, feas)  # given to both: pymoo's mixed-variable mating does not inherit it
        algorithm = NSGA2(
            pop_size=self.population,
            sampling=MixedVariableSampling(),
            mating=MixedVariableMating(repair=repair, eliminate_duplicates=MixedVariableDuplicateElimination()),
            eliminate_duplicates=MixedVariableDuplicateElimination(),
            repair=repair,
        )
        archive = _Archive()
        res = minimize(problem, algorithm, ("n_gen", self.generations), seed=seed, callback=archive, verbose=False)
        configs = [_to_values(space, x) for x in archive.X]
        keep = [i for i, c in enumerate(configs) if feas.is_feasible(c)]
        if not keep:
            raise AvatarError("the search found no feasible configuration")
        chosen, F, std = _pareto([configs[i] for i in keep], np.array(archive.F)[keep], objectives)
        return SearchResult(chosen, F, std, objectives.speed_name, res.algorithm.evaluator.n_eval)


class _Archive(Callback):
    """Every evaluated individual, so the front is the non-dominated set of the whole run (as paper_ga's archive),
    not only of the last population."""

    def __init__(self) -> None:
        super().__init__()
        self.X: list[dict] = []
        self.F: list[np.ndarray] = []

    def notify(self, algorithm) -> None:
        batch = algorithm.pop if algorithm.n_gen == 1 else algorithm.off
        if batch is not None:
            self.X += list(batch.get("X"))
            self.F += list(batch.get("F"))


def _dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """Pareto dominance for minimisation: no worse everywhere and strictly better somewhere."""
    return bool(np.all(a <= b) and np.any(a < b))


@dataclass(frozen=True)
class PaperGA:
    """The paper's GA as described, with a working uniform crossover and a correct dominance test."""

    population: int = 20  # individuals per generation (the paper's)
    generations: int = 50  # generations (the paper's)
    tournament: int = 10  # entrants per tournament
    crossover: float = 0.6  # probability of uniform crossover
    mutation: float = 0.1  # probability that a gene is drawn anew

    def run(self, space: Space, feas: Feasibility, objectives: Objectives, seed: int) -> SearchResult:
        rng = np.random.default_rng(seed)
        pop_size, generations, tournament = self.population, self.generations, self.tournament
        crossover, mutation = self.crossover, self.mutation
        lengths = [len(space.dims[n]) for n in NAMES]

        def random_genome() -> list[int]:
            return [int(rng.integers(n)) for n in lengths]

        def to_config(genome: list[int]) -> dict:
            return feas.repair(space.at(genome))

        def to_genome(values: dict) -> list[int]:
            return [space.dims[n].index(values[n]) for n in NAMES]

        population = [to_genome(to_config(random_genome())) for _ in range(pop_size)]
        archive: dict[tuple, np.ndarray] = {}
        evaluations = 0
        for _ in range(generations):
            configs = [to_config(g) for g in population]
            F, _ = objectives.evaluate(configs)
            evaluations += len(configs)
            for g, f in zip(population, F):
                archive[tuple(g)] = f
            # the archive keeps only what nothing else dominates
            archive = {k: f for k, f in archive.items() if not any(_dominates(o, f) for o in archive.values())}
            # fitness for the tournament: how many population members dominate you (fewer is better)
            dominated_by = [sum(_dominates(o, f) for o in F) for f in F]
            children = []
            while len(children) < pop_size:
                parents = []
                for _ in range(2):
                    entrants = rng.choice(pop_size, size=min(tournament, pop_size), replace=False)
                    parents.append(population[min(entrants, key=lambda i: (dominated_by[i], i))])
                a, b = parents
                if rng.random() < crossover:  # uniform crossover: each gene from either parent
                    mask = rng.random(len(NAMES)) < 0.5
                    a = [x if m else y for x, y, m in zip(a, b, mask)]
                child = [int(rng.integers(n)) if rng.random() < mutation else g for g, n in zip(a, lengths)]
                children.append(to_genome(to_config(child)))
            population = children
        keys = list(archive)
        configs = [to_config(list(k)) for k in keys]
        chosen, F, std = _pareto(configs, np.array([archive[k] for k in keys]), objectives)
        return SearchResult(chosen, F, std, objectives.speed_name, evaluations)


ALGORITHMS = {"nsga2": Nsga2, "paper-ga": PaperGA}  # interchangeable parts of the one search verb
Algorithm = Nsga2 | PaperGA


def search(space: Space, feas: Feasibility, objectives: Objectives, algorithm: Algorithm, seed: int) -> SearchResult:
    """The Pareto set of the objectives over the feasible space, found by ``algorithm`` (as pymoo's
    ``minimize(problem, algorithm, ...)``: the same problem and result whichever algorithm runs)."""
    return algorithm.run(space, feas, objectives, seed)


def hypervolume(F: np.ndarray, ideal: np.ndarray, nadir: np.ndarray) -> float:
    """Hypervolume of a front after scaling objectives to [0, 1] between ``ideal`` and ``nadir`` (ref: 1.1)."""
    span = np.where(nadir - ideal > 0, nadir - ideal, 1.0)
    return float(HV(ref_point=np.full(F.shape[1], 1.1))((F - ideal) / span))


def choose(F: np.ndarray, prefer: str = "effectiveness") -> int:
    """Index of the automatic choice in a Pareto set's objectives ``F`` (N, 3) [-effectiveness, speed, size].

    effectiveness: highest predicted effectiveness (all are within budget), ties by speed then size;
    knee: closest to the ideal point after scaling each objective to [0, 1]; fastest / smallest: best on that.
    """
    if prefer == "effectiveness":
        return int(np.lexsort((F[:, 2], F[:, 1], F[:, 0]))[0])
    if prefer == "fastest":
        return int(np.lexsort((F[:, 2], F[:, 0], F[:, 1]))[0])
    if prefer == "smallest":
        return int(np.lexsort((F[:, 1], F[:, 0], F[:, 2]))[0])
    if prefer == "knee":
        span = np.where(np.ptp(F, axis=0) > 0, np.ptp(F, axis=0), 1.0)
        return int(np.linalg.norm((F - F.min(axis=0)) / span, axis=1).argmin())
    raise AvatarError(f"unknown preference {prefer!r}; choose from {', '.join(PREFERENCES)}")
