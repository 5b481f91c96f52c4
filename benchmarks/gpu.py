"""The full-data pipeline of Devign and BigCloneBench on one CUDA GPU, in one prepared run: teacher, soft labels,
indicator samples, the chosen 3 MB student; effectiveness with intervals, wall times, speed-up over this CPU.

    python benchmarks/gpu.py prepare [--tasks defect clone]   # here (no GPU needed): the bundle, benchmarks/out/gpu-bundle
    python benchmarks/gpu.py run --out DIR                     # on the GPU machine (fails at once without CUDA)
    python benchmarks/gpu.py collect DIR                       # here: DIR's results -> benchmarks/results/gpu.{json,md}

The GPU machine this targets has PyTorch with transformers, tokenizers, scikit-learn, onnx(runtime), typer, rich
and safetensors, but no z3, pymoo, tree-sitter, codecarbon or Ray, no MiniLM weights and no network, takes at
most 64 MiB and gives back at most 8 files of 16 MiB. So the light stages that need z3 run here: ``prepare``
draws each task's indicator samples from its SMT-cut space and packs them with their tokenizers (trained here, or
taken from the cache: training is CPU work the GPU does not speed up), the data (xz) and the MiniLM teacher's
weights (fp16, made fp32 again there). ``run`` does the heavy stages of each task on CUDA: the teacher fine-tuned
on the whole labelled half at CodeXGLUE's 400 tokens per function, its soft labels on the whole unlabelled half,
every sample distilled on the short budget of benchmarks/paper_table.py's SEARCH (successive halving; its
Devign settings for both tasks, without the CPU sizing of BigCloneBench's SEARCH_FOR there), the best
measured sample (pymoo's search is not there: the honest fallback of avatar's choice) distilled on the whole
unlabelled half and, with benchmarks/paper_table.py's GROUND_TRUTH weight (both tasks), the labelled half's true
labels. It writes gpu.json and, per
task, ``<task>.tar`` (the student, the candidates' records, the teacher's test logits) and
``<task>-soft_labels.json``: five files.

Sizing for one H200 (bf16; the run records every stage's wall time, so the next run is sized on measurement):
MiniLM-L6's training step costs about 30 GFLOP a 400-token sequence; at a pessimistic 1,000 sequences/s the
Devign teacher (3 epochs of 10,927 functions) takes about 35 s and the BigCloneBench teacher (1 epoch of 45,051
pairs, 90,102 sequences) about 90 s; the students are launch-bound (~10 ms a step): Devign's 10 epochs of 21,854
examples about 70 s, BigCloneBench's 2 epochs of 45,051 pairs about 30 s, the 2 x 20 samples (and their promoted halves) about 60 s; well
inside 8 minutes in all.
"""

from __future__ import annotations

import argparse
import json
import lzma
import platform
import shutil
import sys
import tarfile
import time
from dataclasses import asdict, replace
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
BUNDLE = HERE / "out" / "gpu-bundle"
SEED = 42
TEACHER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
TASKS = {  # per task: its data folder under ../shared/data (its data files travel, xz), the teacher's and the student's epochs
    "defect": {"folder": "devign", "teacher": {"max_length": 400, "epochs": 3, "learning_rate": 5e-5, "batch_size": 32}, "epochs": 10},
    "clone": {"folder": "bigclonebench", "teacher": {"max_length": 400, "epochs": 1, "learning_rate": 5e-5, "batch_size": 32}, "epochs": 2},
}


