"""SMT pruning of the configuration space with z3: which student configurations can exist at all?

Hard constraints: weight size within the budget, hidden size divisible by the number of heads, a minimum head
dimension, and optional user caps (inference GFLOPs). Size and FLOPs multiply dimensions together, which z3's
integer arithmetic handles badly, so the space is split on its small discrete dimensions (layers, hidden size,
position-embedding kind, and heads where they change the size): inside each split the constraints are linear
in vocabulary size, intermediate size and sequence length, and the whole problem is one linear formula — a
disjunction over the splits. z3 decides feasibility and the exact per-dimension bounds (by binary search on
each dimension's grid); counting the feasible grid points is done per split with numpy, exactly.

The same constraints are exported as a fast predicate (``Feasibility.violations``) and a repair operator
(``Feasibility.repair``) for samplers and the search.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import z3

from avatar.cost import MB, RELATIVE_TERMS, flops, flops_of, parameter_count, params_of, weights_mb
from avatar.errors import AvatarError
from avatar.space import NAMES, CatDim, Space
from avatar.student import StudentConfig

# the dimensions z3 reasons about numerically; the others (categories, dropouts) enter only through feasibility
LINEAR = ("vocab_size", "intermediate_size", "max_sequence_length")  # free inside a split
SPLIT = ("num_hidden_layers", "hidden_size", "position_embedding_type")  # fixed inside a split
SHRINK_ORDER = ("vocab_size", "intermediate_size", "num_hidden_layers", "hidden_size", "max_sequence_length")


@dataclass(frozen=True)
class Constraints:
    budget_bytes: int  # fp32 weight bytes the student may have
    num_inputs: int  # functions per example: 1 (defect), 2 (clone: a wider head, two encoder passes)
    max_gflops: float | None = None  # cap on inference GFLOPs per example (None: no cap)
    min_head_dim: int = 4  # hidden_size / heads must be at least this: tinier heads attend to nothing useful

    @property
    def max_params(self) -> int:
        return self.budget_bytes // 4


def _heads_for(space: Space, H: int, c: Constraints) -> list[int]:
    """Heads allowed with hidden size H: in range, dividing H, leaving heads of at least ``min_head_dim``."""
    return [int(d) for d in space.dims["num_attention_heads"].values() if H % d == 0 and H // d >= c.min_head_dim]


def _linear(fn, **fixed) -> tuple[int, int, int, int]:
    """Coefficients (of V, I, S) and constant of a cost that is linear in them once the split is fixed."""
    base = fn(V=0, I=0, S=0, **fixed)
    return fn(V=1, I=0, S=0, **fixed) - base, fn(V=0, I=1, S=0, **fixed) - base, fn(V=0, I=0, S=1, **fixed) - base, base


@dataclass
class Split:
    L: int
    H: int
    position: str
    heads: list[int]  # heads values this split admits (all share its size when positions are absolute)
    size_coef: tuple[int, int, int, int]  # params = a_V V + a_I I + a_S S + c
    # FLOPs are quadratic in S, so they are kept per sequence length: S -> (a_I, c) with flops = a_I I + c
    flops_coef: dict[int, tuple[int, int]] = field(default_factory=dict)


def _splits(space: Space, c: Constraints) -> list[Split]:
    out = []
    S_values = [int(s) for s in space.dims["max_sequence_length"].values()]
    for L in space.dims["num_hidden_layers"].values():
        for H in space.dims["hidden_size"].values():
            L, H = int(L), int(H)
            heads = _heads_for(space, H, c)
            for pos in space.dims["position_embedding_type"].values():
                relative = int(pos != "absolute")
                # relative distances have one vector per head dimension, so heads change the size: split on them
                groups = [heads] if not relative else [[d] for d in heads]
                for group in groups:
                    if not group:
                        continue
                    size = _linear(
                        lambda V, I, S, **k: params_of(V, L, H, I, group[0], S, relative, c.num_inputs)  # noqa: E741
                    )
                    fl = {}
                    for S in S_values:
                        base = flops_of(L, H, 0, S, RELATIVE_TERMS[pos], c.num_inputs)
                        fl[S] = (flops_of(L, H, 1, S, RELATIVE_TERMS[pos], c.num_inputs) - base, base)
                    out.append(Split(L, H, pos, group, size, fl))
    return out


@dataclass
class SmtResult:
    constraints: Constraints
    bounds: dict  # numeric dim -> [min, max] over feasible configurations; categorical -> feasible choices
    feasible_values: dict  # dim -> number of its grid values that occur in some feasible configuration
    total: int  # grid configurations in the space
    feasible: int  # of which satisfy every constraint
    splits: int  # linear pieces the space was split into
    z3_checks: int
    wall_seconds: float

    def to_dict(self, space: Space) -> dict:
        per_dim = {}
        for name in NAMES:
            n = len(space.dims[name])
            per_dim[name] = {
                "space": space.describe()[name],
                "feasible": self.bounds[name],
                "values": n,
                "feasible_values": self.feasible_values[name],
                "pruned_fraction": 1 - self.feasible_values[name] / n,
            }
        return {
            "budget_mb": self.constraints.budget_bytes / MB,
            "num_inputs": self.constraints.num_inputs,
            "max_gflops": self.constraints.max_gflops,
            "min_head_dim": self.constraints.min_head_dim,
            "configurations": {
                "total": self.total,
                "feasible": self.feasible,
                "feasible_fraction": self.feasible / self.total,
                "pruned_fraction": 1 - self.feasible / self.total,
            },
            "dimensions": per_dim,
            "splits": self.splits,
            "z3_checks": self.z3_checks,
            "wall_seconds": round(self.wall_seconds, 3),
        }


class _Encoding:
    """The space and its constraints as one z3 formula over grid indices (one Int per dimension)."""

    def __init__(self, space: Space, c: Constraints, splits: list[Split]):
        self.space, self.c = space, c
        self.k = {name: z3.Int(f"k_{name}") for name in NAMES}  # grid index of each dimension
        self.solver = z3.Solver()
        self.checks = 0
        self._atoms: dict[tuple[str, object], z3.BoolRef] = {}
        self._index = {
            name: {v: i for i, v in enumerate(space.dims[name].values())}
            for name in (*SPLIT, "num_attention_heads", "max_sequence_length")
        }
        for name in NAMES:
            self.solver.add(self.k[name] >= 0, self.k[name] <= len(space.dims[name]) - 1)
        V, I, S = (self._value(n) for n in LINEAR)
        pieces = []
        for sp in splits:
            aV, aI, aS, const = sp.size_coef
            terms = [
                self._is("num_hidden_layers", sp.L),
                self._is("hidden_size", sp.H),
                self._is("position_embedding_type", sp.position),
                z3.Or([self._is("num_attention_heads", d) for d in sp.heads]),
                aV * V + aI * I + aS * S + const <= c.max_params,
            ]
            if c.max_gflops is not None:
                flops_terms = self._flops_terms(sp, I)
                if flops_terms is None:
                    continue  # no sequence length keeps this split under the cap: the disjunct is false
                terms += flops_terms
            pieces.append(z3.And(terms))
        self.solver.add(z3.Or(pieces) if pieces else z3.BoolVal(False))

    def _flops_terms(self, sp: Split, I) -> list | None:  # noqa: E741
        """FLOPs cap of a split as bounds on I per sequence length; terms that cannot bind are left out."""
        cap, d = int(self.c.max_gflops * 1e9), self.space.dims["intermediate_size"]
        terms, allowed = [], 0
        for s, (a, b) in sp.flops_coef.items():
            largest_I = (cap - b) // a  # flops = a I + b, a > 0
            if largest_I >= d.high:
                allowed += 1  # every intermediate size fits at this length
            elif largest_I < d.low:
                terms.append(z3.Not(self._is("max_sequence_length", s)))
            else:
                allowed += 1
                terms.append(z3.Implies(self._is("max_sequence_length", s), I <= largest_I))
        return terms if allowed else None

    def _value(self, name: str):
        d = self.space.dims[name]
        return d.low + d.step * self.k[name]

    def _is(self, name: str, value) -> z3.BoolRef:
        """``name == value`` as a z3 atom, built once (thousands of splits share a few dozen atoms)."""
        atom = self._atoms.get((name, value))
        if atom is None:
            atom = self._atoms[(name, value)] = self.k[name] == self._index[name][value]
        return atom

    def check(self, *extra) -> bool:
        self.checks += 1
        return self.solver.check(*extra) == z3.sat

    def index_bounds(self, name: str) -> tuple[int, int]:
        """Smallest and largest grid index of ``name`` in any feasible configuration (binary search)."""
        k, n = self.k[name], len(self.space.dims[name])
        lo, hi = 0, n - 1
        while lo < hi:  # smallest feasible index
            mid = (lo + hi) // 2
            if self.check(k <= mid):
                hi = mid
            else:
                lo = mid + 1
        smallest = lo
        lo, hi = smallest, n - 1
        while lo < hi:  # largest feasible index
            mid = (lo + hi + 1) // 2
            if self.check(k >= mid):
                lo = mid
            else:
                hi = mid - 1
        return smallest, lo


def _count(space: Space, c: Constraints, splits: list[Split]) -> tuple[int, dict[str, set]]:
    """Feasible grid points, exactly, and the values each dimension takes in them."""
    dims = space.dims
    V = dims["vocab_size"].values()
    I = dims["intermediate_size"].values().astype(np.int64)  # noqa: E741
    S_values = dims["max_sequence_length"].values()
    free = 1  # dimensions no constraint touches multiply every count
    for name in NAMES:
        if name not in (*LINEAR, *SPLIT, "num_attention_heads"):
            free *= len(dims[name])
    seen: dict[str, set] = {name: set() for name in NAMES}  # LINEAR dims: from the bounds (values are contiguous)
    total = 0
    I2, S2 = I[None, :], S_values[:, None].astype(I.dtype)  # (1, nI), (nS, 1)
    for sp in splits:
        aV, aI, aS, const = sp.size_coef
        room = c.max_params - const - aS * S2 - aI * I2  # (nS, nI): what is left for the vocabulary
        n_v = np.clip((room - aV * V[0]) // (aV * dims["vocab_size"].step) + 1, 0, len(V))  # feasible V per (S, I)
        if c.max_gflops is not None:
            a = np.array([sp.flops_coef[int(S)][0] for S in S_values])[:, None]
            b = np.array([sp.flops_coef[int(S)][1] for S in S_values])[:, None]
            n_v = np.where(a * I2 + b <= int(c.max_gflops * 1e9), n_v, 0)
        split_count = int(n_v.sum())
        if split_count:
            total += split_count * len(sp.heads)
            seen["num_hidden_layers"].add(sp.L)
            seen["hidden_size"].add(sp.H)
            seen["position_embedding_type"].add(sp.position)
            seen["num_attention_heads"].update(sp.heads)
    if total:
        for name in NAMES:
            if name not in (*LINEAR, *SPLIT, "num_attention_heads"):
                seen[name] = set(dims[name].values())
    return total * free, seen


def analyse(space: Space, c: Constraints) -> SmtResult:
    """Feasible bounds and counts of ``space`` under ``c``; an infeasible budget is an AvatarError."""
    start = time.perf_counter()
    splits = _splits(space, c)
    enc = _Encoding(space, c, splits)
    if not enc.check():
        raise AvatarError(_why_infeasible(space, c, splits))
    bounds, values = {}, {}
    for name in NAMES:
        d = space.dims[name]
        if isinstance(d, CatDim):
            ok = [v for i, v in enumerate(d.choices) if enc.check(enc.k[name] == i)]
            bounds[name] = ok
        else:
            lo, hi = enc.index_bounds(name)
            bounds[name] = [d.value(lo), d.value(hi)]
    feasible, seen = _count(space, c, splits)
    for name in NAMES:
        d = space.dims[name]
        if name in LINEAR:  # constraints are monotone in these: every value between the bounds occurs
            lo, hi = bounds[name]
            values[name] = (hi - lo) // d.step + 1
        else:
            values[name] = len(seen[name])
    return SmtResult(c, bounds, values, space.total(), feasible, len(splits), enc.checks, time.perf_counter() - start)


def _why_infeasible(space: Space, c: Constraints, splits: list[Split]) -> str:
    if not splits:
        return (
            f"no hidden size in the space can be divided into heads of at least {c.min_head_dim} dimensions "
            "(hidden size divisible by heads cannot be met)"
        )
    V0, I0 = (int(space.dims[n].values()[0]) for n in ("vocab_size", "intermediate_size"))
    S_values = [int(s) for s in space.dims["max_sequence_length"].values()]
    smallest = min(sp.size_coef[0] * V0 + sp.size_coef[1] * I0 + sp.size_coef[2] * S_values[0] + sp.size_coef[3] for sp in splits)
    if smallest > c.max_params:
        return (
            f"no configuration fits {c.budget_bytes / MB:.3g} MB (size <= budget cannot be met): "
            f"the smallest model in the space needs {weights_mb(smallest):.4f} MB"
        )
    least = min(a * I0 + b for sp in splits for a, b in sp.flops_coef.values())
    return (
        f"no configuration within {c.budget_bytes / MB:.3g} MB stays under {c.max_gflops:g} GFLOPs "
        f"(the GFLOPs cap cannot be met): the least any configuration needs is {least / 1e9:.4f} GFLOPs"
    )


class Feasibility:
    """The constraints as a fast predicate and a repair operator (arithmetic only; z3 is not needed here)."""

    def __init__(self, space: Space, c: Constraints):
        self.space, self.c = space, c

    def violations(self, values: dict) -> list[str]:
        """Every constraint ``values`` (a name -> value mapping) breaks; empty when feasible."""
        problems = []
        for name in NAMES:
            d, v = self.space.dims[name], values[name]
            if isinstance(d, CatDim):
                if v not in d.choices:
                    problems.append(f"{name}={v!r} is not a choice of the space")
            elif not (d.low - 1e-9 <= v <= d.high + 1e-9) or abs((v - d.low) / d.step - round((v - d.low) / d.step)) > 1e-6:
                problems.append(f"{name}={v} is off the grid {d.low}..{d.high} step {d.step}")
        H, heads = values["hidden_size"], values["num_attention_heads"]
        if H % heads or H // heads < self.c.min_head_dim:
            problems.append(f"hidden_size {H} is not divisible into {heads} heads of at least {self.c.min_head_dim}")
            return problems
        cfg = StudentConfig(**values)
        size = 4 * parameter_count(cfg, self.c.num_inputs)
        if size > self.c.budget_bytes:
            problems.append(f"size {size / MB:.3f} MB exceeds the budget")
        if self.c.max_gflops is not None and flops(cfg, self.c.num_inputs) > self.c.max_gflops * 1e9:
            problems.append(f"{flops(cfg, self.c.num_inputs) / 1e9:.3f} GFLOPs exceeds the cap")
        return problems

    def is_feasible(self, values: dict) -> bool:
        return not self.violations(values)

    def feasible_mask(self, index: np.ndarray) -> np.ndarray:
        """Vectorised predicate over grid points given as an (N, 13) array of per-dimension grid indices."""
        col = {name: index[:, i] for i, name in enumerate(NAMES)}
        val = {n: np.asarray(self.space.dims[n].values())[col[n]] for n in (*LINEAR, "num_hidden_layers", "hidden_size", "num_attention_heads")}
        pos = np.asarray(self.space.dims["position_embedding_type"].values(), dtype=object)[col["position_embedding_type"]]
        V, I, S = (val[n].astype(np.int64) for n in LINEAR)  # noqa: E741
        L, H, NH = (val[n].astype(np.int64) for n in ("num_hidden_layers", "hidden_size", "num_attention_heads"))
        ok = (H % NH == 0) & (H // NH >= self.c.min_head_dim)
        ok &= params_of(V, L, H, I, NH, S, (pos != "absolute").astype(np.int64), self.c.num_inputs) <= self.c.max_params
        if self.c.max_gflops is not None:
            terms = np.array([RELATIVE_TERMS[p] for p in pos], dtype=np.int64)
            ok &= flops_of(L, H, I, S, terms, self.c.num_inputs) <= self.c.max_gflops * 1e9
        return ok

    def repair(self, values: dict) -> dict:
        """A feasible configuration near ``values``: snap to the grid, fix the heads, then shrink step by step.

        Each step takes the one-dimension shrink that removes the most excess (size over budget, FLOPs over the
        cap); vocabulary and intermediate size halve their distance to the floor, the others move one grid step.
        """
        out = {}
        for name in NAMES:
            d, v = self.space.dims[name], values[name]
            if isinstance(d, CatDim):
                out[name] = v if v in d.choices else d.choices[0]
            else:
                out[name] = d.value(d.index(v))
        out = self._with_valid_heads(out)
        while (excess := self._excess(out)) > 0:
            candidates = [c for c in (self._shrunk(out, name) for name in SHRINK_ORDER) if c is not None]
            best = min(candidates, key=self._excess, default=None)
            if best is not None and self._excess(best) < excess:
                out = best
            elif out["position_embedding_type"] != "absolute" and "absolute" in self.space.dims["position_embedding_type"].choices:
                out = {**out, "position_embedding_type": "absolute"}
            else:
                raise AvatarError("cannot repair the configuration: shrinking it reaches no feasible configuration")
        return out

    def _excess(self, values: dict) -> float:
        """How far ``values`` (with valid heads) is over the budget and the cap, relatively; 0 when feasible."""
        cfg = StudentConfig(**values)
        over = max(0.0, 4 * parameter_count(cfg, self.c.num_inputs) / self.c.budget_bytes - 1)
        if self.c.max_gflops is not None:
            over += max(0.0, flops(cfg, self.c.num_inputs) / (self.c.max_gflops * 1e9) - 1)
        return over

    def _shrunk(self, values: dict, name: str) -> dict | None:
        d, v = self.space.dims[name], values[name]
        if v <= d.low:
            return None
        if name in ("vocab_size", "intermediate_size"):  # wide ranges: halve the distance to the floor
            smaller = d.low + ((v - d.low) // 2 // d.step) * d.step
        else:
            smaller = v - d.step
        try:
            return self._with_valid_heads({**values, name: smaller})
        except AvatarError:
            return None

    def _with_valid_heads(self, values: dict) -> dict:
        """Heads made to divide hidden (nearest allowed count); hidden moved to the nearest size that has any."""
        H = values["hidden_size"]
        for hidden in sorted((int(h) for h in self.space.dims["hidden_size"].values()), key=lambda h: (abs(h - H), h)):
            heads = self._nearest_heads(hidden, values["num_attention_heads"])
            if heads is not None:
                return {**values, "hidden_size": hidden, "num_attention_heads": heads}
        raise AvatarError("no hidden size in the space splits into valid heads")

    def _nearest_heads(self, H: int, heads: int) -> int | None:
        allowed = _heads_for(self.space, H, self.c)
        return min(allowed, key=lambda d: (abs(d - heads), d)) if allowed else None
