"""The full-data Devign pipeline on one CUDA GPU, in one prepared run: teacher, soft labels, indicator samples,
the chosen 3 MB student for the paper's epochs; effectiveness with intervals, wall times, speed-up over this CPU.

    python benchmarks/gpu.py prepare                  # here (no GPU needed): the bundle, benchmarks/out/gpu-bundle
    python benchmarks/gpu.py run --out DIR            # on the GPU machine (fails at once without CUDA)
    python benchmarks/gpu.py collect DIR              # here: DIR's results -> benchmarks/results/gpu.{json,md}

The GPU machine this targets has PyTorch with transformers, tokenizers, scikit-learn, onnx(runtime), typer, rich
and safetensors, but no z3, pymoo, tree-sitter, codecarbon or Ray, no MiniLM weights and no network, takes at
most 64 MiB and gives back at most 8 files of 16 MiB. So the light stages that need z3 run here: ``prepare``
draws the indicator's samples from the SMT-cut space and packs them with their tokenizers (trained here, or taken
from the cache: training is CPU work the GPU does not speed up), the Devign data (xz) and the MiniLM teacher's
weights (fp16, made fp32 again there). ``run`` does the heavy stages on CUDA: the teacher fine-tuned
on the whole labelled half at CodeXGLUE's 400 tokens, its soft labels on the whole unlabelled half, every sample
distilled on the short budget of benchmarks/paper_table.py's search (successive halving), the best measured
sample (pymoo's search is not there: the honest fallback of avatar's choice) distilled on the whole unlabelled
half and, with weight GROUND_TRUTH, the labelled half's true labels, for EPOCHS epochs. It writes five files:
gpu.json, soft_labels.json, candidates.json, the student (student.tar) and the teacher's test logits. Sized for
one H200 to finish well inside 8 minutes; every stage's wall time is recorded.
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
TEACHER = {"max_length": 400, "epochs": 3, "learning_rate": 5e-5, "batch_size": 32}  # CodeXGLUE's block size for Devign
EPOCHS = 10  # the final student's epochs (DistillConfig's default)
GROUND_TRUTH = 1.0  # as benchmarks/paper_table.py
TEACHER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
SPLITS = ("train.jsonl", "valid.jsonl", "test.jsonl")


def prepare(args) -> None:
    """Here: the Devign data (xz), the teacher's weights (fp16), the samples drawn from the SMT-cut space."""
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
    from paper_table import SEARCH, SPACE

    out = args.bundle
    if out.exists():
        shutil.rmtree(out)
    (out / "devign").mkdir(parents=True)
    for name in SPLITS:
        with open(args.data_root / "devign" / name, "rb") as src, lzma.open(out / "devign" / f"{name}.xz", "wb", preset=9) as dst:
            shutil.copyfileobj(src, dst)
    teacher = Path(resolve_source(args.teacher))
    (out / "teacher").mkdir()
    for name in TEACHER_FILES:
        if (teacher / name).is_file():
            shutil.copy(teacher / name, out / "teacher" / name)
    save_file({k: v.half().contiguous() for k, v in load_file(str(teacher / "model.safetensors")).items()},
              str(out / "teacher" / "model.fp16.safetensors"))
    task = get_task("defect")
    search = replace(SEARCH, samples=args.samples or SEARCH.samples, sample_steps=args.sample_steps or SEARCH.sample_steps,
                     budget_mb=args.budget_mb or SEARCH.budget_mb)
    space = Space.paper().override(SPACE)
    run = Run(out / "space-run")
    with run.writing():
        space_stage(run, task, space, search)
    searched = searched_space(run.root, space)
    configs = sample(searched, Feasibility(searched, search.constraints(task.num_inputs)), search.samples, search.seed)
    # the samples' tokenizers, trained (or found in the cache) here on the corpus distil() trains them on: training
    # one on 22,000 functions takes minutes (Unigram: tens of minutes), the GPU does not speed it up
    data = task.load(args.data_root / "devign", seed=SEED)
    corpus = distinct_texts([*data.unlabelled, *(data.labelled if GROUND_TRUTH > 0 else [])])
    (out / "tokenizers").mkdir()
    for c in configs:
        path = cached_path(c["tokenizer"], c["vocab_size"], corpus)
        if not path.is_file():
            print(f"training the {c['tokenizer']} {c['vocab_size']} tokenizer", file=sys.stderr, flush=True)
            train_tokenizer(c["tokenizer"], c["vocab_size"], corpus)
        with open(path, "rb") as src, lzma.open(out / "tokenizers" / f"{path.name}.xz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    (out / "plan.json").write_text(json.dumps({"samples": configs, "search": asdict(search), "teacher": TEACHER | {k: v for k, v in (("max_length", args.teacher_tokens), ("epochs", args.teacher_epochs)) if v},
                                               "epochs": args.epochs or EPOCHS,
                                               "ground_truth": GROUND_TRUTH, "seed": SEED}, indent=1))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"bundle {out}: {size / 2**20:.1f} MiB ({len(configs)} samples)")
    if size > 60 * 2**20:
        sys.exit(f"error: {out}: {size / 2**20:.1f} MiB; at most 64 MiB can be sent to the GPU machine")


