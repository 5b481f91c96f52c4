import math
import sys
import types

import pytest


from avatar.energy import METERS, CpuTimeEstimate, NvmlMeter, RaplMeter, carbon_intensity, cpu_tdp_watts, pick_meter
from avatar.errors import AvatarError


def _zone(root, name, label, energy, wrap=1000):
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text(label + "\n")
    (zone / "energy_uj").write_text(f"{energy}\n")
    (zone / "max_energy_range_uj").write_text(f"{wrap}\n")
    return zone


def test_rapl_sums_package_domains_and_handles_wrap(tmp_path):
    pkg0 = _zone(tmp_path, "intel-rapl:0", "package-0", 900)
    pkg1 = _zone(tmp_path, "intel-rapl:1", "package-1", 100)
    _zone(tmp_path, "intel-rapl:0:0", "core", 5)  # sub-zone: already inside package-0
    _zone(tmp_path, "intel-rapl:2", "psys", 5)  # platform domain: not a package
    assert RaplMeter.available(tmp_path)
    meter = RaplMeter(tmp_path)
    meter.start()
    (pkg0 / "energy_uj").write_text("150\n")  # wrapped: 900 -> 1000 -> 150, i.e. 250 uJ
    (pkg1 / "energy_uj").write_text("400\n")  # 300 uJ
    assert meter.stop() == pytest.approx(550e-6)


def test_rapl_absent(tmp_path):
    assert not RaplMeter.available(tmp_path)
    _zone(tmp_path, "intel-rapl:0", "dram", 1)
    assert not RaplMeter.available(tmp_path)


def test_nvml_meter_reads_millijoules(monkeypatch):
    readings = iter([1000, 4500])
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: "gpu0",
        nvmlDeviceGetTotalEnergyConsumption=lambda h: next(readings),
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert NvmlMeter.available()
    meter = NvmlMeter()
    meter.start()
    assert meter.stop() == pytest.approx(3.5)
    assert pick_meter().method != "nvml"  # NVML meters GPU work only, never the CPU's


def test_the_estimate_is_tdp_times_cpu_seconds_over_cpus():
    clock = iter([10.0, 10.5, 20.0, 23.0])  # CPU-seconds: 0.5 in the first block, 3.0 in the second
    meter = CpuTimeEstimate(watts=80.0, cpus=4, cpu_clock=lambda: next(clock))
    meter.start()
    assert meter.stop() == pytest.approx(80.0 * 0.5 / 4)
    meter.start()
    assert meter.stop() == pytest.approx(80.0 * 3.0 / 4)
    assert not meter.counts_idle and 0 < cpu_tdp_watts() < 2000


def test_carbon_intensity():
    world = carbon_intensity()
    assert world["region"] == "world" and 200 < world["g_per_kwh"] < 800
    fra = carbon_intensity("fra")
    assert fra["region"] == "FRA" and fra["g_per_kwh"] < world["g_per_kwh"]
    with pytest.raises(AvatarError, match="unknown country 'XX'"):
        carbon_intensity("XX")


def _rapl(tmp_path, monkeypatch):
    _zone(tmp_path, "intel-rapl:0", "package-0", 0, wrap=10**12)
    readings = iter(range(0, 10**9, 250_000))  # each read a quarter joule later
    monkeypatch.setattr(RaplMeter, "_read", lambda self: [next(readings)])
    return RaplMeter(tmp_path)


def _nvml(tmp_path, monkeypatch):
    readings = iter(range(0, 10**9, 700))  # mJ, rising
    fake = types.SimpleNamespace(nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 1, nvmlDeviceGetHandleByIndex=lambda i: "gpu0",
                                 nvmlDeviceGetTotalEnergyConsumption=lambda h: next(readings))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return NvmlMeter()


CONTRACT = {RaplMeter: _rapl, NvmlMeter: _nvml, CpuTimeEstimate: lambda tmp_path, monkeypatch: CpuTimeEstimate()}


def test_every_meter_backend_has_a_contract_case():
    assert set(CONTRACT) == set(METERS)


@pytest.mark.parametrize("backend", METERS, ids=lambda m: m.method)
def test_meter_contract(backend, tmp_path, monkeypatch):
    """Every backend: labelled with its method, and start/stop gives finite, non-negative joules, again and again."""
    meter = CONTRACT[backend](tmp_path, monkeypatch)
    assert meter.method in ("rapl", "nvml", "estimate") and meter.method == backend.method
    for _ in range(2):
        meter.start()
        sum(range(100_000))
        joules = meter.stop()
        assert isinstance(joules, float) and math.isfinite(joules) and joules >= 0
