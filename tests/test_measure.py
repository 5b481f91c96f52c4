import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

import avatar.measure as measure_mod
from avatar.cli import app
from avatar.errors import AvatarError
import numpy as np

from avatar.energy import CpuTimeEstimate
from avatar.measure import IDLE, Subject, energy_blocks, energy_per_example, load_subjects, measure, ratios, reference_lengths
from avatar.settings import MeasureConfig
from avatar.tasks import get_task
from avatar.trainer import Encoded

FAST = MeasureConfig(runs=4, warmup=1, throughput_examples=8, throughput_batch=4, energy_rounds=2, energy_seconds=0.01)


class FixedMeter:
    """0.5 J a block, whatever ran: only this process's work (no idle baseline)."""

    method = "estimate"
    counts_idle = False

    def start(self):
        pass

    def stop(self):
        return 0.5


@pytest.fixture
def model_dir(defect_classifier):
    return defect_classifier


def test_measure_reports_every_field(model_dir, defect_data):
    task = get_task("defect")
    data = task.load(defect_data)
    (subject,) = load_subjects([str(model_dir)], task, data.test, FAST, seed=0)
    (result,) = measure([subject], task, FAST, meter=FixedMeter())
    assert set(result["test"]) == {"accuracy", "precision", "recall", "f1", "roc_auc", "examples", "interval95",
                                   "baseline", "prediction_spread", "correct"}
    assert result["test"]["examples"] == len(data.test) == len(result["test"]["correct"])
    assert sum(result["test"]["correct"]) == round(result["test"]["accuracy"] * len(data.test))
    for name, (lo, hi) in result["test"]["interval95"].items():
        assert lo <= result["test"][name] <= hi
    labels = [ex.label for ex in data.test]
    assert result["test"]["baseline"]["accuracy"] == max(labels.count(0), labels.count(1)) / len(labels)
    assert 0 <= result["test"]["prediction_spread"] <= 0.5
    assert result["runtime"] == "pytorch" and result["size_basis"] == "fp32 weights"
    assert result["size_bytes"] == 4 * result["parameters"]  # fp32 weights, comparable with architectures
    assert result["disk_bytes"] == sum(p.stat().st_size for p in model_dir.iterdir())
    assert result["inputs"]["functions"] == FAST.runs and result["inputs"]["tokens_per_input"] > 2
    lat = result["latency_ms"]
    assert lat["runs"] == 4 and lat["batch_size"] == 1 and lat["threads"] >= 1 and 0 < lat["median"] <= lat["p90"]
    assert result["throughput"]["examples_per_second"] > 0
    e = result["energy"]
    assert e["method"] == "estimate" and e["resolved"] and e["blocks"] == 2 and e["block_seconds"] == 0.01
    assert e["joules_per_example"] == pytest.approx(0.5 / (e["examples"] / 2), rel=0.5)  # 0.5 J over each block's passes
    carbon = result["carbon"]
    assert carbon["grams_per_1000_examples"] == pytest.approx(e["kwh_per_1000_examples"] * carbon["g_per_kwh"])
    assert carbon["region"] == "world" and carbon["energy_method"] == "estimate"


