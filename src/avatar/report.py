"""``RUN/report.md`` and its PNG plots, made only from the artefacts of a run directory.

Sections appear for the stages a run has: a search-only run (``avatar search``) gets the space, indicator
and Pareto sections; a full ``avatar compress`` run also gets the headline comparison. Every energy figure
carries its method label (rapl, nvml or estimate).
"""

from __future__ import annotations

import json
from pathlib import Path

from avatar._io import write_text_atomic
from avatar.cost import MB
from avatar.errors import AvatarError
from avatar.stats import BASELINE_RULE

ORDER = ("space", "teacher", "soft_labels", "indicator", "latency", "pareto", "choose", "student", "export", "measure")
PLOTS = {"pareto": "pareto.png", "comparison": "comparison.png", "space": "space.png", "indicator": "indicator.png"}


def _read(run: Path, name: str) -> dict | None:
    try:
        return json.loads((run / name).read_text())
    except (OSError, ValueError):
        return None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    tmp.replace(path)


def headline(metrics: dict) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of the teacher-vs-student table (also printed by ``avatar compress``)."""
    from avatar._render import energy_cell

    main = metrics["main_metric"]
    results = metrics["results"]
    columns = ["", *(r["role"] if r["test"] is not None else f"{r['role']} (random weights)" for r in results)]

    def row(label: str, fn) -> list[str]:
        return [label, *(fn(r) for r in results)]

    def scored(metric: str):
        def cell(r: dict) -> str:
            if r["test"] is None:
                return "n/a"
            lo_hi = r["test"].get("interval95", {}).get(metric)
            return f"{r['test'][metric]:.4f}" + (f" [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else "")
        return cell

    def floor(metric: str):
        return lambda r: "n/a" if r["test"] is None or metric not in r["test"]["baseline"] else f"{r['test']['baseline'][metric]:.4f}"

    # the main metric first, then the others the test scores carry intervals for (F1, ROC AUC), each with its baseline
    scored_by = next((r["test"] for r in results if r["test"] is not None), {})
    metrics_shown = [main, *(k for k in scored_by.get("interval95", {}) if k != main)]
    n = results[0]["inputs"]["functions"]
    rows = [
        *(line for m in metrics_shown for line in (row(f"test {m} [95 % interval]", scored(m)),
                                                    row(f"{BASELINE_RULE[m]} baseline {m}", floor(m)))),
        row("parameters", lambda r: "-" if r["parameters"] is None else f"{r['parameters']:,}"),
        row("size MB (fp32 weights; ONNX: its files)", lambda r: f"{r['size_mb']:.2f}"),
        row(f"tokens per input (mean over the same {n} test functions)", lambda r: f"{r['inputs']['tokens_per_input']:.0f}"),
        row("latency ms p50 (batch 1)", lambda r: f"{r['latency_ms']['median']:.2f}"),
        row(f"examples/s (batch {results[0]['throughput']['batch_size']})", lambda r: f"{r['throughput']['examples_per_second']:.1f}"),
        row("energy J/example", energy_cell),
        row("gCO2e / 1000 examples", lambda r: f"{r['carbon']['grams_per_1000_examples']:.4g} ({r['energy']['method']})"
            if r["energy"].get("resolved", True) else "unresolved"),
    ]
    placed = next((r["accelerator"] for r in results if "accelerator" in r), None)
    if placed is not None:  # trained on an accelerator: its latency too, beside the CPU's (the deployment target's)
        rows.append(row(f"extra: latency ms p50 on {placed['device']} ({placed['precision']}, batch 1)",
                        lambda r: f"{r['accelerator']['latency_ms']['median']:.2f}" if "accelerator" in r else "-"))
    return columns, rows


def ratio_sentence(q: dict) -> str:
    """How many times smaller, faster and less energy-hungry, from :func:`avatar.measure.ratios`: the one wording,
    with what was held equal."""
    from avatar._render import times as x

    basis = q.get("size_basis", ["fp32 weights"] * 2)
    size = f"{x(q['size_x'])} smaller ({basis[0]})" if basis[0] == basis[1] else f"{x(q['size_x'])} smaller ({basis[1]} vs {basis[0]})"
    energy = (f"{x(q['energy_x'])} less energy ({q['energy_method']})" if q["energy_x"] is not None
              else f"energy difference not resolved by the {q['energy_method']} method")
    text = f"{size}, {x(q['latency_x'])} faster, {energy}"
    if "equal" in q:
        e = q["equal"]
        a, b = e["tokens_per_input"]
        text += (f" (at equal input: the same {e['functions']} test functions, batch {e['batch_size']}, {e['threads']} threads; "
                 f"{a:.0f} vs {b:.0f} tokens per input)")
    return text


def difference_words(q: dict, metric: str) -> str:
    """The score difference of :func:`avatar.measure.ratios`, with McNemar's p where both scored the same test
    examples ("" where a model had no score)."""
    if "score_difference" not in q:
        return ""
    words = f"{metric} {q['score_difference']:+.4f}"
    if "mcnemar" in q:  # whether the two err on different examples more than chance would
        words += f" (McNemar p = {q['mcnemar']['p_value']:.3g} on the same test examples)"
    return words


def ratio_lines(metrics: dict) -> list[str]:
    """Student vs teacher and vs each reference architecture, then a plain line for any model that learned nothing."""
    lines = []
    teacher = [("the teacher", metrics["student_vs_teacher"])] if "student_vs_teacher" in metrics else []
    for ref, q in [*teacher, *metrics["student_vs_architectures"].items()]:
        diff = difference_words(q, metrics["main_metric"])
        lines.append(f"student vs {ref}: {ratio_sentence(q)}" + (f"; {diff}" if diff else ""))
    return lines + nothing_lines(metrics)


def decision_lines(manifest_or_result: dict) -> list[str]:
    """Per precision of an export: its threshold, how it was chosen, precision/recall at it; and a plain line when
    the exported model learned nothing. Reads an export manifest or the export stage's result alike."""
    lines = []
    for p, d in manifest_or_result["decisions"].items():
        if "validation" not in d:  # no class means a finding: nothing is thresholded
            lines.append(f"{p}: {d['rule']}")
            continue
        v, t = d["validation"], d["test"]
        lines.append(f"{p} threshold {d['threshold']:.4g} ({d['rule']}): precision {v['precision']:.3f}, recall {v['recall']:.3f} "
                     f"on validation; precision {t['precision']:.3f}, recall {t['recall']:.3f} on test")
        if d.get("learned_nothing"):
            lines.append(f"The exported {p} model {d['learned_nothing']}.")
    return lines