def _data_files(folder: Path) -> list[Path]:
    """The files a task's loader reads: the folder's own data files (not its docs, not extra/), and not train when
    the folder gives train's two halves (label_train and unlabel_train: the loader then reads those instead)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".jsonl", ".csv", ".tsv", ".txt", ".toml"))
    halves = {p.stem for p in files} >= {"label_train", "unlabel_train"}
    return [p for p in files if not (halves and p.stem == "train")]


def prepare(args) -> None:
    """Here: each task's data (xz) and samples drawn from its SMT-cut space with their tokenizers; the teacher's
    weights (fp16)."""
    from safetensors.torch import load_file, save_file

    from avatar.engine import Run
    from avatar.modeling import resolve_source
    from avatar.pipeline import searched_space, space_stage
    from avatar.sampling import sample
    from avatar.smt import Feasibility
    from avatar.space import Space
    from avatar.tasks import get_task
    from avatar.vocab import cached_path, distinct_texts, train_tokenizer

    sys.path.insert(0, str(HERE))
    from paper_table import GROUND_TRUTH, SEARCH, SPACE

    out = args.bundle
    if out.exists():
        shutil.rmtree(out)
    teacher = Path(resolve_source(args.teacher))
    (out / "teacher").mkdir(parents=True)
    for name in TEACHER_FILES:
        if (teacher / name).is_file():
            shutil.copy(teacher / name, out / "teacher" / name)
    save_file({k: v.half().contiguous() for k, v in load_file(str(teacher / "model.safetensors")).items()},
              str(out / "teacher" / "model.fp16.safetensors"))
    (out / "tokenizers").mkdir()
    search = replace(SEARCH, samples=args.samples or SEARCH.samples, sample_steps=args.sample_steps or SEARCH.sample_steps,
                     budget_mb=args.budget_mb or SEARCH.budget_mb)
    space = Space.paper().override(SPACE)
    plan = {"seed": SEED, "search": asdict(search), "tasks": {}}
    for name in args.tasks:
        spec, task = TASKS[name], get_task(name)
        source = args.data_root / spec["folder"]
        (out / name).mkdir()
        for f in _data_files(source):
            with open(f, "rb") as src, lzma.open(out / name / f"{f.name}.xz", "wb", preset=9) as dst:
                shutil.copyfileobj(src, dst)
        run = Run(out / f"{name}-space-run")
        with run.writing():
            space_stage(run, task, space, search)
        searched = searched_space(run.root, space)
        configs = sample(searched, Feasibility(searched, search.constraints(task.num_inputs)), search.samples, search.seed)
        shutil.rmtree(run.root)
        # the samples' tokenizers, trained (or found in the cache) here on the corpus distil() trains them on:
        # training one on the whole unlabelled half takes minutes (Unigram: tens of minutes), the GPU does not speed it up
        data, ground_truth = task.load(source, seed=SEED), GROUND_TRUTH  # both tasks: the CPU sizing that keeps the
        # paper table's BigCloneBench row teacher-only does not apply on a GPU
        corpus = distinct_texts([*data.unlabelled, *(data.labelled if ground_truth > 0 else [])])
        for c in configs:
            path = cached_path(c["tokenizer"], c["vocab_size"], corpus)
            if not path.is_file():
                print(f"{name}: training the {c['tokenizer']} {c['vocab_size']} tokenizer", file=sys.stderr, flush=True)
                train_tokenizer(c["tokenizer"], c["vocab_size"], corpus)
            if not (out / "tokenizers" / f"{path.name}.xz").is_file():
                with open(path, "rb") as src, lzma.open(out / "tokenizers" / f"{path.name}.xz", "wb", preset=9 | lzma.PRESET_EXTREME) as dst:
                    shutil.copyfileobj(src, dst)
        teacher_plan = spec["teacher"] | {k: v for k, v in (("max_length", args.teacher_tokens), ("epochs", args.teacher_epochs)) if v}
        plan["tasks"][name] = {"samples": configs, "teacher": teacher_plan, "epochs": args.epochs or spec["epochs"], "ground_truth": ground_truth}
    (out / "plan.json").write_text(json.dumps(plan, indent=1))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    counts = ", ".join(f"{t}: {len(p['samples'])} samples" for t, p in plan["tasks"].items())
    print(f"bundle {out}: {size / 2**20:.1f} MiB ({counts})")
    if size > 60 * 2**20:
        sys.exit(f"error: {out}: {size / 2**20:.1f} MiB; at most 64 MiB can be sent to the GPU machine")


def _unpack(bundle: Path, work: Path, tasks: list[str]) -> tuple[dict[str, Path], Path]:
    """Each task's data and the teacher in fp32, in ``work``; the samples' tokenizers into the cache."""
    import torch
    from safetensors.torch import load_file, save_file

    from avatar._io import cache_dir

    (cache_dir() / "tokenizers").mkdir(parents=True, exist_ok=True)
    for packed in (bundle / "tokenizers").glob("*.json.xz"):
        with lzma.open(packed, "rb") as src, open(cache_dir() / "tokenizers" / packed.name.removesuffix(".xz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    folders = {}
    for name in tasks:
        folders[name] = work / name
        folders[name].mkdir(parents=True, exist_ok=True)
        for packed in (bundle / name).glob("*.xz"):
            with lzma.open(packed, "rb") as src, open(folders[name] / packed.name.removesuffix(".xz"), "wb") as dst:
                shutil.copyfileobj(src, dst)
    teacher = work / "teacher"
    teacher.mkdir(exist_ok=True)
    for name in TEACHER_FILES:
        if (bundle / "teacher" / name).is_file():
            shutil.copy(bundle / "teacher" / name, teacher / name)
    weights = load_file(str(bundle / "teacher" / "model.fp16.safetensors"))
    save_file({k: v.to(torch.float32).contiguous() for k, v in weights.items()}, str(teacher / "model.safetensors"))
    return folders, teacher


def run(args) -> None:
    """There: every heavy stage of each task on the GPU, timed; results into ``args.out``."""
    import torch
    from transformers.utils import logging as hf_logging

    from avatar.device import accelerator
    from avatar.settings import DeviceConfig

    if args.device != "cpu" and not torch.cuda.is_available():  # the CPU only for a smoke test of this script
        sys.exit(f"error: no CUDA device (torch {torch.__version__}): benchmarks/gpu.py run is for a GPU machine")
    hf_logging.set_verbosity_error()
    start_all = time.perf_counter()
    device = DeviceConfig(device=args.device)
    accel = accelerator(device)
    plan = json.loads((args.bundle / "plan.json").read_text())
    tasks = args.tasks or list(plan["tasks"])
    out, work = args.out, args.out / "work"
    out.mkdir(parents=True, exist_ok=True)
    clock = _Clock(accel)
    folders, teacher_src = clock.time("unpack", lambda: _unpack(args.bundle, work, tasks))
    result = {
        "machine": f"{torch.cuda.get_device_name(accel.device) if accel.cuda else platform.processor() or 'cpu'}, torch {torch.__version__}, "
                   f"precision {'fp32' if accel.dtype is None else str(accel.dtype).removeprefix('torch.') + ' autocast'}",
        "command": "python benchmarks/gpu.py run " + " ".join(sys.argv[2:]),
        "tasks": {},
    }
    for name in tasks:
        result["tasks"][name] = run_task(name, plan, folders[name], teacher_src, out, work, device, accel, _Clock(accel, prefix=f"{name} "))
        (out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")  # what is done survives a later task's failure
    result["seconds"] = clock.seconds | {"total": round(time.perf_counter() - start_all, 1)}
    (out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"seconds": result["seconds"], **{t: r["seconds"] for t, r in result["tasks"].items()}}))


class _Clock:
    """Wall seconds of named stages, the device synchronised around each."""

    def __init__(self, accel, prefix: str = ""):
        self.accel, self.prefix, self.seconds = accel, prefix, {}

    def time(self, name: str, fn):
        self.accel.synchronize()
        t = time.perf_counter()
        value = fn()
        self.accel.synchronize()
        self.seconds[name] = round(time.perf_counter() - t, 1)
        print(f"{self.prefix}{name}: {self.seconds[name]} s", file=sys.stderr, flush=True)
        return value


def run_task(name: str, plan: dict, data_dir: Path, teacher_src: Path, out: Path, work: Path, device, accel, clock: _Clock) -> dict:
    """One task's teacher, soft labels, samples and student on the GPU; ``out/<name>.tar`` and
    ``out/<name>-soft_labels.json`` written; its results returned."""
    import numpy as np
    import torch

    from avatar.candidates import score_candidates, successive_halving
    from avatar.distill import distill
    from avatar.executor import LocalExecutor
    from avatar.labels import label, load_soft_labels
    from avatar.modeling import load_classifier
    from avatar.settings import DistillConfig, FinetuneConfig, SearchSettings
    from avatar.student import StudentConfig
    from avatar.stats import test_scores
    from avatar.tasks import get_task
    from avatar.teacher import data_fingerprints, finetune
    from avatar.trainer import encode_for, predict_logits

    task_plan, work = plan["tasks"][name], work / f"{name}-run"
    task = get_task(name)
    data = task.load(data_dir, seed=plan["seed"])
    t = task_plan["teacher"]
    ft = FinetuneConfig(model=str(teacher_src), max_length=t["max_length"], epochs=t["epochs"], learning_rate=t["learning_rate"],
                        batch_size=t["batch_size"], seed=plan["seed"])
    teacher = clock.time("teacher", lambda: finetune(task, data, work / "teacher-ft", ft, accel=accel))
    soft_file = out / f"{name}-soft_labels.json"
    clock.time("soft_labels", lambda: label(work / "teacher-ft", task, data.unlabelled, soft_file, accel=accel))
    model, tokenizer = load_classifier(work / "teacher-ft", task)
    teacher_logits = predict_logits(model.to(accel.device), encode_for(model, tokenizer, data.test, task), accel.eval_batch_size, accel=accel)
    del model

    search = SearchSettings(**plan["search"])
    full = DistillConfig(epochs=task_plan["epochs"], ground_truth=task_plan["ground_truth"], seed=plan["seed"])
    soft = load_soft_labels(soft_file)
    configs = task_plan["samples"]
    executor = LocalExecutor(1)  # one GPU: one candidate at a time, in this process

    def run_rung(rung: int, chosen: list[int]) -> list[dict]:
        return score_candidates([configs[i] for i in chosen], task.name, str(data_dir.resolve()), plan["seed"], soft_file, soft.key,
                                data_fingerprints(data), search.short_budget(full, rung), work / "candidates", executor,
                                threads=torch.get_num_threads(), device=asdict(device))

    metric = search.metric_for(task.num_classes)
    reached = clock.time("indicator_samples", lambda: successive_halving(len(configs), search.rungs, search.eta, run_rung,
                                                                           lambda r: r["valid"][metric]))
    top = max(r for r, _ in reached.values())
    best = max((i for i in reached if reached[i][0] == top), key=lambda i: reached[i][1]["valid"][metric])
    chosen = StudentConfig(**configs[best])
    student = clock.time("student", lambda: distill(task, data, soft, chosen, work / "student", full, accel=accel))
    smodel, stok = load_classifier(work / "student", task)
    student_logits = predict_logits(smodel, encode_for(smodel, stok, data.test, task), 64)  # fp32 on the CPU, as deployed
    np.save(work / "student" / "teacher_test_logits.npy", teacher_logits)
    (work / "student" / "candidates.json").write_text(json.dumps(
        [{"config": configs[i], "rung": r, "valid": res["valid"], "seconds": res["seconds"]} for i, (r, res) in sorted(reached.items())]))
    with tarfile.open(out / f"{name}.tar", "w") as tar:
        tar.add(work / "student", arcname=name)
    labels = np.array([ex.label for ex in data.test])
    labelled, unlabelled = len(data.labelled), len(data.unlabelled)
    per_example = task.num_inputs  # sequences an example is read as (a pair: two)
    return {
        "plan": {k: v for k, v in task_plan.items() if k != "samples"} | {"samples": len(configs)},
        "seconds": clock.seconds,
        "teacher": {"valid": teacher["valid"], "test": test_scores(task, labels, teacher_logits), "train_seconds": teacher["train_seconds"],
                    "sequences_per_second": _rate(t["epochs"] * labelled * per_example, teacher["train_seconds"]),
                    "tokens": t["max_length"], "batch_size": t["batch_size"]},
        "samples": {"count": len(configs), "rungs": search.rungs, "chosen": configs[best], "chosen_valid": reached[best][1]["valid"],
                    "rule": f"best measured validation {metric} at the top rung (the search itself needs pymoo, absent there)"},
        "student": {"valid": student["valid"], "test": test_scores(task, labels, student_logits),
                    "parameters": student["parameters"], "steps": student["steps"], "best_step": student["best_step"],
                    "train_seconds": student["train_seconds"], "examples": student["examples"],
                    "sequences_per_second": _rate(student["steps"] * chosen.batch_size * per_example, student["train_seconds"]),
                    "tokens": chosen.max_sequence_length, "batch_size": chosen.batch_size, "loss": student["loss"]},
        "examples": {"labelled": labelled, "unlabelled": unlabelled, "test": len(data.test)},
    }


def _rate(sequences: int, seconds: float) -> float | None:
    """Sequences per second; None where the time (rounded to 0.1 s) is too short to give one."""
    return round(sequences / seconds, 1) if seconds > 0 else None


NAMES = {"defect": "Devign", "clone": "BigCloneBench"}


def collect(args) -> None:
    """Here: the GPU run's results beside this CPU's measured training speeds (benchmarks/results/train_speed.json)."""
    from avatar.tasks import get_task

    r = json.loads((args.results / "gpu.json").read_text())
    cpu = json.loads((RESULTS / "train_speed.json").read_text())
    r["cpu_reference"] = {"file": "benchmarks/results/train_speed.json", "machine": cpu.get("machine"), "rows": cpu.get("rows", cpu)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gpu.json").write_text(json.dumps(r, indent=2) + "\n")

    def score(x: dict, m: str) -> str:
        lo, hi = x["interval95"][m]
        return f"{x[m]:.4f} [{lo:.4f}, {hi:.4f}]"

    def per_second(x: dict) -> str:
        return "—" if x["sequences_per_second"] is None else f"{x['sequences_per_second']:.0f}"

    lines = ["# The full-data pipeline on one GPU", "", f"Machine: {r['machine']}. Command: `{r['command']}` (after "
             "`python benchmarks/gpu.py prepare` here). Data: the whole labelled half for the teacher, the whole unlabelled "
             "half for the student, the full test set.", ""]
    for name, t in r["tasks"].items():
        main = get_task(name).main_metric
        te, st, ex = t["teacher"], t["student"], t["examples"]
        lines += [f"## {NAMES[name]}", "", f"{ex['labelled']:,} labelled, {ex['unlabelled']:,} unlabelled, {ex['test']:,} test examples; "
                  f"the student's epochs {t['plan']['epochs']}, ground-truth weight {t['plan']['ground_truth']}.", "",
                  f"| | test {main} [95 % interval] | test accuracy | ROC AUC | baseline ({main}) | train s | sequences/s |",
                  "|---|---|---|---|---|---|---|",
                  f"| teacher (MiniLM-L6, {te['tokens']} tokens) | {score(te['test'], main)} | {te['test']['accuracy']:.4f} | "
                  f"{te['test']['roc_auc']:.4f} | {te['test']['baseline'][main]:.4f} | {te['train_seconds']:.0f} | {per_second(te)} |",
                  f"| student ({st['parameters']:,} parameters, {st['tokens']} tokens) | {score(st['test'], main)} | {st['test']['accuracy']:.4f} | "
                  f"{st['test']['roc_auc']:.4f} | {st['test']['baseline'][main]:.4f} | {st['train_seconds']:.0f} | {per_second(st)} |",
                  "", "Stage wall times (s): " + ", ".join(f"{k} {v}" for k, v in t["seconds"].items()) + ".",
                  f"Indicator: {t['samples']['count']} samples, {t['samples']['rungs']} rungs; choice: {t['samples']['rule']}.", ""]
    lines += ["Run total: " + ", ".join(f"{k} {v} s" for k, v in r["seconds"].items()) + ".",
              "Speed-up per sequence over this CPU: compare the sequences/s above with benchmarks/results/train_speed.md "
              "(the same models' training speed on 2 CPU cores; the GPU run's tokens and batch sizes are in gpu.json).", ""]
    (RESULTS / "gpu.md").write_text("\n".join(lines))
    print((RESULTS / "gpu.md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--teacher", default="minilm")
    p.add_argument("--bundle", type=Path, default=BUNDLE)
    p.add_argument("--samples", type=int, help="indicator samples per task (default: benchmarks/paper_table.py's)")
    p.add_argument("--epochs", type=int, help="the students' epochs (default: " + ", ".join(f"{t} {s['epochs']}" for t, s in TASKS.items()) + ")")
    # smaller settings, for a smoke test of this script on the CPU
    p.add_argument("--budget-mb", type=float, help="the students' size budget (default: benchmarks/paper_table.py's, 3 MB)")
    p.add_argument("--sample-steps", type=int, help="optimiser steps of a sample at rung 0 (default: benchmarks/paper_table.py's)")
    p.add_argument("--teacher-tokens", type=int, help="tokens per function the teacher reads (default 400)")
    p.add_argument("--teacher-epochs", type=int, help="the teacher's epochs (default: " + ", ".join(f"{t} {s['teacher']['epochs']}" for t, s in TASKS.items()) + ")")
    p = sub.add_parser("run")
    p.add_argument("--bundle", type=Path, default=BUNDLE)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), help="a subset of the bundle's tasks (default: all of them)")
    p.add_argument("--device", default="cuda", help="cuda (cpu only to smoke-test this script)")
    p = sub.add_parser("collect")
    p.add_argument("results", type=Path)
    args = parser.parse_args()
    {"prepare": prepare, "run": run, "collect": collect}[args.step](args)


if __name__ == "__main__":
    main()
