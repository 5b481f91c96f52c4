import numpy as np

import avatar.latency as latency_mod
from avatar.cost import MB
from avatar.latency import LatencyCache, LatencyModel, time_architecture
from avatar.sampling import sample
from avatar.smt import Constraints, Feasibility
from avatar.space import Space
from avatar.tasks import get_task

SMALL = {"num_hidden_layers": {"low": 1, "high": 3}, "hidden_size": {"low": 16, "high": 64, "step": 16},
         "intermediate_size": {"low": 16, "high": 128}, "max_sequence_length": {"low": 256, "high": 288, "step": 32}}


def _configs(n, seed=0):
    space = Space.paper().override(SMALL)
    return sample(space, Feasibility(space, Constraints(2 * MB, 1)), n=n, seed=seed)


def test_time_architecture_gives_a_positive_median():
    assert time_architecture(_configs(1)[0], get_task("defect"), runs=3, warmup=1) > 0


def test_cache_measures_each_architecture_once(monkeypatch):
    calls = []
    monkeypatch.setattr(latency_mod, "time_architecture", lambda v, t, runs: calls.append(1) or 1.0 + v["num_hidden_layers"])
    configs = _configs(4)
    first = LatencyCache().measure(configs, get_task("defect"))
    assert len(calls) == 4
    again = LatencyCache().measure(configs, get_task("defect"))  # a new process would read the same file
    assert again == first and len(calls) == 4


def test_model_fits_a_latency_that_follows_its_features():
    configs = _configs(12, seed=1)
    from avatar.cost import flops
    from avatar.student import StudentConfig

    # a CPU whose time goes to matrix products (FLOPs), attention scores (heads x length^2) and a per-layer overhead
    truth = [0.5 + 3.0 * flops(StudentConfig(**c), 1) / 1e9 + 0.2 * c["num_hidden_layers"]
             + 0.4 * c["num_hidden_layers"] * c["num_attention_heads"] * c["max_sequence_length"] ** 2 / 1e6 for c in configs]
    model = LatencyModel.fit(configs, truth, 1)
    assert model.report["measurements"] == 12 and model.report["loocv_mape"] < 0.05
    np.testing.assert_allclose(model.predict(configs), truth, rtol=0.05)
