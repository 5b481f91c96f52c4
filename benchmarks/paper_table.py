"""`avatar compress` on real Devign and BigCloneBench with the MiniLM teacher, next to the paper's headline figures.

    python benchmarks/teacher.py              # first: the fine-tuned MiniLM teachers (benchmarks/out/teacher/*)
    python benchmarks/distill.py              # optional: its Devign soft labels are reused (same key)
    python benchmarks/search.py               # optional: its 20 Devign candidates are reused (same keys)
    python benchmarks/paper_table.py [--tasks defect clone]

Each task is one resumable compress run in benchmarks/out/paper/<task> with the teacher given as fine-tuned
(`teacher_finetuned`), a 3 MB budget, 20 indicator samples, measured latency, NSGA-II and the
codebert-base architecture measured in the same run. CPU sizing (2 cores), documented in the output:
- both tasks: the space has absolute position embeddings only (relative ones train too slowly here; see
  benchmarks/search.py) and each indicator sample is distilled for 1 epoch on 1000 unlabelled examples,
  scored on 500 validation examples; the chosen student is distilled for 3 epochs (patience 2);
- Devign: the whole unlabelled half (10,927 functions) and the full validation and test splits;
- BigCloneBench: a seeded subsample of the pair lists (4000 unlabelled, 1000 validation, 2000 test pairs)
  written to benchmarks/out/paper/bigclonebench-subsample with only the functions those pairs use.
Writes benchmarks/results/paper_table.{md,json}; results of a task already there are kept when only the other
task is run.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from avatar.config import CompressConfig
from avatar.pipeline import compress
from avatar.report import ratio_sentence
from avatar.settings import DistillConfig, MeasureConfig, SearchSettings

HERE = Path(__file__).parent
RESULTS = HERE / "results"
OUT = HERE / "out" / "paper"
PAPER = {
    "student_size_mb": 3, "size_x": 160, "latency_x_up_to": 76, "energy_x_up_to": 184, "average_effectiveness_loss_percent": 1.67,
    "source": "Shi et al., Greening Large Language Models of Code (ICSE-SEIS 2024), abstract: CodeBERT and GraphCodeBERT "
              "teachers on Devign and BigCloneBench",
}
SEARCH = SearchSettings(samples=20, sample_epochs=1, sample_limit=1000, sample_eval_limit=500, latency_architectures=24,
                        population=40, generations=50)
DISTILL = DistillConfig(epochs=3, patience=2)
MEASURE = MeasureConfig(runs=50, warmup=5, throughput_examples=128, energy_rounds=3, energy_seconds=2.0)
SPACE = {"position_embedding_type": ["absolute"]}
BCB_SUBSAMPLE = {"unlabel_train.txt": 4000, "valid.txt": 1000, "test.txt": 2000}


def bcb_subsample(source: Path, target: Path, seed: int = 42) -> Path:
    """A CodeXGLUE clone folder with fewer pairs (and only the functions they use); label_train is kept whole."""
    if (target / "data.jsonl").is_file():
        return target
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rng = random.Random(seed)
    used: set[str] = set()
    for name in ("label_train.txt", *BCB_SUBSAMPLE):
        lines = (source / name).read_text().splitlines()
        if name in BCB_SUBSAMPLE:
            lines = [lines[i] for i in sorted(rng.sample(range(len(lines)), BCB_SUBSAMPLE[name]))]
        (tmp / name).write_text("\n".join(lines) + "\n")
        for line in lines:
            a, b, _ = line.split("\t")
            used |= {a, b}
    with open(source / "data.jsonl") as src, open(tmp / "data.jsonl", "w") as dst:
        for line in src:
            if str(json.loads(line)["idx"]) in used:
                dst.write(line)
    tmp.rename(target)
    return target


def task_config(task: str, data_root: Path) -> CompressConfig:
    if task == "defect":
        data = data_root / "devign"
    else:
        data = bcb_subsample(data_root / "bigclonebench", OUT / "bigclonebench-subsample")
    return CompressConfig(
        task=task, data=str(data.resolve()), teacher=str((HERE / "out" / "teacher" / task).resolve()), teacher_finetuned=True,
        budget_mb=3.0, seed=42, search=SEARCH, distill=DISTILL, measure=MEASURE, space=SPACE,
    )


def reuse_devign_benchmarks(run: Path) -> int:
    """Copy in the Devign soft labels of benchmarks/distill.py and the finished candidates of benchmarks/search.py:
    the same teacher, data, configurations and budget give the same keys, so the labels and indicator stages
    read them back instead of computing them again. Returns the number of candidates copied."""
    labels = HERE / "out" / "distill" / "soft_labels.json"
    if labels.is_file() and not (run / "soft_labels.json").exists():
        run.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(labels, run / "soft_labels.json")
    source = HERE / "out" / "search" / "indicator" / "candidates"
    target = run / "indicator" / "candidates"
    copied = 0
    for f in source.glob("*.json") if source.is_dir() else ():
        if not (target / f.name).exists():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target / f.name)
            copied += 1
    return copied


def run_task(task: str, data_root: Path) -> dict:
    config = task_config(task, data_root)
    config.validate()
    run = OUT / task
    reused = reuse_devign_benchmarks(run) if task == "defect" else 0
    start = time.perf_counter()
    stages = compress(config, run, on_end=lambda s: print(f"{task}: {s.name} {'up to date' if s.reused else f'{s.seconds:.0f} s'}", file=sys.stderr)).stages
    metrics = json.loads((run / "metrics.json").read_text())
    return {
        "task": task,
        "run": str(run.relative_to(HERE.parent)),
        "wall_seconds_this_invocation": round(time.perf_counter() - start, 1),
        "stage_seconds": {name: s.seconds for name, s in stages.items()},
        "candidates_copied_from_search_benchmark": reused,
        "settings": asdict(config),
        "chosen": stages["choose"].result["row"],
        "student": stages["student"].result,
        "metrics": metrics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--tasks", nargs="*", default=["defect", "clone"], choices=["defect", "clone"])
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    for task in args.tasks:
        if not (HERE / "out" / "teacher" / task / "model.safetensors").is_file():
            sys.exit(f"error: benchmarks/out/teacher/{task}: no fine-tuned teacher; run python benchmarks/teacher.py --task {task} first")
    previous = json.loads((RESULTS / "paper_table.json").read_text()) if (RESULTS / "paper_table.json").is_file() else {}
    tasks = {t: r for t, r in previous.get("tasks", {}).items() if t not in args.tasks}
    for task in args.tasks:
        tasks[task] = {"command": "python benchmarks/paper_table.py " + " ".join(sys.argv[1:]), **run_task(task, args.data_root)}
    results = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "paper": PAPER,
        "tasks": {t: tasks[t] for t in ("defect", "clone") if t in tasks},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "paper_table.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results)
    print((RESULTS / "paper_table.md").read_text())


def write_markdown(r: dict) -> None:
    names = {"defect": "Devign (vulnerability prediction)", "clone": "BigCloneBench (clone detection)"}
    lines = [
        "# Avatar on real data vs the paper's headline figures (CPU)",
        "",
        "Commands: `python benchmarks/paper_table.py --tasks defect clone` (or one task at a time: each task's own "
        "command is under its heading).  ",
        f"Machine: {r['machine']}. Teacher: the MiniLM-L6 teachers of benchmarks/results/teacher.md (CPU-sized fine-tuning), "
        "given to `avatar compress` as fine-tuned. Sizing for 2 CPU cores is described in benchmarks/paper_table.py. "
        "The Devign run reads the soft labels of benchmarks/distill.py and the 20 indicator candidates of "
        "benchmarks/search.py (same keys), so their times are in those results, not in the stage times below. "
        "All models of a task are measured in one interleaved run on an otherwise idle machine.",
        "",
        f"Paper ({r['paper']['source']}): {r['paper']['student_size_mb']} MB students, {r['paper']['size_x']}x smaller, up to "
        f"{r['paper']['latency_x_up_to']}x lower latency, up to {r['paper']['energy_x_up_to']}x less energy, "
        f"{r['paper']['average_effectiveness_loss_percent']} % average effectiveness loss.",
        "",
    ]
    for task, t in r["tasks"].items():
        m = t["metrics"]
        main = m["main_metric"]
        by_role = {x["role"]: x for x in m["results"]}
        lines += [
            f"## {names[task]}",
            "",
            f"Command: `{t['command'].strip()}`",
            "",
            "| model | test " + main + " | size MB (fp32) | latency ms p50 (batch 1) | J / example | gCO2e / 1000 examples |",
            "|---|---|---|---|---|---|",
        ]
        for role, x in by_role.items():
            label = {"teacher": "MiniLM teacher", "student": "Avatar student"}.get(role, f"{role} architecture (random weights)")
            score = "n/a" if x["test"] is None else f"{x['test'][main]:.4f}"
            lines.append(
                f"| {label} | {score} | {x['size_mb']:.2f} | {x['latency_ms']['median']:.2f} | "
                f"{x['energy']['joules_per_example']:.4g} ({x['energy']['method']}) | "
                f"{x['carbon']['grams_per_1000_examples']:.4g} ({x['energy']['method']}, {x['carbon']['g_per_kwh']} g/kWh) |"
            )
        q = m["student_vs_teacher"]
        loss = -100 * q["score_difference"] / by_role["teacher"]["test"][main]
        lines += ["", f"- Student vs MiniLM teacher: {ratio_sentence(q)}; {main} {q['score_difference']:+.4f} "
                      f"({abs(loss):.2f} % relative {'loss' if loss >= 0 else 'gain'})."]
        for arch, qa in m["student_vs_architectures"].items():
            lines.append(f"- Student vs the {arch} architecture: {ratio_sentence(qa)}; its score needs its fine-tuned weights, "
                         "which cannot be downloaded here.")
        chosen = {k: v for k, v in t["chosen"].items() if k not in ("predicted_effectiveness", "predicted_std", "latency_ms", "gflops", "size_mb")}
        lines += [f"- Chosen configuration (predicted short-budget validation score {t['chosen']['predicted_effectiveness']:.4f}): "
                  f"`{json.dumps(chosen)}`",
                  f"- Stage seconds: {', '.join(f'{k} {v:.0f}' for k, v in t['stage_seconds'].items())}.",
                  *([f"- {t['note']}"] if t.get("note") else []), ""]
    (RESULTS / "paper_table.md").write_text("\n".join(lines))


if __name__ == "__main__":
    if "--markdown-only" in sys.argv:
        write_markdown(json.loads((RESULTS / "paper_table.json").read_text()))
    else:
        main()