def nothing_lines(metrics: dict) -> list[str]:
    """"The student has learned nothing ...": one line for each scored model whose test results show no learning."""
    from avatar.stats import learned_nothing

    return [f"The {r['role']} {why}." for r in metrics["results"]
            if r["test"] is not None and (why := learned_nothing(r["test"], metrics["main_metric"]))]


def _md_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *("| " + " | ".join(r) + " |" for r in rows)]


def _plot_pareto(plt, pareto: dict, choice: dict | None, path: Path) -> None:
    rows = pareto["rows"]
    speed = pareto["objectives"][1]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    points = ax.scatter([r[speed] for r in rows], [r["predicted_effectiveness"] for r in rows], c=[r["size_mb"] for r in rows],
                        cmap="viridis", s=36, edgecolors="k", linewidths=0.3)
    fig.colorbar(points, ax=ax, label="size (MB)")
    if choice is not None:
        ax.scatter([choice["row"][speed]], [choice["row"]["predicted_effectiveness"]], marker="*", s=320, c="red",
                   edgecolors="k", label=f"chosen ({choice['prefer']})", zorder=3)
        ax.legend(loc="lower right")
    ax.set_xlabel("predicted latency (ms, batch 1, this CPU)" if speed == "latency_ms" else "GFLOPs per example")
    ax.set_ylabel("predicted effectiveness (short-budget validation score)")
    ax.set_title(f"Pareto set: {len(rows)} configurations ({pareto.get('algorithm', 'nsga2')})")
    _save(fig, path)
    plt.close(fig)


