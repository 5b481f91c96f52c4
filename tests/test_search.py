import json
import os
from pathlib import Path

import numpy as np
import pytest

from avatar.cost import MB
from avatar.errors import AvatarError
from avatar.search import (
    ALGORITHMS, Nsga2, Objectives, PaperGA, choose, flops_objective, hypervolume, objective_names, objectives_of_rows, search,
)
from avatar.smt import Constraints, Feasibility
from avatar.space import NAMES, Space

GOLDEN = Path(__file__).parent / "golden" / "pareto_tiny.json"
TINY = {
    "vocab_size": {"low": 1000, "high": 4000, "step": 500},
    "num_hidden_layers": {"low": 1, "high": 4},
    "hidden_size": {"low": 16, "high": 128, "step": 16},
    "intermediate_size": {"low": 32, "high": 512, "step": 32},
    "num_attention_heads": {"low": 1, "high": 4},
    "max_sequence_length": {"low": 256, "high": 320, "step": 32},
    "hidden_dropout_prob": {"low": 0.1, "high": 0.2, "step": 0.1},
    "attention_probs_dropout_prob": {"low": 0.1, "high": 0.1, "step": 0.1},
    "hidden_act": ["gelu", "relu"],
    "tokenizer": ["BPE", "WordPiece"],
    "learning_rate": [1e-3],
    "batch_size": [32],
}


def fake_effectiveness(configs):
    """A fixed surrogate: deeper, wider, bigger vocabularies help with diminishing returns; BPE helps a bit."""
    s = np.array([
        0.5 + 0.1 * np.log1p(c["num_hidden_layers"]) + 0.05 * np.log(c["hidden_size"] / 16) + 0.02 * np.log(c["vocab_size"] / 1000)
        + 0.01 * (c["tokenizer"] == "BPE") - 0.05 * c["hidden_dropout_prob"] + 0.01 * np.log(c["intermediate_size"] / 32)
        for c in configs
    ])
    return s, np.full(len(configs), 0.01)


@pytest.fixture(scope="module")
def problem():
    space = Space.paper().override(TINY)
    feas = Feasibility(space, Constraints(int(0.6 * MB), 1))
    return space, feas, Objectives(fake_effectiveness, flops_objective(1), "gflops", 1)


def test_nsga2_front_is_feasible_non_dominated_and_golden(problem):
    space, feas, obj = problem
    result = search(space, feas, obj, Nsga2(population=20, generations=15), seed=1)
    assert result.configs and all(feas.is_feasible(c) for c in result.configs)
    F = result.F
    for i in range(len(F)):
        assert not any(np.all(F[j] <= F[i]) and np.any(F[j] < F[i]) for j in range(len(F)) if j != i)
    rows = json.loads(json.dumps(result.rows()))  # as written to pareto.json
    if os.environ.get("AVATAR_UPDATE_GOLDEN"):  # after an intended change: regenerate, review the diff, commit
        GOLDEN.write_text(json.dumps(rows, indent=1) + "\n")
    # the same configurations (discrete: exactly) with the same objectives (floats: to a tolerance that absorbs
    # the last-digit differences of BLAS builds, never a changed search)
    golden = json.loads(GOLDEN.read_text())
    by_config = lambda rs: sorted(rs, key=lambda r: json.dumps([r[n] for n in NAMES]))  # noqa: E731
    assert len(rows) == len(golden)
    for got, want in zip(by_config(rows), by_config(golden)):
        assert {n: got[n] for n in NAMES} == {n: want[n] for n in NAMES}
        for name in objective_names("gflops"):
            assert got[name] == pytest.approx(want[name], rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_algorithm_gives_a_feasible_non_dominated_deterministic_front(problem, name):
    space, feas, obj = problem
    algorithm = ALGORITHMS[name](population=12, generations=6)
    result = search(space, feas, obj, algorithm, seed=3)
    assert result.configs and all(feas.is_feasible(c) for c in result.configs)
    F = result.F
    assert F.shape == (len(result.configs), 3)
    for i in range(len(F)):
        assert not any(np.all(F[j] <= F[i]) and np.any(F[j] < F[i]) for j in range(len(F)) if j != i)
    assert result.evaluations >= 12
    rows = result.rows()
    assert np.allclose(objectives_of_rows(rows, "gflops"), F)  # the row layout reads back as the objectives
    assert search(space, feas, obj, algorithm, seed=3).rows() == rows


def test_nsga2_hypervolume_at_least_paper_ga(problem):
    space, feas, obj = problem
    ours = search(space, feas, obj, Nsga2(population=20, generations=50), seed=1)
    theirs = search(space, feas, obj, PaperGA(), seed=1)  # 20 x 50 evaluations, as the paper
    assert all(feas.is_feasible(c) for c in theirs.configs)
    both = np.vstack([ours.F, theirs.F])
    ideal, nadir = both.min(axis=0), both.max(axis=0)
    assert hypervolume(ours.F, ideal, nadir) >= hypervolume(theirs.F, ideal, nadir)


def test_choice_rules(problem):
    space, feas, obj = problem
    result = search(space, feas, obj, Nsga2(population=20, generations=10), seed=2)
    F = result.F
    best = choose(result.F)
    assert F[best, 0] == F[:, 0].min()
    assert F[choose(result.F, "fastest"), 1] == F[:, 1].min()
    assert F[choose(result.F, "smallest"), 2] == F[:, 2].min()
    span = np.ptp(F, axis=0)
    distance = np.linalg.norm((F - F.min(axis=0)) / np.where(span > 0, span, 1), axis=1)
    assert choose(result.F, "knee") == int(distance.argmin())
    with pytest.raises(AvatarError, match="unknown preference"):
        choose(result.F, "cheapest")


def test_measured_samples_are_candidates_and_the_only_ones_when_the_surrogate_is_no_better_than_the_mean(problem):
    from avatar.search import with_measured

    space, feas, obj = problem
    result = search(space, feas, obj, Nsga2(population=12, generations=4), seed=1)
    best_predicted = float(-result.F[:, 0].min())
    # a distilled sample that measured better than anything predicted, one that measured worse, and one the search
    # also predicted (its measured score replaces the prediction)
    good, bad = dict(result.configs[-1]), dict(result.configs[0])
    samples = [good, bad]
    merged = with_measured(result, samples, [best_predicted + 0.1, 0.0], obj)
    rows = merged.rows()
    assert {r["source"] for r in rows} == {"predicted", "measured"}
    top = rows[choose(objectives_of_rows(rows, "gflops"), "effectiveness")]
    assert top["source"] == "measured" and top["predicted_effectiveness"] == pytest.approx(best_predicted + 0.1)
    assert top["predicted_std"] is None
    keys = [tuple(r[n] for n in NAMES) for r in rows]
    assert len(keys) == len(set(keys))  # the sample the search also found appears once
    only = with_measured(result, samples, [0.6, 0.55], obj, use_predictions=False).rows()
    assert {r["source"] for r in only} == {"measured"} and len(only) <= 2
    fallback = only[choose(objectives_of_rows(only, "gflops"), "effectiveness")]  # the best measured sample is the choice
    assert {n: fallback[n] for n in NAMES} == {n: good[n] for n in NAMES} and fallback["predicted_effectiveness"] == pytest.approx(0.6)
    assert rows_are_non_dominated(merged.F)


def rows_are_non_dominated(F):
    return all(not any(np.all(F[j] <= F[i]) and np.any(F[j] < F[i]) for j in range(len(F)) if j != i) for i in range(len(F)))
