import json

import pytest
from typer.testing import CliRunner

import avatar.measure as measure_mod
from avatar.cli import app
from avatar.errors import AvatarError
from avatar.measure import load_subject, measure, ratios
from avatar.settings import MeasureConfig
from avatar.tasks import get_task

FAST = MeasureConfig(runs=4, warmup=1, throughput_examples=8, throughput_batch=4, energy_rounds=1, energy_examples=2)


class CountingMeter:
    method = "rapl"

    def __init__(self):
        self.t = 0.0

    def start(self):
        pass

    def stop(self):
        self.t += 1.0
        return 0.5


@pytest.fixture
def model_dir(defect_classifier):
    return defect_classifier


def test_measure_reports_every_field(model_dir, defect_data):
    task = get_task("defect")
    data = task.load(defect_data)
    subject = load_subject(str(model_dir), task, data.test, data.test[:4])
    (result,) = measure([subject], task, FAST, meter=CountingMeter())
    assert set(result["test"]) == {"accuracy", "precision", "recall", "f1", "roc_auc", "examples", "interval95",
                                   "majority_baseline", "correct"}
    assert result["test"]["examples"] == len(data.test) == len(result["test"]["correct"])
    assert sum(result["test"]["correct"]) == round(result["test"]["accuracy"] * len(data.test))
    for name, (lo, hi) in result["test"]["interval95"].items():
        assert lo <= result["test"][name] <= hi
    labels = [ex.label for ex in data.test]
    assert result["test"]["majority_baseline"]["accuracy"] == max(labels.count(0), labels.count(1)) / len(labels)
    assert result["parameters"] == sum(p.numel() for p in subject.model.parameters())
    assert result["size_bytes"] == 4 * result["parameters"]  # fp32 weights, comparable with architectures
    assert result["disk_bytes"] == sum(p.stat().st_size for p in model_dir.iterdir())
    lat = result["latency_ms"]
    assert lat["runs"] == 4 and lat["batch_size"] == 1 and lat["threads"] >= 1 and 0 < lat["median"] <= lat["p90"]
    assert result["throughput"]["examples_per_second"] > 0
    assert result["energy"] == {"method": "rapl", "joules_per_example": 0.25, "kwh_per_1000_examples": 0.25 * 1000 / 3.6e6, "examples": 2}
    carbon = result["carbon"]
    assert carbon["grams_per_1000_examples"] == pytest.approx(result["energy"]["kwh_per_1000_examples"] * carbon["g_per_kwh"])
    assert carbon["region"] == "world" and carbon["energy_method"] == "rapl"


def test_architecture_only_model_has_costs_but_no_score(monkeypatch, defect_data, model_dir):
    tiny_arch = dict(measure_mod.ARCHITECTURES["codebert-base"], hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    monkeypatch.setitem(measure_mod.ARCHITECTURES, "codebert-base", tiny_arch)
    monkeypatch.setattr(measure_mod, "ARCH_TOKENS", 16)
    task = get_task("defect")
    data = task.load(defect_data)
    arch = load_subject("arch:codebert-base", task, data.test, data.test[:4])
    assert arch.test is None and arch.disk_bytes is None
    assert all(len(t) == 16 for ex in arch.inputs.tokens for t in ex)
    real = load_subject(str(model_dir), task, data.test, data.test[:4])
    ref, other = measure([arch, real], task, FAST, meter=CountingMeter())
    assert ref["test"] is None
    q = ratios(ref, other, "accuracy")
    assert q["size_x"] == pytest.approx(ref["size_bytes"] / other["size_bytes"]) and "score_difference" not in q
    with pytest.raises(AvatarError, match="unknown architecture 'gpt'"):
        load_subject("arch:gpt", task, data.test, data.test[:4])


def test_ratios():
    a = {"size_bytes": 100, "latency_ms": {"median": 10.0}, "energy": {"joules_per_example": 4.0, "method": "rapl"}, "test": {"f1": 0.9}}
    b = {"size_bytes": 10, "latency_ms": {"median": 2.0}, "energy": {"joules_per_example": 0.5, "method": "rapl"}, "test": {"f1": 0.85}}
    assert ratios(a, b, "f1") == {"size_x": 10.0, "latency_x": 5.0, "energy_x": 8.0, "energy_method": "rapl", "score_difference": pytest.approx(-0.05)}
    b["energy"]["joules_per_example"] = 0.0  # a counter too coarse to see the work
    assert ratios(a, b, "f1")["energy_x"] is None


def test_evaluate_and_compare_cli(model_dir, defect_data):
    runner = CliRunner()
    args = ["--data", str(defect_data), "--runs", "3", "--eval-limit", "10"]
    result = runner.invoke(app, ["evaluate", "--model", str(model_dir), *args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert {"test", "parameters", "size_bytes", "latency_ms", "throughput", "energy", "carbon"} <= set(doc)
    assert doc["energy"]["method"] in {"rapl", "nvml", "estimate"} and doc["test"]["examples"] == 10
    result = runner.invoke(app, ["compare", str(model_dir), str(model_dir), *args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert len(doc["results"]) == 2 and all(r["latency_ms"]["runs"] == 3 for r in doc["results"])  # not merged
    assert doc["ratios_vs_first"][0]["size_x"] == 1.0
    result = runner.invoke(app, ["compare", str(model_dir), str(model_dir), *args])
    assert result.exit_code == 0 and "1.0x smaller" in result.output and "g/kWh" in result.output
