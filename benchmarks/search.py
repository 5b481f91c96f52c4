"""The search stage on real Devign with the MiniLM teacher's soft labels: indicator quality, NSGA-II vs the
paper's GA, and the chosen configuration's predicted vs actually distilled validation score.

    python benchmarks/teacher.py --task defect   # first: the fine-tuned MiniLM teacher
    python benchmarks/distill.py                 # labels the unlabelled half (benchmarks/out/distill/soft_labels.json)
    python benchmarks/search.py

Runs the search stages (20 sampled 3 MB configurations, each distilled on the short budget below on 2 local
workers, indicator, measured-latency model, NSGA-II, choice) into benchmarks/out/search, then runs NSGA-II and
the paper's GA on the same fitted objectives, timing each and comparing their fronts by hypervolume on common
bounds, and distils the chosen configuration on the same short budget. Finished candidates are reused on a
rerun. Writes benchmarks/results/search.{json,md}.

The space is the paper's with absolute position embeddings only: on this 2-core CPU one training step of a
sampled 11-layer, 12-head relative_key_query student took 40 s (batch 64, 1 thread), so the relative variants
would have made the 20 distillations take hours.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from avatar.candidates import distill_candidate
from avatar.indicator import Indicator
from avatar.labels import load_soft_labels
from avatar.pipeline import Run, objectives_of, search_stages, searched_space
from avatar.search import Nsga2, PaperGA, hypervolume, search as run_search
from avatar.settings import SearchSettings
from avatar.smt import Feasibility
from avatar.space import Space
from avatar.tasks import get_task

HERE = Path(__file__).parent
RESULTS = HERE / "results"
SPACE = {"position_embedding_type": ["absolute"]}  # see the module docstring
SETTINGS = SearchSettings(budget_mb=3.0, samples=20, sample_limit=1000, sample_eval_limit=500, objective="latency", seed=42)  # as avatar compress --seed 42
SHORT = SETTINGS.short_budget()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--soft-labels", type=Path, default=HERE / "out" / "distill" / "soft_labels.json")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "search")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    if not args.soft_labels.is_file():
        sys.exit(f"error: {args.soft_labels}: no soft labels; run benchmarks/teacher.py --task defect and benchmarks/distill.py first")
    task = get_task("defect")
    data_dir = args.data_root / "devign"

    space = Space.paper().override(SPACE)
    stages = search_stages(Run(args.out), task, space, SETTINGS, data_dir, 42, args.soft_labels)
    stage_seconds = {name: s.seconds for name, s in stages.items()}
    samples = json.loads((args.out / "indicator" / "samples.json").read_text())
    found = [json.loads(p.read_text()) for p in (args.out / "indicator" / "candidates").glob("*.json")]
    candidates = [next(c for c in found if c["job"]["config"] == s) for s in samples]  # this run's, in sample order

    # the same fitted objectives for both algorithms, searching inside the SMT bounds as the pipeline does
    searched = searched_space(args.out, space)
    feas = Feasibility(searched, SETTINGS.constraints(task.num_inputs))
    indicator = Indicator.load(args.out / "indicator" / "indicator.json", searched)
    timed = json.loads((args.out / "latency.json").read_text())
    objectives = objectives_of(args.out, task, space, "latency_ms")
    runs = {}
    for name, algorithm in (("nsga2", Nsga2(40, 50)), ("nsga2 (population 20)", Nsga2(20, 50)),  # paper-ga's budget
                            ("paper-ga", PaperGA(20, 50))):
        for seed in range(3):
            t = time.perf_counter()
            result = run_search(searched, feas, objectives, algorithm, seed)
            runs.setdefault(name, []).append({"seed": seed, "seconds": time.perf_counter() - t, "result": result})
    fronts = np.vstack([r["result"].F for rs in runs.values() for r in rs])
    ideal, nadir = fronts.min(axis=0), fronts.max(axis=0)
    algorithms = {
        name: {
            "evaluations": rs[0]["result"].evaluations,
            "seconds": [round(r["seconds"], 2) for r in rs],
            "hypervolume": [round(hypervolume(r["result"].F, ideal, nadir), 4) for r in rs],
            "pareto_size": [len(r["result"].configs) for r in rs],
        }
        for name, rs in runs.items()
    }

    chosen = stages["choose"].result["row"]
    config = {k: v for k, v in chosen.items() if k in space.dims}
    print("distilling the chosen configuration on the short budget", file=sys.stderr)
    actual = distill_candidate({
        "config": config, "task": "defect", "data_dir": str(data_dir.resolve()), "seed": 42,
        "soft_labels": str(args.soft_labels.resolve()), "budget": asdict(SHORT), "threads": torch.get_num_threads(),
    })
    metric = SETTINGS.sample_metric
    scores = [c["result"]["valid"][metric] for c in candidates]
    results = {
        "command": "python benchmarks/search.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "settings": {**asdict(SETTINGS), "space_override": SPACE},
        "data": {"unlabelled": len(load_soft_labels(args.soft_labels).logits), "validation_scored_on": f"{SHORT.eval_limit} validation functions (stratified)"},
        "stage_seconds": stage_seconds,
        "space": stages["space"].result,
        "candidates": {
            "count": len(candidates),
            "seconds_each": [c["result"]["seconds"] for c in candidates],
            "scores": scores,
            "best": max(scores), "worst": min(scores), "mean": float(np.mean(scores)),
            "accuracies": [c["result"]["valid"]["accuracy"] for c in candidates],
        },
        "indicator": {"choice": indicator.choice, "surrogates": {
            n: {k: v for k, v in r.items() if k != "loocv_predictions"} for n, r in indicator.report.items()}},
        "latency_model": timed["report"],
        "algorithms": algorithms,
        "hypervolume_bounds": {"ideal": ideal.tolist(), "nadir": nadir.tolist()},
        "chosen": {
            "config": config,
            "predicted": chosen["predicted_effectiveness"], "predicted_std": chosen["predicted_std"],
            "latency_ms_predicted": chosen["latency_ms"], "size_mb": chosen["size_mb"],
            "actual": actual["valid"][metric], "actual_valid": actual["valid"], "distill_seconds": actual["seconds"],
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results)
    print((RESULTS / "search.md").read_text())


def write_markdown(r: dict) -> None:
    s, c, ind, ch = r["settings"], r["candidates"], r["indicator"], r["chosen"]
    sb = {"epochs": s["sample_epochs"], "limit": s["sample_limit"], "eval_limit": s["sample_eval_limit"]}
    lines = [
        "# Search stage on real Devign (MiniLM teacher's soft labels, CPU)",
        "",
        f"Command: `{r['command'].strip()}`  ",
        f"Machine: {r['machine']}. Budget {s['budget_mb']} MB; {c['count']} sampled configurations, each distilled for "
        f"{sb['epochs']} epoch on {sb['limit']} of the {r['data']['unlabelled']} unlabelled functions (teacher soft labels) "
        f"and scored by {s['sample_metric']} on {r['data']['validation_scored_on']}; local workers: {s['workers'] or 'one per core'}. "
        f"Space: the paper's, with {json.dumps(s['space_override'])} (relative position embeddings are too slow to train "
        "20 times on this CPU; see the script's docstring).",
        "",
        "Stage wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in r["stage_seconds"].items())
        + f"; one candidate {min(c['seconds_each']):.0f}–{max(c['seconds_each']):.0f} s.",
        f"Sampled {s['sample_metric']}: {c['worst']:.4f}–{c['best']:.4f} (mean {c['mean']:.4f}). Their validation accuracies take "
        f"only the values {', '.join(f'{a:.4f} ({n}x)' for a, n in sorted(Counter(c['accuracies']).items()))}: "
        "students that still predict one class after the short budget, which is why the indicator learns ROC AUC.",
        "",
        "## Indicator (leave-one-out over the samples)",
        "",
        "| surrogate | LOOCV MAE | Kendall τ |",
        "|---|---|---|",
    ]
    for name, v in ind["surrogates"].items():
        tau = "-" if v["kendall_tau"] is None else f"{v['kendall_tau']:.3f}"
        mark = " (chosen)" if name == ind["choice"] else ""
        lines.append(f"| {name}{mark} | {v['loocv_mae']:.4f} | {tau} |")
    lm = r["latency_model"]
    lines += [
        "",
        f"Latency model: {lm['measurements']} random-weight architectures timed at batch 1, LOOCV error "
        f"{100 * lm['loocv_mape']:.1f} % ({lm['loocv_mae_ms']:.2f} ms).",
        "",
        "## NSGA-II vs the paper's GA on the same surrogate (3 seeds each)",
        "",
        "Hypervolume of each front after scaling the three objectives to [0, 1] between the best and worst values "
        "over all nine fronts (reference point 1.1; higher is better). NSGA-II with population 20 has the paper "
        "GA's evaluation budget (20 x 50).",
        "",
        "| algorithm | evaluations | wall time s | hypervolume | Pareto set size |",
        "|---|---|---|---|---|",
    ]
    for name, a in r["algorithms"].items():
        lines.append(
            f"| {name} | {a['evaluations']} | {' / '.join(f'{x:.1f}' for x in a['seconds'])} | "
            f"{' / '.join(f'{x:.4f}' for x in a['hypervolume'])} | {' / '.join(map(str, a['pareto_size']))} |"
        )
    std = "" if ch["predicted_std"] is None else f" ± {ch['predicted_std']:.4f}"
    lines += [
        "",
        "## The chosen configuration (highest predicted effectiveness)",
        "",
        f"`{json.dumps(ch['config'])}`",
        "",
        f"Size {ch['size_mb']:.2f} MB, predicted latency {ch['latency_ms_predicted']:.2f} ms. Predicted validation "
        f"{s['sample_metric']} {ch['predicted']:.4f}{std}; actually distilled on the same short budget: {ch['actual']:.4f} "
        f"(accuracy {ch['actual_valid']['accuracy']:.4f}, {ch['distill_seconds']:.0f} s). Best sampled configuration: {c['best']:.4f}.",
        "",
    ]
    (RESULTS / "search.md").write_text("\n".join(lines))


if __name__ == "__main__":
    if "--markdown-only" in sys.argv:
        write_markdown(json.loads((RESULTS / "search.json").read_text()))
    else:
        main()
