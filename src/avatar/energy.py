"""Energy meters behind one interface, each labelled with its method, and carbon from energy.

- ``rapl``: Intel/AMD RAPL package counters under /sys/class/powercap (measured; counters wrap).
- ``nvml``: an NVIDIA GPU's total-energy counter (measured).
- ``estimate``: CodeCarbon's offline estimate from CPU model and load, where no counter can be read.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Protocol

from avatar.errors import AvatarError

log = logging.getLogger(__name__)

POWERCAP = Path("/sys/class/powercap")
J_PER_KWH = 3.6e6


class EnergyMeter(Protocol):
    method: str  # "rapl" | "nvml" | "estimate": how the joules were obtained

    def start(self) -> None: ...

    def stop(self) -> float:
        """Joules used since ``start``."""
        ...


class RaplMeter:
    method = "rapl"

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


class CodeCarbonEstimate:
    method = "estimate"

    def __init__(self) -> None:
        self._tracker = None

    def start(self) -> None:
        from codecarbon import OfflineEmissionsTracker

        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        self._tracker = OfflineEmissionsTracker(
            country_iso_code="USA",  # only its own emission figure depends on this; Avatar computes carbon itself
            output_methods=[],  # write no CSV; Avatar reports the figure itself
            log_level="error",
            tracking_mode="process",
            measure_power_secs=1,
        )
        self._tracker.start()

    def stop(self) -> float:
        self._tracker.stop()
        data = self._tracker.final_emissions_data
        kwh = getattr(data, "energy_consumed", None)
        # CodeCarbon logs its failures and carries on, so check what came back instead of trusting it
        if kwh is None or not math.isfinite(kwh) or kwh <= 0:
            raise AvatarError(f"CodeCarbon returned no usable energy figure ({kwh!r})")
        return float(kwh) * J_PER_KWH


METERS = (RaplMeter, NvmlMeter, CodeCarbonEstimate)  # every backend, most direct first


def pick_meter(gpu: bool = False) -> EnergyMeter:
    """The most direct meter this machine offers: a hardware counter if any, else CodeCarbon's estimate."""
    if gpu and NvmlMeter.available():
        return NvmlMeter()
    if RaplMeter.available():
        return RaplMeter()
    return CodeCarbonEstimate()


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
