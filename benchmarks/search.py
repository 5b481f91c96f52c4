"""The search stages on real Devign and BigCloneBench: how well the indicator ranks, and whether the search trusts
what it measured.

    python benchmarks/paper_table.py   # first (or not: the search stages then run here, and paper_table reuses them)
    python benchmarks/search.py [--tasks defect clone] [--holdout N]

The search analysed is the one of benchmarks/paper_table.py's compress run (benchmarks/out/paper/<task>, its
settings: SEARCH_FOR[task] there; SMT-cut space, samples with equal step budgets and successive halving, indicator,
measured-latency model, NSGA-II with the measured samples as candidates, choice), so the student in the paper
table is the one this file judges. Its stages are reused when done, else run (from the kept samples of
benchmarks/artefacts/paper-candidates and the teacher's labels, where the run folder is an earlier session's).
Then the chosen configuration is distilled on the top rung's budget to compare its predicted and actual validation
scores, and NSGA-II and the paper's GA are compared by hypervolume on the same fitted objectives. With
``--holdout N``, N further configurations drawn from the same space (another seed) are distilled on the top
rung's budget and the fitted indicator's predictions for them are judged: an out-of-sample Kendall tau beside
the leave-one-out one (the indicator never saw them; resumable per sample in the run folder's holdout/).

Writes benchmarks/results/search.{json,md}: search.json holds one row per task with the indicator's Kendall tau,
its leave-one-out MAE and the mean baseline's, the latency model's leave-one-out error (a fraction), and the
chosen student's rank among the measured samples (1: its distilled score is at least every measured one's).

The space is the paper's with absolute position embeddings only: on this 2-core CPU one training step of a
sampled 11-layer, 12-head relative_key_query student took 40 s (batch 64, 1 thread).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from scipy.stats import kendalltau

from avatar.candidates import distill_candidate
from avatar.indicator import Indicator
from avatar.engine import Run
from avatar.pipeline import given_labels_stage, objectives_of, search_stages, searched_space
from avatar.search import Nsga2, PaperGA, hypervolume, search as run_search
from avatar.smt import Feasibility
from avatar.space import NAMES, Space
from avatar.tasks import get_task

sys.path.insert(0, str(Path(__file__).parent))
from paper_table import OUT as PAPER_OUT, SPACE, restore_candidates, task_config  # noqa: E402  (the run whose search this file judges)

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def holdout(task_name: str, out: Path, data_dir: Path, config, indicator: Indicator, n: int) -> dict:
    """The indicator's predictions for ``n`` configurations it never saw, against their scores when distilled
    on the top rung's budget (as the promoted samples were)."""
    from avatar.candidates import score_candidates
    from avatar.executor import make_executor
    from avatar.labels import load_soft_labels
    from avatar.sampling import sample
    from avatar.teacher import data_fingerprints

    task, settings = get_task(task_name), config.search
    searched = indicator.space
    seen = {json.dumps(c, sort_keys=True) for c in indicator.configs}
    drawn = sample(searched, Feasibility(searched, settings.constraints(task.num_inputs)), n + len(seen), settings.seed + 2)
    configs = [c for c in drawn if json.dumps(c, sort_keys=True) not in seen][:n]
    labels = out / "soft_labels.json"
    workers = settings.workers or os.cpu_count() or 1
    results = score_candidates(configs, task_name, str(data_dir.resolve()), config.seed, labels, load_soft_labels(labels).key,
                               data_fingerprints(task.load(data_dir, seed=config.seed)),
                               settings.short_budget(config.distill, rung=settings.rungs - 1), out / "holdout",
                               make_executor(settings.executor, workers), threads=max(1, (os.cpu_count() or 1) // workers))
    metric = settings.metric_for(task.num_classes)
    actual = np.array([r["valid"][metric] for r in results])
    predicted = indicator.predict(configs)[0]
    tau = kendalltau(actual, predicted, alternative="greater")
    _, top_scores = indicator.top()
    return {"samples": len(configs), "seed": settings.seed + 2, "kendall_tau": float(tau.statistic), "kendall_tau_p": float(tau.pvalue),
            "mae": float(np.abs(predicted - actual).mean()),
            "mean_baseline_mae": float(np.abs(np.mean(top_scores) - actual).mean()),  # the top rung's mean for every one
            "predicted_best_rank": 1 + int(np.sum(actual > actual[int(np.argmax(predicted))])),
            "scores": [round(float(v), 4) for v in actual], "predicted": [round(float(v), 4) for v in predicted],
            "best": float(actual.max()), "best_measured_before": max(top_scores)}


def run_task(task_name: str, data_root: Path, holdout_samples: int = 0) -> dict:
    task = get_task(task_name)
    config = task_config(task_name, data_root)
    settings, data_dir, out = config.search, Path(config.data), PAPER_OUT / task_name
    labels = out / "soft_labels.json"
    restore_candidates(task_name)  # a run folder of an earlier session's: its kept samples are not distilled again
    run = Run(out)
    with run.writing():
        if not labels.is_file() and config.teacher_labels:  # the teacher's labels as the paper run takes them
            given_labels_stage(run, task, task.load(data_dir, seed=config.seed), Path(config.teacher_labels))
        if not labels.is_file():
            sys.exit(f"error: {labels}: no soft labels yet; run python benchmarks/paper_table.py --tasks {task_name} first")
        space = Space.paper().override(SPACE)
        stages = search_stages(run, task, space, settings, data_dir, config.seed, labels, distill=config.distill,
                               threads=config.measure.threads)
    metric = settings.metric_for(task.num_classes)
    searched = searched_space(out, space)
    indicator = Indicator.load(out / "indicator" / "indicator.json", searched)
    top_configs, top_scores = indicator.top()
    ind = stages["indicator"].result
    # wall time: the sample jobs' own seconds (the bulk; `workers` of them ran at once) plus the other stages' as they
    # ran (a run resumed from kept samples did not time its indicator stage, so the jobs' records are summed)
    jobs = [json.loads(f.read_text())["result"]["seconds"] for f in (out / "indicator" / "candidates").glob("*.json")]
    workers = settings.workers or os.cpu_count() or 1
    search_seconds = sum(jobs) / workers + sum(s.seconds for name, s in stages.items() if name != "indicator")

    # the chosen configuration, distilled on the top rung's budget: predicted vs actual, and its rank
    chosen = stages["choose"].result["row"]
    chosen_config = {n: chosen[n] for n in NAMES}
    top_budget = settings.short_budget(config.distill, rung=settings.rungs - 1)
    measured = chosen.get("source") == "measured"
    actual = chosen["predicted_effectiveness"] if measured else distill_candidate({
        "config": chosen_config, "task": task_name, "data_dir": str(data_dir.resolve()), "seed": config.seed,
        "soft_labels": str(labels.resolve()), "budget": asdict(top_budget), "threads": torch.get_num_threads(),
    })["valid"][metric]
    rank = 1 + sum(s > actual for s in top_scores)

    # the kept surrogate's leave-one-out ranking within the top rung alone: pooled over rungs, tau also counts that
    # promoted samples (trained longer) score higher, which says nothing of the architectures
    chosen_report = indicator.report[indicator.choice]
    top = [i for i, f in enumerate(indicator.fidelity or [1.0] * len(indicator.scores)) if f == max(indicator.fidelity or [1.0])]
    tau_top = kendalltau([indicator.scores[i] for i in top], [chosen_report["loocv_predictions"][i] for i in top]).statistic

    # what the numpy predicate still rejected inside z3's bounds (the sampler's draws), besides what the bounds cut
    feas = Feasibility(searched, settings.constraints(task.num_inputs))
    lengths = np.array([len(searched.dims[n]) for n in NAMES])
    draws = (np.random.default_rng(0).random((200_000, len(NAMES))) * lengths).astype(np.int64)
    rejected_within_bounds = 1 - float(feas.feasible_mask(draws).mean())

    # NSGA-II vs the paper's GA on the same fitted objectives (3 seeds each)
    objectives = objectives_of(out, task, space, "latency_ms")
    runs = {}
    for name, algorithm in (("nsga2", Nsga2(40, 50)), ("nsga2 (population 20)", Nsga2(20, 50)), ("paper-ga", PaperGA(20, 50))):
        for seed in range(3):
            t = time.perf_counter()
            result = run_search(searched, feas, objectives, algorithm, seed)
            runs.setdefault(name, []).append({"seconds": time.perf_counter() - t, "F": result.F, "size": len(result.configs),
                                              "evaluations": result.evaluations})
    fronts = np.vstack([r["F"] for rs in runs.values() for r in rs])
    ideal, nadir = fronts.min(axis=0), fronts.max(axis=0)
    latency = json.loads((out / "latency.json").read_text())["report"]
    held = holdout(task_name, out, data_dir, config, indicator, holdout_samples) if holdout_samples else None
    return {
        "row": {
            "task": task_name,
            "kendall_tau": chosen_report["kendall_tau"],
            "kendall_tau_p": chosen_report["kendall_tau_p"],
            "kendall_tau_top_rung": None if np.isnan(tau_top) else float(tau_top),
            "top_rung_samples": len(top),
            "loocv_mae": chosen_report["loocv_mae"],
            "mean_baseline_mae": indicator.report["predict_mean_baseline"]["loocv_mae"],
            "surrogate": indicator.choice,
            "surrogate_beats_mean": indicator.beats_mean,
            "latency_loocv_error": latency["loocv_mape"],
            "chosen_rank_among_measured": rank,
            "chosen_source": chosen.get("source", "predicted"),
            "chosen_predicted": chosen["predicted_effectiveness"],
            "chosen_distilled": actual,
            "best_measured": max(top_scores),
            "measured_at_top": len(top_scores),
            "score_noise": ind["score_noise"],
            "score_spread": ind["score_spread"],
            "pruned_by_bounds": ind["pruned_by_bounds"],
            "rejected_within_bounds": rejected_within_bounds,
            "search_seconds": round(search_seconds, 1),
            "sample_job_seconds": round(sum(jobs), 1),
            "metric": metric,
            "holdout_kendall_tau": None if held is None else held["kendall_tau"],
            "holdout_samples": 0 if held is None else held["samples"],
        },
        **({"holdout": held} if held else {}),
        "settings": asdict(settings),
        "stage_seconds": {name: s.seconds for name, s in stages.items()},
        "rungs_reached": ind["rungs_reached"],
        "surrogates": {n: {k: v for k, v in r.items() if k != "loocv_predictions"} for n, r in indicator.report.items()},
        "latency_model": latency,
        "chosen": {"config": chosen_config, **{k: chosen[k] for k in ("latency_ms", "size_mb")}},
        "algorithms": {name: {"evaluations": rs[0]["evaluations"], "seconds": [round(r["seconds"], 2) for r in rs],
                              "hypervolume": [round(hypervolume(r["F"], ideal, nadir), 4) for r in rs],
                              "pareto_size": [r["size"] for r in rs]} for name, rs in runs.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--tasks", nargs="*", default=["defect", "clone"], choices=["defect", "clone"])
    parser.add_argument("--holdout", type=int, default=0, metavar="N",
                        help="also distil N unseen configurations on the top rung's budget: the indicator's out-of-sample tau")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    previous = json.loads((RESULTS / "search.json").read_text()) if (RESULTS / "search.json").is_file() else {}
    tasks = {t: r for t, r in previous.get("tasks", {}).items() if t not in args.tasks}
    for task in args.tasks:
        tasks[task] = {"command": "python benchmarks/search.py " + " ".join(sys.argv[1:]), **run_task(task, args.data_root, args.holdout)}
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "space_override": SPACE,
        "rows": [tasks[t]["row"] for t in ("defect", "clone") if t in tasks],
        "tasks": tasks,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results)
    print((RESULTS / "search.md").read_text())


def write_markdown(r: dict) -> None:
    lines = [
        "# The search on real data: does the indicator rank, and does the choice trust what it measured? (CPU)",
        "",
        f"Machine: {r['machine']}. Space: the paper's with {json.dumps(r['space_override'])} (see the script's docstring); "
        "each task's search settings (benchmarks/paper_table.py's SEARCH_FOR) are under its heading.",
        "",
        "Why the indicator learns ROC AUC while the final student is judged by accuracy (Devign) or F1 (BigCloneBench): "
        "after a short budget most samples still predict one class, so their accuracy or F1 is the majority's (or 0) "
        "and ties them; ROC AUC ranks the margins they already learnt and tells them apart. The choice among measured "
        "samples is made on the same ROC AUC.",
        "",
        "Kendall τ is the kept surrogate's leave-one-out τ over all samples (each at the highest rung it reached, the "
        "rung a feature), with its p-value against a ranking by chance (τ 0), and in brackets over the top rung's "
        "samples alone (pooled, τ also credits the promoted samples' longer training).",
        "",
        "| task | Kendall τ all (top rung) (goal ≥ 0.5 on BigCloneBench) | LOOCV MAE / mean baseline | score noise / spread | latency LOOCV error (goal ≤ 15 %) "
        "| chosen: source, predicted / distilled | rank among measured (goal 1) | search wall time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        tau = "n/a" if row["kendall_tau"] is None else f"{row['kendall_tau']:.3f}, p {row['kendall_tau_p']:.2g}"
        tau_top = "n/a" if row["kendall_tau_top_rung"] is None else f"{row['kendall_tau_top_rung']:.3f}"
        lines.append(
            f"| {row['task']} | {tau} ({tau_top} over {row['top_rung_samples']}; {row['surrogate']}) | {row['loocv_mae']:.4f} / {row['mean_baseline_mae']:.4f} "
            f"| {row['score_noise']:.4f} / {row['score_spread']:.4f} | {100 * row['latency_loocv_error']:.1f} % "
            f"| {row['chosen_source']}, {row['chosen_predicted']:.4f} / {row['chosen_distilled']:.4f} | {row['chosen_rank_among_measured']} "
            f"of {row['measured_at_top']} | {row['search_seconds']:.0f} s |")
    for task, t in r["tasks"].items():
        s = t["settings"]
        cap = "" if s["max_gflops"] is None else f", at most {s['max_gflops']} GFLOPs an example"
        lines += ["", f"## {task}", "", f"Budget {s['budget_mb']} MB{cap}; {s['samples']} samples drawn from the SMT-cut space, "
                  f"each distilled for {s['sample_steps']} optimiser steps on {s['sample_limit']} unlabelled examples, the best "
                  f"1/{s['eta']} on for {s['eta']}x the steps ({s['rungs']} rungs), scored by validation {s['sample_metric']} on "
                  f"{s['sample_eval_limit']} examples.", "", f"Command: `{t['command'].strip()}`. Stage seconds: "
                  + ", ".join(f"{k} {v:.0f}" for k, v in t["stage_seconds"].items()) + f"; rungs reached: {t['rungs_reached']}. "
                  f"Search wall time: the sample jobs' {t['row']['sample_job_seconds']:.0f} s over the workers that ran them at "
                  f"once, plus the other stages. z3's bounds cut {100 * t['row']['pruned_by_bounds']:.3g} % of the grid; of the "
                  f"grid points inside them the sampler's predicate rejected {100 * t['row']['rejected_within_bounds']:.3g} %.",
                  "", "| surrogate | LOOCV MAE | Kendall τ | τ's p-value (chance ranking) |", "|---|---|---|---|"]
        for name, v in t["surrogates"].items():
            tau, p = ("-", "-") if v["kendall_tau"] is None else (f"{v['kendall_tau']:.3f}", f"{v['kendall_tau_p']:.2g}")
            lines.append(f"| {name} | {v['loocv_mae']:.4f} | {tau} | {p} |")
        lines += ["", "NSGA-II vs the paper's GA on the same fitted objectives (hypervolume after scaling to [0, 1] over all "
                  "nine fronts; higher is better):", "", "| algorithm | evaluations | wall time s | hypervolume | Pareto set size |",
                  "|---|---|---|---|---|"]
        for name, a in t["algorithms"].items():
            lines.append(f"| {name} | {a['evaluations']} | {' / '.join(f'{x:.1f}' for x in a['seconds'])} | "
                         f"{' / '.join(f'{x:.4f}' for x in a['hypervolume'])} | {' / '.join(map(str, a['pareto_size']))} |")
        lines += ["", f"Chosen: `{json.dumps(t['chosen']['config'])}` ({t['chosen']['size_mb']:.2f} MB, predicted "
                  f"{t['chosen']['latency_ms']:.2f} ms)."]
        if h := t.get("holdout"):
            lines += ["", f"Out of sample: {h['samples']} configurations the indicator never saw (drawn with seed {h['seed']}), "
                      f"each distilled on the top rung's budget. Kendall τ of the kept surrogate's predictions against their "
                      f"validation {t['row']['metric']}: {h['kendall_tau']:.3f} (p {h['kendall_tau_p']:.2g} against chance); "
                      f"MAE {h['mae']:.4f} vs {h['mean_baseline_mae']:.4f} for the top rung's mean; the one it predicts best "
                      f"ranks {h['predicted_best_rank']} of {h['samples']}; best of them {h['best']:.4f} "
                      f"(best measured sample {h['best_measured_before']:.4f})."]
    (RESULTS / "search.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    if "--markdown-only" in sys.argv:
        write_markdown(json.loads((RESULTS / "search.json").read_text()))
    else:
        main()
