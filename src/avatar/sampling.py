"""Space-filling samples of feasible student configurations, for the effectiveness indicator.

Points are drawn uniformly on the grid, kept only when the SMT constraints hold (vectorised predicate), and
then chosen greedily to be far apart (farthest-point / maximin selection) in gene space: numeric dimensions
normalised to [0, 1], categorical ones counting 1 when they differ. Distances in raw units, as in the paper's
adaptive random sampling, would let vocabulary size swamp every other dimension.
"""

from __future__ import annotations

import numpy as np

from avatar.errors import AvatarError
from avatar.smt import Feasibility
from avatar.space import NAMES, CatDim, Space

POOL_PER_SAMPLE = 50  # feasible candidates drawn per sample wanted
MAX_DRAWS = 2_000_000  # grid points tried before giving up on a nearly empty feasible set


def distances(space: Space, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise gene distances (len(a), len(b)): Euclidean on numeric genes plus 1 per differing category
    (categorical genes are compared for equality only: their order means nothing)."""
    cat = np.array([isinstance(space.dims[n], CatDim) for n in NAMES])
    diff = a[:, None, :] - b[None, :, :]
    numeric = (diff[..., ~cat] ** 2).sum(axis=-1)
    categorical = (diff[..., cat] != 0).sum(axis=-1)
    return np.sqrt(numeric + categorical)


def feasible_pool(space: Space, feas: Feasibility, size: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``size`` distinct feasible grid points (as index rows), drawn uniformly."""
    lengths = np.array([len(space.dims[n]) for n in NAMES])
    found, drawn = [], 0
    while sum(len(f) for f in found) < size and drawn < MAX_DRAWS:
        batch = (rng.random((50_000, len(NAMES))) * lengths).astype(np.int64)
        drawn += len(batch)
        found.append(batch[feas.feasible_mask(batch)])
    pool = np.unique(np.concatenate(found), axis=0) if found else np.zeros((0, len(NAMES)), dtype=np.int64)
    return pool[rng.permutation(len(pool))[:size]]


def maximin(space: Space, pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy farthest-point selection of ``n`` rows of ``pool``, from a random first point."""
    genes = space.genes(pool)
    chosen = [int(rng.integers(len(pool)))]
    nearest = distances(space, genes, genes[chosen])[:, 0]
    while len(chosen) < min(n, len(pool)):
        nxt = int(nearest.argmax())
        chosen.append(nxt)
        nearest = np.minimum(nearest, distances(space, genes, genes[[nxt]])[:, 0])
    return pool[chosen]


def sample(space: Space, feas: Feasibility, n: int = 20, seed: int = 0) -> list[dict]:
    """``n`` feasible configurations spread over the feasible space (deterministic for a seed)."""
    if n < 1:
        raise AvatarError(f"the number of samples must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    pool = feasible_pool(space, feas, max(POOL_PER_SAMPLE * n, 1000), rng)
    if len(pool) < n:
        raise AvatarError(
            f"found only {len(pool)} feasible configurations in {MAX_DRAWS:,} draws, fewer than the {n} asked for: "
            "widen the budget or the space"
        )
    return [space.at(row) for row in maximin(space, pool, n, rng)]