def _plot_comparison(plt, metrics: dict, path: Path) -> None:
    results = metrics["results"]
    names = [r["role"] for r in results]
    colours = ["#4c72b0" if r["role"] == "teacher" else "#dd8452" if r["role"].startswith("student") else "#999999" for r in results]
    panels = [
        ("size (MB, fp32)", [r["size_mb"] for r in results], True),
        ("latency (ms, batch 1)", [r["latency_ms"]["median"] for r in results], True),
        (f"energy (J/example, {results[0]['energy']['method']})", [r["energy"]["joules_per_example"] for r in results], True),
        (f"test {metrics['main_metric']}", [0.0 if r["test"] is None else r["test"][metrics["main_metric"]] for r in results], False),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
    for ax, (title, values, log) in zip(axes, panels):
        ax.bar(names, values, color=colours)
        if log and all(v > 0 for v in values):
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    if any(r["test"] is None for r in results):
        axes[3].text(0.5, -0.38, "random-weight architectures have no score", transform=axes[3].transAxes, ha="center", fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _plot_space(plt, space: dict, path: Path) -> None:
    numeric = {n: d for n, d in space["dimensions"].items() if d["space"]["kind"] != "categorical"}
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(numeric) + 1.2))
    for i, (name, d) in enumerate(numeric.items()):
        lo, hi = d["space"]["low"], d["space"]["high"]
        span = (hi - lo) or 1
        ax.barh(i, 1, color="#dddddd")
        if d["feasible"]:
            a, b = d["feasible"]
            ax.barh(i, max((b - a) / span, 0.005), left=(a - lo) / span, color="#55a868")
            ax.text(1.02, i, f"{a:g}..{b:g} of {lo:g}..{hi:g}", va="center", fontsize=8)
    ax.set_yticks(range(len(numeric)), list(numeric), fontsize=8)
    ax.set_xlim(0, 1.6)
    ax.set_xticks([])
    c = space["configurations"]
    ax.set_title(f"SMT: feasible ranges within {space['budget_mb']:g} MB ({100 * c['feasible_fraction']:.3g} % of "
                 f"{c['total']:.3g} configurations)", fontsize=10)
    _save(fig, path)
    plt.close(fig)


def _plot_indicator(plt, indicator: dict, metric: str, path: Path) -> None:
    choice = indicator["choice"]
    rep = indicator["report"][choice]
    y, pred = indicator["scores"], rep["loocv_predictions"]
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.scatter(y, pred, s=30)
    lo, hi = min(min(y), min(pred)), max(max(y), max(pred))
    ax.plot([lo, hi], [lo, hi], "k--", linewidth=0.8)
    ax.set_xlabel(f"validation {metric} after short distillation")
    ax.set_ylabel("leave-one-out prediction")
    tau = "n/a" if rep["kendall_tau"] is None else f"{rep['kendall_tau']:.2f}"
    ax.set_title(f"indicator ({choice}): MAE {rep['loocv_mae']:.4f}, Kendall tau {tau}", fontsize=9)
    _save(fig, path)
    plt.close(fig)