def _unpack(bundle: Path, work: Path) -> tuple[Path, Path]:
    """The data as jsonl and the teacher in fp32, in ``work``; the samples' tokenizers into the cache."""
    import torch
    from safetensors.torch import load_file, save_file

    from avatar._io import cache_dir

    (cache_dir() / "tokenizers").mkdir(parents=True, exist_ok=True)
    for packed in (bundle / "tokenizers").glob("*.json.xz"):
        with lzma.open(packed, "rb") as src, open(cache_dir() / "tokenizers" / packed.name.removesuffix(".xz"), "wb") as dst:
            shutil.copyfileobj(src, dst)

    data, teacher = work / "devign", work / "teacher"
    data.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        with lzma.open(bundle / "devign" / f"{name}.xz", "rb") as src, open(data / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    teacher.mkdir(exist_ok=True)
    for name in TEACHER_FILES:
        if (bundle / "teacher" / name).is_file():
            shutil.copy(bundle / "teacher" / name, teacher / name)
    weights = load_file(str(bundle / "teacher" / "model.fp16.safetensors"))
    save_file({k: v.to(torch.float32).contiguous() for k, v in weights.items()}, str(teacher / "model.safetensors"))
    return data, teacher


def run(args) -> None:
    """There: every heavy stage on the GPU, timed; results into ``args.out``."""
    import numpy as np
    import torch
    from transformers.utils import logging as hf_logging

    from avatar.candidates import score_candidates, successive_halving
    from avatar.device import accelerator
    from avatar.distill import distill
    from avatar.executor import LocalExecutor
    from avatar.labels import label, load_soft_labels
    from avatar.modeling import load_classifier
    from avatar.settings import DeviceConfig, DistillConfig, FinetuneConfig, SearchSettings
    from avatar.student import StudentConfig
    from avatar.stats import test_scores
    from avatar.tasks import get_task
    from avatar.teacher import data_fingerprints, finetune
    from avatar.trainer import encode_for, predict_logits

    if args.device != "cpu" and not torch.cuda.is_available():  # the CPU only for a smoke test of this script
        sys.exit(f"error: no CUDA device (torch {torch.__version__}): benchmarks/gpu.py run is for a GPU machine")
    hf_logging.set_verbosity_error()
    start_all = time.perf_counter()
    device = DeviceConfig(device=args.device)
    accel = accelerator(device)
    plan = json.loads((args.bundle / "plan.json").read_text())
    out, work = args.out, args.out / "work"
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    def timed(name, fn):
        accel.synchronize()
        t = time.perf_counter()
        value = fn()
        accel.synchronize()
        seconds[name] = round(time.perf_counter() - t, 1)
        print(f"{name}: {seconds[name]} s", file=sys.stderr, flush=True)
        return value

    data_dir, teacher_src = timed("unpack", lambda: _unpack(args.bundle, work))
    task = get_task("defect")
    data = task.load(data_dir, seed=plan["seed"])
    t = plan["teacher"]
    ft = FinetuneConfig(model=str(teacher_src), max_length=t["max_length"], epochs=t["epochs"], learning_rate=t["learning_rate"],
                        batch_size=t["batch_size"], seed=plan["seed"])
    teacher = timed("teacher", lambda: finetune(task, data, work / "teacher-ft", ft, accel=accel))
    soft_file = out / "soft_labels.json"
    timed("soft_labels", lambda: label(work / "teacher-ft", task, data.unlabelled, soft_file, accel=accel))
    model, tokenizer = load_classifier(work / "teacher-ft", task)
    teacher_logits = predict_logits(model.to(accel.device), encode_for(model, tokenizer, data.test, task), accel.eval_batch_size, accel=accel)
    np.save(out / "teacher_test_logits.npy", teacher_logits)
    del model

    search = SearchSettings(**plan["search"])
    full = DistillConfig(epochs=plan["epochs"], ground_truth=plan["ground_truth"], seed=plan["seed"])
    soft = load_soft_labels(soft_file)
    configs = plan["samples"]
    executor = LocalExecutor(1)  # one GPU: one candidate at a time, in this process

    def run_rung(rung: int, chosen: list[int]) -> list[dict]:
        return score_candidates([configs[i] for i in chosen], task.name, str(data_dir.resolve()), plan["seed"], soft_file, soft.key,
                                data_fingerprints(data), search.short_budget(full, rung), work / "candidates", executor,
                                threads=torch.get_num_threads(), device=asdict(device))

    metric = search.sample_metric
    reached = timed("indicator_samples", lambda: successive_halving(len(configs), search.rungs, search.eta, run_rung,
                                                                     lambda r: r["valid"][metric]))
    top = max(r for r, _ in reached.values())
    best = max((i for i in reached if reached[i][0] == top), key=lambda i: reached[i][1]["valid"][metric])
    chosen = StudentConfig(**configs[best])
    student = timed("student", lambda: distill(task, data, soft, chosen, work / "student", full, accel=accel))
    smodel, stok = load_classifier(work / "student", task)
    student_logits = predict_logits(smodel, encode_for(smodel, stok, data.test, task), 64)  # fp32 on the CPU, as deployed
    with tarfile.open(out / "student.tar", "w") as tar:
        tar.add(work / "student", arcname="student")
    (out / "candidates.json").write_text(json.dumps([{"config": configs[i], "rung": r, "valid": res["valid"], "seconds": res["seconds"]}
                                                     for i, (r, res) in sorted(reached.items())]))
    labelled, unlabelled = len(data.labelled), len(data.unlabelled)
    result = {
        "machine": f"{torch.cuda.get_device_name(accel.device) if accel.cuda else platform.processor() or 'cpu'}, torch {torch.__version__}, "
                   f"precision {'fp32' if accel.dtype is None else str(accel.dtype).removeprefix('torch.') + ' autocast'}",
        "command": "python benchmarks/gpu.py run " + " ".join(sys.argv[2:]),
        "plan": {k: v for k, v in plan.items() if k != "samples"} | {"samples": len(configs)},
        "seconds": seconds | {"total": round(time.perf_counter() - start_all, 1)},
        "teacher": {"valid": teacher["valid"], "test": test_scores(task, np.array([ex.label for ex in data.test]), teacher_logits),
                    "train_seconds": teacher["train_seconds"], "examples_per_second": round(t["epochs"] * labelled / teacher["train_seconds"], 1),
                    "tokens": t["max_length"], "batch_size": t["batch_size"]},
        "samples": {"count": len(configs), "rungs": search.rungs, "chosen": configs[best], "chosen_valid": reached[best][1]["valid"],
                    "rule": f"best measured validation {metric} at the top rung (the search itself needs pymoo, absent there)"},
        "student": {"valid": student["valid"], "test": test_scores(task, np.array([ex.label for ex in data.test]), student_logits),
                    "parameters": student["parameters"], "steps": student["steps"], "best_step": student["best_step"],
                    "train_seconds": student["train_seconds"], "examples": student["examples"],
                    "examples_per_second": round(student["steps"] * chosen.batch_size / student["train_seconds"], 1),
                    "tokens": chosen.max_sequence_length, "batch_size": chosen.batch_size, "loss": student["loss"]},
        "examples": {"labelled": labelled, "unlabelled": unlabelled, "test": len(data.test)},
    }
    (out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result["seconds"]))


