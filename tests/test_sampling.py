import numpy as np
import pytest

from avatar.cost import MB
from avatar.errors import AvatarError
from avatar.sampling import distances, feasible_pool, sample
from avatar.smt import Constraints, Feasibility
from avatar.space import NAMES, Space


@pytest.fixture(scope="module")
def setting():
    space = Space.paper()
    return space, Feasibility(space, Constraints(3 * MB, 1))


def _index(space, values):
    return np.array([[list(space.dims[n].values()).index(v[n]) for n in NAMES] for v in values])


def test_samples_are_feasible_distinct_and_deterministic(setting):
    space, feas = setting
    a = sample(space, feas, n=20, seed=3)
    assert len(a) == 20 and all(feas.is_feasible(v) for v in a)
    assert len({tuple(v.values()) for v in a}) == 20
    assert sample(space, feas, n=20, seed=3) == a
    assert sample(space, feas, n=20, seed=4) != a


def test_mask_agrees_with_the_scalar_predicate(setting):
    space, feas = setting
    rng = np.random.default_rng(0)
    lengths = np.array([len(space.dims[n]) for n in NAMES])
    rows = (rng.random((3000, 13)) * lengths).astype(np.int64)
    mask = feas.feasible_mask(rows)
    assert mask.any() and not mask.all()

    assert [feas.is_feasible(space.at(r)) for r in rows] == mask.tolist()


def test_spreads_out_better_than_uniform_feasible_draws(setting):
    space, feas = setting
    wins = 0
    for seed in range(5):
        chosen = space.genes(_index(space, sample(space, feas, n=20, seed=seed)))
        uniform = space.genes(feasible_pool(space, feas, 20, np.random.default_rng(100 + seed)))

        def min_gap(g):
            d = distances(space, g, g)
            return d[~np.eye(len(g), dtype=bool)].min()

        wins += min_gap(chosen) > min_gap(uniform)
    assert wins == 5


def test_empty_feasible_set_is_a_clear_error():
    space = Space.paper().override({"vocab_size": {"low": 50000, "high": 50265}})
    tight = Feasibility(space, Constraints(int(0.5 * MB), 1))
    with pytest.raises(AvatarError, match="found only 0 feasible configurations"):
        sample(space, tight, n=5)
