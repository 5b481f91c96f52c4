import numpy as np
import pytest

from avatar.cost import MB
from avatar.errors import AvatarError
from avatar.indicator import SURROGATES, Indicator, features
from avatar.sampling import sample
from avatar.smt import Constraints, Feasibility
from avatar.space import Space


def _truth(cfg):
    """A smooth made-up effectiveness: more layers and width help, huge vocabularies a little, dropout hurts."""
    return (0.5 + 0.02 * cfg["num_hidden_layers"] + 0.0004 * cfg["hidden_size"] + 0.000001 * cfg["vocab_size"]
            - 0.1 * cfg["hidden_dropout_prob"] + 0.01 * (cfg["tokenizer"] == "BPE"))


@pytest.fixture(scope="module")
def data():
    space = Space.paper()
    feas = Feasibility(space, Constraints(3 * MB, 1))
    train = sample(space, feas, n=20, seed=0)
    test = sample(space, feas, n=30, seed=1)
    return space, train, test


def test_features_are_scaled_and_one_hot(data):
    space, train, _ = data
    X = features(space, train)
    assert X.shape == (20, 8 + 2 + 4 + 4 + 3)  # 8 numeric dims, learning rate and batch size ordered, one-hot the rest
    assert X.min() >= 0 and X.max() <= 1


def test_wide_ranges_and_numeric_choices_are_ordered_on_a_log_scale():
    space = Space.paper()
    base = sample(space, Feasibility(space, Constraints(3 * MB, 1)), n=1, seed=0)[0]

    def column(name, values):  # the one feature column that moves with ``name``
        X = features(space, [{**base, name: v} for v in values])
        moved = np.flatnonzero(np.ptp(X, axis=0))
        assert len(moved) == 1
        return X[:, moved[0]]

    # learning rate: one ordered column, not three one-hot ones; 1e-4 a quarter of the way up, not 5 %
    np.testing.assert_allclose(column("learning_rate", (5e-5, 1e-4, 1e-3)), [0, np.log(2) / np.log(20), 1])
    # vocabulary (1000 to 50265): 7090, the geometric middle, halfway
    np.testing.assert_allclose(column("vocab_size", (1000, 7090, 50265)), [0, 0.5, 1], atol=1e-4)
    # dropout (0.1 to 0.5, less than a factor of ten) stays linear
    np.testing.assert_allclose(column("hidden_dropout_prob", (0.1, 0.3, 0.5)), [0, 0.5, 1])


def test_loocv_picks_a_surrogate_that_beats_the_mean_and_ranks_well(data):
    space, train, test = data
    ind = Indicator.fit(space, train, [_truth(c) for c in train], seed=0)
    assert ind.choice in SURROGATES and set(SURROGATES) <= set(ind.report)
    best = ind.report[ind.choice]
    assert best["loocv_mae"] == min(ind.report[n]["loocv_mae"] for n in SURROGATES)
    assert best["loocv_mae"] < ind.report["predict_mean_baseline"]["loocv_mae"]
    assert best["kendall_tau_p"] < 0.01  # its leave-one-out ranking is no chance one
    noise = Indicator.fit(space, train, list(np.random.default_rng(1).random(len(train))), seed=0)
    assert all(noise.report[n]["kendall_tau_p"] > 0.05 for n in SURROGATES)  # scores of pure noise: nothing ranks
    pred, _ = ind.predict(test)
    truth = np.array([_truth(c) for c in test])
    from scipy.stats import kendalltau

    assert kendalltau(truth, pred).statistic > 0.5


def test_save_load_gives_the_same_predictions(tmp_path, data):
    space, train, test = data
    ind = Indicator.fit(space, train, [_truth(c) for c in train], seed=0)
    ind.save(tmp_path / "ind.json")
    again = Indicator.load(tmp_path / "ind.json", space)
    assert again.choice == ind.choice and again.report == ind.report
    np.testing.assert_allclose(again.predict(test)[0], ind.predict(test)[0])
    with pytest.raises(AvatarError, match="another configuration space"):
        Indicator.load(tmp_path / "ind.json", space.override({"tokenizer": ["BPE"]}))


def test_too_few_samples():
    with pytest.raises(AvatarError, match="at least 3 scored samples"):
        Indicator.fit(Space.paper(), [], [])


def test_with_budget_levels_it_learns_from_every_sample_and_predicts_at_the_top(tmp_path, data):
    space, configs, _ = data
    fidelity = [1.0 if i % 3 == 0 else 0.0 for i in range(len(configs))]
    seen = [_truth(c) - 0.05 * (1 - f) for c, f in zip(configs, fidelity)]  # a small budget scores lower
    ind = Indicator.fit(space, configs, seen, seed=0, fidelity=fidelity)
    top_configs, top_scores = ind.top()
    assert top_configs == configs[::3] and top_scores == pytest.approx(seen[::3])
    low = [i for i, f in enumerate(fidelity) if f == 0.0]
    pred, _ = ind.predict([configs[i] for i in low])
    # predictions are made at the top level: above what those samples scored at the small budget, on average
    assert np.mean(pred) > np.mean([seen[i] for i in low])
    ind.save(tmp_path / "i.json")
    assert Indicator.load(tmp_path / "i.json", space).fidelity == fidelity
