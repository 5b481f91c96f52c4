"""Energy meters behind one interface, each labelled with its method, and carbon from energy.

- ``rapl``: Intel/AMD RAPL package counters under /sys/class/powercap (measured; counters wrap). They count the
  whole package, so :mod:`avatar.measure` subtracts an idle baseline measured the same way.
- ``nvml``: an NVIDIA GPU's total-energy counter (measured; idle baseline subtracted likewise).
- ``estimate``: where no counter can be read, CodeCarbon's process model: power = the CPU's TDP x the process's
  share of the machine's CPU time, so energy = TDP x process CPU-seconds / logical CPUs. The CPU-seconds come
  from the process's own CPU clock (nanoseconds), not from CodeCarbon's once-a-second sampling, so blocks of a
  few seconds resolve. It is a model, not a measurement: it says how the CPU time of two models compares.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from avatar.errors import AvatarError

log = logging.getLogger(__name__)

POWERCAP = Path("/sys/class/powercap")
J_PER_KWH = 3.6e6


class EnergyMeter(Protocol):
    method: str  # "rapl" | "nvml" | "estimate": how the joules were obtained
    counts_idle: bool  # the counter includes what the machine draws at rest: subtract an idle baseline

    def start(self) -> None: ...

    def stop(self) -> float:
        """Joules used since ``start``."""
        ...


class RaplMeter:
    method = "rapl"
    counts_idle = True

    def __init__(self, root: Path = POWERCAP):
        # top-level zones only ("intel-rapl:0", not "intel-rapl:0:0"): sub-zones are already inside a package
        self.zones = [
            z for z in sorted(Path(root).glob("intel-rapl:*"))
            if z.name.count(":") == 1 and (z / "name").read_text().strip().startswith("package")
        ]
        if not self.zones:
            raise AvatarError("no RAPL package domains", root)
        self.ranges = [int((z / "max_energy_range_uj").read_text()) for z in self.zones]
        self._start: list[int] = []

    @staticmethod
    def available(root: Path = POWERCAP) -> bool:
        try:
            meter = RaplMeter(root)
            meter._read()
            return True
        except (AvatarError, OSError, ValueError):
            return False

    def _read(self) -> list[int]:
        return [int((z / "energy_uj").read_text()) for z in self.zones]

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> float:
        total_uj = 0
        for before, after, wrap in zip(self._start, self._read(), self.ranges):
            total_uj += after - before if after >= before else after + wrap - before  # the counter wrapped once
        return total_uj / 1e6


class NvmlMeter:
    method = "nvml"
    counts_idle = True

    def __init__(self, device: int = 0):
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(device)
        self._start = 0

    @staticmethod
    def available() -> bool:
        try:
            import pynvml

            pynvml.nvmlInit()
            return pynvml.nvmlDeviceGetCount() > 0
        except Exception:  # no library, no driver, no device: all mean "not here"
            return False

    def start(self) -> None:
        self._start = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)  # mJ

    def stop(self) -> float:
        return (self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) - self._start) / 1e3


def cpu_tdp_watts() -> float:
    """The CPU's thermal design power as CodeCarbon knows it (its CPU table, else its per-thread default)."""
    from codecarbon.core.cpu import TDP

    logging.getLogger("codecarbon").setLevel(logging.ERROR)  # it warns when it falls back to its default
    return float(TDP().tdp)


class CpuTimeEstimate:
    method = "estimate"
    counts_idle = False  # only this process's CPU time is counted: nothing to subtract
    model = "TDP x process CPU-seconds / logical CPUs (CodeCarbon's process model)"

    def __init__(self, watts: float | None = None, cpus: int | None = None, cpu_clock: Callable[[], float] = time.process_time):
        self.watts = cpu_tdp_watts() if watts is None else watts
        self.cpus = cpus or os.cpu_count() or 1
        self._clock = cpu_clock
        self._start = 0.0

    def start(self) -> None:
        self._start = self._clock()

    def stop(self) -> float:
        return self.watts * (self._clock() - self._start) / self.cpus


METERS = (RaplMeter, NvmlMeter, CpuTimeEstimate)  # every backend, most direct first


def pick_meter() -> EnergyMeter:
    """The most direct meter of CPU work this machine offers: RAPL if readable, else the CPU-time estimate
    (GPU work is metered by ``NvmlMeter``)."""
    if RaplMeter.available():
        return RaplMeter()
    return CpuTimeEstimate()


def _energy_mix() -> dict:
    import codecarbon

    path = Path(codecarbon.__file__).parent / "data" / "private_infra" / "global_energy_mix.json"
    return json.loads(path.read_text())


def carbon_intensity(country: str | None = None) -> dict:
    """Grams of CO2-equivalent per kWh for an ISO-3166 alpha-3 country, or the world mean when none is given.

    Figures come from CodeCarbon's packaged energy-mix table; the world mean weights each country by its
    electricity generation.
    """
    mix = _energy_mix()
    if country is None:
        rows = [r for r in mix.values() if r.get("carbon_intensity") is not None and r.get("total_TWh")]
        g = sum(r["carbon_intensity"] * r["total_TWh"] for r in rows) / sum(r["total_TWh"] for r in rows)
        years = sorted({r.get("year") for r in rows if r.get("year")})
        return {"region": "world", "g_per_kwh": round(g, 1), "source": f"CodeCarbon energy mix, generation-weighted mean of {len(rows)} countries ({years[-1] if years else 'n/a'})"}
    row = mix.get(country.upper())
    if row is None or row.get("carbon_intensity") is None:
        raise AvatarError(f"unknown country {country!r}: give an ISO 3166 alpha-3 code such as USA, FRA, DEU")
    return {"region": country.upper(), "g_per_kwh": round(float(row["carbon_intensity"]), 1), "source": f"CodeCarbon energy mix ({row.get('year', 'n/a')})"}
