"""Rich tables and lines the CLI prints: presentation only, no computation."""

from __future__ import annotations

from rich.table import Table


def metrics_table(title: str, rows: dict[str, dict]) -> Table:
    """Scores by split: accuracy, precision, recall, F1 (two classes) or their macro averages (more), each with its
    95 % interval where the split has them, and a row for the constant-prediction baseline of each split that gives one."""
    names = [k for k, v in next(iter(rows.values())).items() if isinstance(v, float) and k not in ("roc_auc", "prediction_spread")]
    table = Table(title=title)
    table.add_column("split")
    for name in names:
        table.add_column(name.replace("_", "-"), justify="right")

    def cell(m: dict, k: str) -> str:
        lo_hi = m.get("interval95", {}).get(k)
        return f"{m[k]:.4f}" + (f" [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else "")

    for split, m in rows.items():
        table.add_row(split, *(cell(m, k) for k in names))
    for split, m in rows.items():
        if "baseline" in m:
            table.add_row(f"{split}: constant baseline", *(f"{m['baseline'][k]:.4f}" if k in m["baseline"] else "-" for k in names))
    if any("interval95" in m for m in rows.values()):
        table.caption = "[95 % bootstrap interval]; baseline: the best constant prediction (majority class, or always positive for F1)"
    return table


def energy_cell(r: dict) -> str:
    e = r["energy"]
    return f"{e['joules_per_example']:.4g} ({e['method']})" if e.get("resolved", True) else f"unresolved ({e['method']})"


def results_table(results: list[dict], main_metric: str) -> Table:
    table = Table(title="measurements")
    for col in ("model", f"{main_metric} [95 % interval]", "constant baseline", "params", "size MB", "tokens/input", "latency ms (p50/p90)", "ex/s", "J/example", "gCO2e/1k"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        t = r["test"]
        lo_hi = None if t is None else t.get("interval95", {}).get(main_metric)
        score = "n/a (random weights)" if t is None else f"{t[main_metric]:.4f}" + (f" [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else "")
        floor = "-" if t is None or main_metric not in t.get("baseline", {}) else f"{t['baseline'][main_metric]:.4f}"
        table.add_row(
            r["model"], score, floor, "-" if r["parameters"] is None else f"{r['parameters']:,}", f"{r['size_mb']:.2f}",
            f"{r['inputs']['tokens_per_input']:.0f}",
            f"{r['latency_ms']['median']:.2f} / {r['latency_ms']['p90']:.2f}",
            f"{r['throughput']['examples_per_second']:.1f}",
            energy_cell(r),
            f"{r['carbon']['grams_per_1000_examples']:.4f}" if r["energy"].get("resolved", True) else "unresolved",
        )
    return table


def times(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.1f}x"


def energy_method(r: dict) -> str:
    """How the energy figures were obtained, in words."""
    e = r["energy"]
    how = e.get("model") or (f"idle baseline of {e['idle_watts']:.2f} W subtracted" if e.get("idle_watts") is not None else "counter")
    return f"{e['method']} ({how}), {e.get('blocks', '?')} interleaved blocks of {e.get('block_seconds', '?')} s per model"


def footer(results: list[dict]) -> str:
    r = results[0]
    return (
        f"{r['latency_ms']['threads']} threads; latency over {r['latency_ms']['runs']} interleaved runs; energy: {energy_method(r)}; "
        f"carbon at {r['carbon']['g_per_kwh']} g/kWh ({r['carbon']['region']}: {r['carbon']['source']})"
    )


def space_table(result: dict, task: str, budget_mb: float) -> Table:
    table = Table(title=f"feasible student space for {task} within {budget_mb:g} MB")
    for col in ("dimension", "space", "feasible", "pruned"):
        table.add_column(col, justify="left" if col != "pruned" else "right")
    for name, d in result["dimensions"].items():
        s = d["space"]
        rng = ", ".join(map(str, s["choices"])) if s["kind"] == "categorical" else f"{s['low']}..{s['high']} step {s['step']}"
        feas = ", ".join(map(str, d["feasible"])) if s["kind"] == "categorical" else f"{d['feasible'][0]}..{d['feasible'][1]}"
        table.add_row(name, rng, feas, f"{100 * d['pruned_fraction']:.1f} %")
    return table


def space_summary(result: dict) -> str:
    c = result["configurations"]
    return (
        f"{c['feasible']:,} of {c['total']:,} configurations feasible ({100 * c['feasible_fraction']:.4f} %); "
        f"{result['splits']} linear splits, {result['z3_checks']} z3 checks, {result['wall_seconds']:.2f} s"
    )