def test_an_architecture_reads_each_function_at_a_real_tokenisations_length(monkeypatch, defect_data, model_dir):
    tiny_arch = dict(measure_mod.ARCHITECTURES["codebert-base"], hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    monkeypatch.setitem(measure_mod.ARCHITECTURES, "codebert-base", tiny_arch)
    task = get_task("defect")
    data = task.load(defect_data)
    from avatar.tasks import Example

    test = [Example(ex.id, ("\n".join([ex.texts[0]] * (1 + i % 3)),), ex.label) for i, ex in enumerate(data.test)]  # 1-3x as long
    cfg = replace(FAST, runs=12, architecture_tokens=50)
    arch, real = load_subjects(["arch:codebert-base", str(model_dir)], task, test, cfg, seed=0)  # the folder may come after
    assert arch.test is None and arch.disk_bytes is None and arch.inputs.ids == real.inputs.ids  # the same functions
    from avatar.modeling import load_classifier

    _, tokenizer = load_classifier(model_dir, task)
    expected = reference_lengths(tokenizer, test[:12], 50)
    got = [[len(t) for t in ex] for ex in arch.inputs.tokens]
    assert got == expected and len({n for (n,) in got}) > 1  # lengths follow the functions, capped
    uncapped = reference_lengths(tokenizer, test[:12], 10**6)
    assert any(n > 50 for (n,) in uncapped) and all(min(50, u) == g for (u,), (g,) in zip(uncapped, got))
    ref, other = measure([arch, real], task, cfg, meter=FixedMeter())
    assert ref["test"] is None and ref["inputs"]["tokenisation"].endswith("capped at 50")
    q = ratios(ref, other, "accuracy")
    assert q["size_x"] == pytest.approx(ref["size_bytes"] / other["size_bytes"]) and "score_difference" not in q
    assert q["equal"]["functions"] == 12 and q["equal"]["tokens_per_input"] == [ref["inputs"]["tokens_per_input"], other["inputs"]["tokens_per_input"]]
    with pytest.raises(AvatarError, match="unknown architecture 'gpt'"):
        load_subjects([str(model_dir), "arch:gpt"], task, data.test, cfg, seed=0)
    with pytest.raises(AvatarError, match="list a model folder"):
        load_subjects(["arch:codebert-base"], task, data.test, cfg, seed=0)
    (alone,) = load_subjects(["arch:codebert-base"], task, test, replace(cfg, length_tokenizer=str(model_dir)), seed=0)
    assert [[len(t) for t in ex] for ex in alone.inputs.tokens] == expected  # a named tokenizer, no model folder measured
    with pytest.raises(AvatarError, match="exceeds what codebert-base can read"):
        load_subjects([str(model_dir), "arch:codebert-base"], task, data.test, replace(cfg, architecture_tokens=600), seed=0)


class FakeClock:
    def __init__(self):
        self.wall = self.cpu = 0.0


def _fake_subject(name, clock, wall_per_pass, cpu_per_pass):
    def logits(data, batch_size):
        clock.wall += wall_per_pass * len(data)
        clock.cpu += cpu_per_pass * len(data)
        return np.zeros((len(data), 2), dtype=np.float32)

    inputs = Encoded(ids=["a", "b"], tokens=[[[0, 5, 2]], [[0, 6, 2]]], labels=np.array([0, 1]), pad_id=1)
    return Subject(name, "pytorch", logits, 10, 40, "fp32 weights", None, None, inputs, "its own")


def _sleep(clock):
    def sleep(seconds):
        clock.wall += seconds
    return sleep


def test_energy_blocks_last_a_fixed_wall_time_not_a_fixed_count_of_passes():
    clock = FakeClock()
    fast, slow = _fake_subject("fast", clock, 0.001, 0.001), _fake_subject("slow", clock, 0.02, 0.02)
    cfg = replace(FAST, energy_rounds=3, energy_seconds=0.5)
    blocks = energy_blocks([fast, slow], cfg, FixedMeter(), clock=lambda: clock.wall, sleep=_sleep(clock))
    assert blocks[IDLE] == []  # no idle baseline for a meter that counts only this process
    for k, per_pass in ((0, 0.001), (1, 0.02)):
        assert len(blocks[k]) == 3
        for _, passes, seconds in blocks[k]:
            assert 0.5 <= seconds < 0.5 + per_pass + 1e-9 and passes == pytest.approx(0.5 / per_pass, abs=1)


def test_the_estimated_energy_ratio_tracks_the_cpu_time_ratio():
    clock = FakeClock()
    # the light model takes 2 ms of wall time but only 1 ms of CPU per pass (it leaves a core idle); the heavy one 9 and 9
    light, heavy = _fake_subject("light", clock, 0.002, 0.001), _fake_subject("heavy", clock, 0.009, 0.009)
    meter = CpuTimeEstimate(watts=50.0, cpus=2, cpu_clock=lambda: clock.cpu)
    blocks = energy_blocks([light, heavy], replace(FAST, energy_rounds=3, energy_seconds=1.0), meter, clock=lambda: clock.wall)
    a, b = energy_per_example(blocks[0], blocks[IDLE]), energy_per_example(blocks[1], blocks[IDLE])
    assert a["resolved"] and b["resolved"] and a["idle_watts"] is None
    assert a["joules_per_example"] == pytest.approx(50.0 * 0.001 / 2)
    assert b["joules_per_example"] / a["joules_per_example"] == pytest.approx(9.0)  # CPU-time ratio, not the 4.5x of wall time


class RaplLike:
    """A package counter: the machine's idle power all the time, plus what the work adds (with a little noise)."""

    method = "rapl"
    counts_idle = True

    def __init__(self, clock, idle_w, noise):
        self.clock, self.idle_w, self.noise, self.k = clock, idle_w, noise, 0

    def _read(self):
        return self.idle_w * self.clock.wall + 30.0 * self.clock.cpu  # 30 W while computing

    def start(self):
        self._start = self._read()

    def stop(self):
        self.k += 1
        return self._read() - self._start + self.noise * (-1) ** self.k


def test_rapl_subtracts_an_idle_baseline_and_gives_no_ratio_it_cannot_resolve():
    clock = FakeClock()
    busy, idle_like = _fake_subject("busy", clock, 0.01, 0.01), _fake_subject("nearly idle", clock, 0.01, 0.0)
    meter = RaplLike(clock, idle_w=40.0, noise=0.05)
    blocks = energy_blocks([busy, idle_like], replace(FAST, energy_rounds=4, energy_seconds=1.0), meter,
                           clock=lambda: clock.wall, sleep=_sleep(clock))
    assert len(blocks[IDLE]) == 4
    a, b = energy_per_example(blocks[0], blocks[IDLE]), energy_per_example(blocks[1], blocks[IDLE])
    assert a["idle_watts"] == pytest.approx(40.0, rel=0.01)
    assert a["resolved"] and a["joules_per_example"] == pytest.approx(30.0 * 0.01, rel=0.05)  # the work, not the machine
    assert not b["resolved"]  # what it adds is within the idle blocks' noise
    res = {"size_bytes": 40, "size_basis": "fp32 weights", "latency_ms": {"median": 1.0, "threads": 2}, "test": None,
           "inputs": {"functions": 2, "tokens_per_input": 3.0}}
    q = ratios({**res, "energy": {**a, "method": "rapl"}}, {**res, "energy": {**b, "method": "rapl"}}, "accuracy")
    assert q["energy_x"] is None


def test_ratios():
    def result(size, ms, joules, f1):
        return {"size_bytes": size, "size_basis": "fp32 weights", "latency_ms": {"median": ms, "threads": 2},
                "energy": {"joules_per_example": joules, "method": "rapl", "resolved": True}, "test": {"f1": f1},
                "inputs": {"functions": 50, "tokens_per_input": 200.0}}

    q = ratios(result(100, 10.0, 4.0, 0.9), result(10, 2.0, 0.5, 0.85), "f1")
    assert (q["size_x"], q["latency_x"], q["energy_x"], q["energy_method"]) == (10.0, 5.0, 8.0, "rapl")
    assert q["score_difference"] == pytest.approx(-0.05)
    assert q["equal"] == {"functions": 50, "batch_size": 1, "threads": 2, "tokens_per_input": [200.0, 200.0]}


def test_the_exported_model_is_measured_through_the_runtime(exports, defect_data, model_dir):
    from avatar.runtime.model import read_manifest

    task = get_task("defect")
    data = task.load(defect_data)
    folder = exports["defect"]
    subjects = load_subjects([str(model_dir), f"onnx-fp32:{folder}", f"onnx-int8:{folder}"], task, data.test, FAST, seed=0)
    results = measure(subjects, task, FAST, meter=FixedMeter())
    sizes = read_manifest(folder)["sizes"]
    for r, precision in zip(results[1:], ("fp32", "int8")):
        assert r["runtime"] == f"onnxruntime {precision}" and r["size_bytes"] == sizes[precision]["bytes"]
        assert r["test"]["examples"] == len(data.test) and r["latency_ms"]["median"] > 0
    assert results[1]["inputs"]["functions"] == results[0]["inputs"]["functions"]
    with pytest.raises(AvatarError, match=r"is a defect model \(classes 0, 1\), not clone"):
        load_subjects([f"onnx-int8:{folder}"], get_task("clone"), data.test, FAST, seed=0)


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
