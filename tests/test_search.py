import json
import os
from pathlib import Path

import numpy as np
import pytest

from avatar.cost import MB
from avatar.errors import AvatarError
from avatar.search import Objectives, choose, flops_objective, hypervolume, nsga2, paper_ga
from avatar.smt import Constraints, Feasibility
from avatar.space import Space

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
    result = nsga2(space, feas, obj, pop_size=20, generations=15, seed=1)
    assert result.configs and all(feas.is_feasible(c) for c in result.configs)
    F = result.F
    for i in range(len(F)):
        assert not any(np.all(F[j] <= F[i]) and np.any(F[j] < F[i]) for j in range(len(F)) if j != i)
    rows = json.loads(json.dumps(result.rows()))  # as written to pareto.json
    if os.environ.get("AVATAR_UPDATE_GOLDEN"):  # after an intended change: regenerate, review the diff, commit
        GOLDEN.write_text(json.dumps(rows, indent=1) + "\n")
    assert rows == json.loads(GOLDEN.read_text())
    again = nsga2(space, feas, obj, pop_size=20, generations=15, seed=1)
    assert again.rows() == result.rows()


def test_nsga2_hypervolume_at_least_paper_ga(problem):
    space, feas, obj = problem
    ours = nsga2(space, feas, obj, pop_size=20, generations=50, seed=1)
    theirs = paper_ga(space, feas, obj, seed=1)  # 20 x 50 evaluations, as the paper
    assert all(feas.is_feasible(c) for c in theirs.configs)
    both = np.vstack([ours.F, theirs.F])
    ideal, nadir = both.min(axis=0), both.max(axis=0)
    assert hypervolume(ours.F, ideal, nadir) >= hypervolume(theirs.F, ideal, nadir)


def test_choice_rules(problem):
    space, feas, obj = problem
    result = nsga2(space, feas, obj, pop_size=20, generations=10, seed=2)
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