def write_report(run: Path) -> dict:
    """Write ``run/report.md`` and the plots its artefacts allow; return which were written."""
    run = Path(run)
    stages = {name: rec for name in ORDER if (rec := _read(run, f"stages/{name}.json"))}
    if not stages:
        raise AvatarError("not an Avatar run directory (no finished stage in stages/)", run)
    plt = _pyplot()
    metrics, pareto, choice = _read(run, "metrics.json"), _read(run, "pareto.json"), (stages.get("choose") or {}).get("result")
    space, indicator, latency = _read(run, "space.json"), _read(run, "indicator/indicator.json"), _read(run, "latency.json")
    if pareto and pareto["objectives"][1] != "latency_ms":  # left from an earlier run with the latency objective
        latency = None
        stages.pop("latency", None)
    student = (stages.get("student") or {}).get("result")
    metric = (stages.get("indicator") or {}).get("result", {}).get("metric", "score")  # what the indicator predicts
    task = (metrics or {}).get("task") or (stages.get("teacher") or {}).get("inputs", {}).get("task", "")
    settings = "; settings in `config.toml`" if (run / "config.toml").is_file() else ""
    lines = [f"# Avatar report{': ' + task if task else ''}", "", f"Run directory: `{run.resolve()}`{settings}.", ""]
    plots = []

    if metrics:
        columns, rows = headline(metrics)
        lines += ["## Teacher vs student (measured side by side on this machine)", "", *_md_table(columns, rows), ""]
        lines += [f"- {line}" for line in ratio_lines(metrics)]
        from avatar._render import footer

        lines += [
            f"- {footer(metrics['results'])}.",
            "", f"![teacher vs student]({PLOTS['comparison']})", "",
        ]
        _plot_comparison(plt, metrics, run / PLOTS["comparison"])
        plots.append(PLOTS["comparison"])

    if choice:
        row = choice["row"]
        speed = "latency_ms" if "latency_ms" in row else "gflops"
        lines += ["## The chosen student", "", f"Rule: `{choice['prefer']}` (entry {choice['index']} of the Pareto set).", ""]
        config = {k: v for k, v in row.items() if k not in ("predicted_effectiveness", "predicted_std", "size_mb", "source", speed)}
        lines += _md_table(["hyperparameter", "value"], [[k, str(v)] for k, v in config.items()]) + [""]
        std = "" if row.get("predicted_std") is None else f" ± {row['predicted_std']:.4f}"
        how = "Measured (a distilled sample)" if row.get("source") == "measured" else "Predicted"
        lines.append(f"{how} short-budget validation {metric} {row['predicted_effectiveness']:.4f}{std}; size {row['size_mb']:.2f} MB; "
                     f"predicted {'latency' if speed == 'latency_ms' else 'cost'} {row[speed]:.3g} {'ms' if speed == 'latency_ms' else 'GFLOPs'}.")
        if student:
            main = metrics["main_metric"] if metrics else "accuracy"
            lines.append(f"Fully distilled: validation {main} {student['valid'][main]:.4f}, test {student['test'][main]:.4f}, "
                         f"agreement with the teacher {student['agreement_with_teacher']:.3f}, {student['train_seconds']} s of training.")
        lines.append("")

    exported = (stages.get("export") or {}).get("result")
    if exported:
        lines += ["## Exported for `avatar scan` (ONNX, torch-free)", "",
                  f"`onnx/` holds the student for onnxruntime; `avatar scan PATH --model {run}` uses it.", ""]
        rows = [[p, f"{exported['sizes'][p] / MB:.3f}", str(q["examples"]), f"{q['max_prob_diff']:.2g}", f"{q['agreement']:.4f}"]
                for p, q in exported["parity"].items()]
        lines += _md_table(["precision", "size MB (graph + data + tokenizer)", "test examples", "max probability difference vs PyTorch",
                            "agreement"], rows) + [""]
        if "decisions" in exported:
            lines += ["Decision threshold of `avatar scan` / `avatar clones` (probabilities calibrated on validation; the model "
                      "card is `onnx/README.md`):", "", *(f"- {line}" for line in decision_lines(exported)), ""]

    if pareto:
        found = (stages.get("pareto") or {}).get("result", {})
        measured = sum(r.get("source") == "measured" for r in pareto["rows"])
        trust = ("" if found.get("surrogate_beats_mean", True) else
                 " The indicator predicts left-out samples no better than their mean does, so its predictions are not used: "
                 "the set holds measured samples only and the choice is the best measured one.")
        lines += ["## Search", "", f"{len(pareto['rows'])} Pareto-optimal configurations from {pareto.get('algorithm', 'nsga2')}'s "
                  f"search and the distilled samples ({measured} measured; objectives: {', '.join(pareto['objectives'])}); all of "
                  f"them in `pareto.csv` / `pareto.json`.{trust}", "",
                  f"![Pareto front]({PLOTS['pareto']})", ""]
        _plot_pareto(plt, pareto, choice, run / PLOTS["pareto"])
        plots.append(PLOTS["pareto"])

    if space:
        c = space["configurations"]
        lines += ["## Configuration space (SMT pruning)", "",
                  f"Budget {space['budget_mb']:g} MB: {c['feasible']:,} of {c['total']:,} configurations feasible "
                  f"({100 * c['feasible_fraction']:.4g} %; {100 * c['pruned_fraction']:.4g} % pruned), "
                  f"{space['splits']} linear splits, {space['z3_checks']} z3 checks, {space['wall_seconds']} s.", ""]
        rows = []
        for name, d in space["dimensions"].items():
            s = d["space"]
            full = ", ".join(map(str, s["choices"])) if s["kind"] == "categorical" else f"{s['low']:g}..{s['high']:g}"
            feas = ", ".join(map(str, d["feasible"])) if s["kind"] == "categorical" else (f"{d['feasible'][0]:g}..{d['feasible'][1]:g}" if d["feasible"] else "none")
            rows.append([name, full, feas, f"{100 * d['pruned_fraction']:.1f} %"])
        lines += _md_table(["dimension", "space", "feasible", "values pruned"], rows) + ["", f"![feasible ranges]({PLOTS['space']})", ""]
        _plot_space(plt, space, run / PLOTS["space"])
        plots.append(PLOTS["space"])

    if indicator:
        lines += ["## Effectiveness indicator (leave-one-out over the distilled samples)", "",
                  f"Learns the validation {metric} of each sample after its short distillation."
                  + (f" The final student is judged by {metrics['main_metric']}; the indicator learns {metric} because after a "
                     "short distillation most samples still predict one class, so their accuracies tie while the ranking "
                     "their logits make already differs." if metrics and metric != metrics["main_metric"] else ""), ""]
        rows = [[f"{n}{' (chosen)' if n == indicator['choice'] else ''}", f"{v['loocv_mae']:.4f}",
                 "-" if v["kendall_tau"] is None else f"{v['kendall_tau']:.3f}",
                 "-" if v.get("kendall_tau_p") is None else f"{v['kendall_tau_p']:.2g}"] for n, v in indicator["report"].items()]
        lines += _md_table(["surrogate", "LOOCV MAE", "Kendall τ", "τ's p-value (chance ranking)"], rows)
        lines += ["", f"{len(indicator['scores'])} samples, scores {min(indicator['scores']):.4f}–{max(indicator['scores']):.4f}.", ""]
        ind = (stages.get("indicator") or {}).get("result", {})
        if "score_noise" in ind:
            verdict = ("below the spread: the samples' scores tell them apart" if ind["score_noise"] < ind["score_spread"] else
                       "not below the spread: the samples' scores cannot tell them apart; score them on more validation examples")
            lines += [f"Noise of one sample's score (bootstrap sd over its validation examples) {ind['score_noise']:.4f}, spread between "
                      f"samples (sd) {ind['score_spread']:.4f}: the noise is {verdict}. The samples were drawn from the space cut to "
                      f"z3's bounds ({100 * ind['pruned_by_bounds']:.3g} % of the grid cut).", ""]
        if latency:
            lr = latency["report"]
            lines += [f"Latency model: {lr['measurements']} architectures timed, leave-one-out error {100 * lr['loocv_mape']:.1f} % "
                      f"({lr['loocv_mae_ms']:.2f} ms).", ""]
        lines += [f"![indicator]({PLOTS['indicator']})", ""]
        _plot_indicator(plt, indicator, metric, run / PLOTS["indicator"])
        plots.append(PLOTS["indicator"])

    lines += ["## Stages", ""]
    lines += _md_table(["stage", "seconds"], [[name, f"{rec['seconds']:.1f}"] for name, rec in stages.items()])
    write_text_atomic(run / "report.md", "\n".join(lines) + "\n")
    return {"report": "report.md", "plots": plots}