def collect(args) -> None:
    """Here: the GPU run's results beside this CPU's measured training speeds (benchmarks/results/train_speed.json)."""
    r = json.loads((args.results / "gpu.json").read_text())
    cpu = json.loads((RESULTS / "train_speed.json").read_text())
    r["cpu_reference"] = {"file": "benchmarks/results/train_speed.json", "machine": cpu.get("machine"), "rows": cpu.get("rows", cpu)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gpu.json").write_text(json.dumps(r, indent=2) + "\n")
    s, te, st = r["seconds"], r["teacher"], r["student"]

    def score(x: dict, m: str) -> str:
        lo, hi = x["interval95"][m]
        return f"{x[m]:.4f} [{lo:.4f}, {hi:.4f}]"

    lines = [
        "# The full-data Devign pipeline on one GPU", "", f"Machine: {r['machine']}. Command: `{r['command']}` (after "
        "`python benchmarks/gpu.py prepare` here). Data: the whole labelled half "
        f"({r['examples']['labelled']:,}) for the teacher, the whole unlabelled half ({r['examples']['unlabelled']:,}) for the "
        f"student, the full test set ({r['examples']['test']:,}).", "",
        "| | test accuracy [95 % interval] | test F1 | ROC AUC | majority-class baseline | train s | examples/s |", "|---|---|---|---|---|---|---|",
        f"| teacher (MiniLM-L6, {te['tokens']} tokens) | {score(te['test'], 'accuracy')} | {te['test']['f1']:.4f} | {te['test']['roc_auc']:.4f} "
        f"| {te['test']['baseline']['accuracy']:.4f} | {te['train_seconds']:.0f} | {te['examples_per_second']:.0f} |",
        f"| student ({st['parameters']:,} parameters, {st['tokens']} tokens) | {score(st['test'], 'accuracy')} | {st['test']['f1']:.4f} "
        f"| {st['test']['roc_auc']:.4f} | {st['test']['baseline']['accuracy']:.4f} | {st['train_seconds']:.0f} | {st['examples_per_second']:.0f} |",
        "", "Stage wall times (s): " + ", ".join(f"{k} {v}" for k, v in s.items()) + ".",
        f"Indicator: {r['samples']['count']} samples, {r['samples']['rungs']} rungs; choice: {r['samples']['rule']}.",
        "Speed-up per example over this CPU: compare the examples/s above with benchmarks/results/train_speed.md "
        "(the same models' training speed on 2 CPU cores; the GPU run's tokens and batch sizes are in gpu.json).", ""]
    (RESULTS / "gpu.md").write_text("\n".join(lines))
    print((RESULTS / "gpu.md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    p.add_argument("--teacher", default="minilm")
    p.add_argument("--bundle", type=Path, default=BUNDLE)
    p.add_argument("--samples", type=int, help="indicator samples (default: benchmarks/paper_table.py's)")
    p.add_argument("--epochs", type=int, help=f"the student's epochs (default {EPOCHS})")
    # smaller settings, for a smoke test of this script on the CPU
    p.add_argument("--budget-mb", type=float, help="the students' size budget (default: benchmarks/paper_table.py's, 3 MB)")
    p.add_argument("--sample-steps", type=int, help="optimiser steps of a sample at rung 0 (default: benchmarks/paper_table.py's)")
    p.add_argument("--teacher-tokens", type=int, help=f"tokens per function the teacher reads (default {TEACHER['max_length']})")
    p.add_argument("--teacher-epochs", type=int, help=f"the teacher's epochs (default {TEACHER['epochs']})")
    p = sub.add_parser("run")
    p.add_argument("--bundle", type=Path, default=BUNDLE)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda", help="cuda (cpu only to smoke-test this script)")
    p = sub.add_parser("collect")
    p.add_argument("results", type=Path)
    args = parser.parse_args()
    {"prepare": prepare, "run": run, "collect": collect}[args.step](args)


if __name__ == "__main__":
    main()
