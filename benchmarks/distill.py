"""Distil ~3 MB and ~1 MB students from the MiniLM teacher's soft labels on real Devign, with and without the
labelled half's ground truth (the ablation of [distill] ground_truth); measure them.

    python benchmarks/teacher.py --task defect   # first: the fine-tuned MiniLM teacher
    python benchmarks/distill.py

Labels the whole unlabelled half (10,927 functions) with the teacher, distils each variant below on it with
each of SEEDS (effectiveness reported as mean ± sd over seeds): the paper's teacher-only mode, and the same
student also trained on the labelled half's true labels (ground_truth 1, twice the examples an epoch); then
measures the teacher, the first seed's
students and the codebert-base architecture (random weights: costs only, at the teacher tokenizer's lengths)
in one interleaved run on this CPU. Writes benchmarks/results/distill.{json,md}. Stages are cached: soft labels
by teacher and data, a student by its folder's settings (and resumable from its end-of-epoch checkpoint), so a
rerun only measures again.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from avatar.cost import MB
from avatar.distill import distill
from avatar.labels import label, load_soft_labels
from avatar.measure import load_subjects, measure, ratios
from avatar.predictions import import_predictions
from avatar.report import ratio_sentence
from avatar.stats import BASELINE_RULE, learned_nothing
from avatar.settings import MINILM, DistillConfig, MeasureConfig
from avatar.student import StudentConfig
from avatar.tasks import get_task

HERE = Path(__file__).parent
RESULTS = HERE / "results"
STUDENTS = {
    "student-3mb": StudentConfig(tokenizer="BPE", vocab_size=3000, num_hidden_layers=4, hidden_size=96, num_attention_heads=4,
                                 intermediate_size=384, max_sequence_length=256, learning_rate=1e-3, batch_size=32),
    "student-1mb": StudentConfig(tokenizer="BPE", vocab_size=2000, num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                 intermediate_size=256, max_sequence_length=256, learning_rate=1e-3, batch_size=32),
}
SETTINGS = DistillConfig(epochs=2, temperature=2.0, alpha=0.0, ground_truth=0.0, patience=2)  # the paper's teacher-only loss; 2 epochs: about 7 min for the 3 MB student on 2 cores (twice that with ground truth)
VARIANTS = {  # name: (student, distillation settings)
    "student-3mb": ("student-3mb", SETTINGS),
    "student-3mb + ground truth": ("student-3mb", replace(SETTINGS, ground_truth=1.0)),
    "student-1mb": ("student-1mb", SETTINGS),
}
SEEDS = (42, 43, 44)
MEASURE = MeasureConfig(runs=50, warmup=5, energy_rounds=3, energy_seconds=2.0)
PAPER = "Avatar paper (Devign, CodeBERT teacher): 3 MB students, 160x smaller, up to 76x lower latency, 184x less energy"


def _folder(variant: str, seed: int) -> str:
    return f"{variant.replace(' + ', '+').replace(' ', '-')}-seed{seed}"


def _student(variant: str, seed: int, task, data, soft, out: Path) -> dict:
    name, base = VARIANTS[variant]
    cfg = STUDENTS[name]
    folder = out / _folder(variant, seed)
    settings = replace(base, seed=seed)
    metrics_file = folder / "metrics.json"
    if metrics_file.is_file():
        saved = json.loads(metrics_file.read_text())
        if saved["student"] == asdict(cfg) and saved["settings"] == asdict(settings):
            return saved
    return distill(task, data, soft, cfg, folder, settings)


KEPT = HERE / "artefacts" / "defect-teacher"  # the teacher's kept logits (benchmarks/teacher.py --keep-predictions defect)


def kept_test_scores(task, data) -> dict:
    """The teacher's test scores from its kept logits, as measurement records them (interval, baseline, correctness)."""
    import numpy as np

    from avatar.stats import baseline, bootstrap_intervals

    logits = {row["id"]: row["logits"] for row in map(json.loads, (KEPT / "test.jsonl").read_text().splitlines())}
    labels = np.array([ex.label for ex in data.test])
    margin = np.array([logits[ex.id][1] - logits[ex.id][0] for ex in data.test])
    preds = (margin > 0).astype(int)
    return {**task.metrics(labels.tolist(), preds.tolist(), margin.tolist()), "examples": len(labels),
            "interval95": bootstrap_intervals(task, labels, preds, margin), "baseline": baseline(task, labels),
            "prediction_spread": float(np.std(1 / (1 + np.exp(-margin)))), "correct": (preds == labels).astype(int).tolist()}


def _mean_sd(values: list[float]) -> list[float]:
    return [round(statistics.mean(values), 4), round(statistics.stdev(values), 4) if len(values) > 1 else 0.0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--teacher", type=Path, default=HERE / "out" / "teacher" / "defect")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "distill")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    here = (args.teacher / "model.safetensors").is_file()
    if not here and not (KEPT / "unlabelled.jsonl").is_file():
        sys.exit(f"error: {args.teacher}: no fine-tuned teacher; run python benchmarks/teacher.py --task defect first")

    task = get_task("defect")
    data = task.load(args.data_root / "devign", seed=42)
    start = time.perf_counter()
    if here:
        label(args.teacher, task, data.unlabelled, args.out / "soft_labels.json")
    else:  # the teacher's kept logits (its folder does not outlive a session here)
        import_predictions(task, KEPT / "unlabelled.jsonl", data.unlabelled, args.out / "soft_labels.json")
    label_seconds = time.perf_counter() - start
    soft = load_soft_labels(args.out / "soft_labels.json")
    students = {}
    for name in args.variants:
        runs = {seed: _student(name, seed, task, data, soft, args.out) for seed in SEEDS}
        students[name] = {
            "student": asdict(STUDENTS[VARIANTS[name][0]]),
            "settings": asdict(replace(VARIANTS[name][1], seed=None)),
            "loss": runs[SEEDS[0]]["loss"],
            "parameters": runs[SEEDS[0]]["parameters"],
            "seeds": {str(seed): {k: m[k] for k in ("valid", "test", "agreement_with_teacher", "train_seconds", "steps", "best_step", "examples")}
                      for seed, m in runs.items()},
            "test_mean_sd": {k: _mean_sd([m["test"][k] for m in runs.values()]) for k in ("accuracy", "f1", "roc_auc")},
            "valid_mean_sd": {k: _mean_sd([m["valid"][k] for m in runs.values()]) for k in ("accuracy", "f1")},
        }

    first = str(args.teacher) if here else "arch:minilm-l6"  # without its folder: its architecture's costs, its kept scores
    specs = [first, *(str(args.out / _folder(n, SEEDS[0])) for n in args.variants), "arch:codebert-base"]
    cfg = MEASURE if here else replace(MEASURE, length_tokenizer=MINILM)
    measured = measure(load_subjects(specs, task, data.test, cfg, seed=42), task, cfg)
    if not here:
        measured[0]["test"] = kept_test_scores(task, data)
    teacher, *rest = measured
    codebert = measured[-1]
    results = {
        "command": "python benchmarks/distill.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "data": {"unlabelled": len(data.unlabelled), "valid": len(data.valid), "test": len(data.test)},
        "teacher_label_seconds": round(label_seconds, 1),
        "settings": asdict(SETTINGS),
        "seeds": list(SEEDS),
        "students": students,
        "measured": measured,
        "vs_minilm_teacher": {r["model"]: ratios(teacher, r, task.main_metric) for r in rest},
        "vs_codebert_base_architecture": {r["model"]: ratios(codebert, r, task.main_metric) for r in measured[:-1]},
        "paper": PAPER,
        "teacher": "fine-tuned folder" if here else "kept logits (scores) and the minilm-l6 architecture (costs, random weights)",
        "names": {str(teacher["model"]): "MiniLM teacher", codebert["model"]: "arch:codebert-base",
                  **{str(args.out / _folder(n, SEEDS[0])): n for n in args.variants}},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distill.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results)
    print((RESULTS / "distill.md").read_text())


def write_markdown(r: dict) -> None:
    name = r["names"]
    m0 = r["measured"][0]
    lines = [
        "# Distilled students vs the MiniLM teacher on real Devign (CPU)",
        "",
        f"Command: `{r['command'].strip()}`  ",
        f"Machine: {r['machine']}. Data: distilled on the unlabelled half ({r['data']['unlabelled']} functions, "
        f"the teacher's soft labels; the ground-truth variant also the labelled half's true labels), best checkpoint by validation accuracy ({r['data']['valid']}), scored on the full "
        f"CodeXGLUE test set ({r['data']['test']}). Each student is trained with seeds {', '.join(map(str, r['seeds']))}. "
        f"The teacher is measured from its {r.get('teacher', 'fine-tuned folder')}.",
        "",
        "## Effectiveness over seeds (test set)",
        "",
        "| model | seeds | test accuracy mean ± sd | test F1 mean ± sd | test ROC AUC mean ± sd | valid accuracy mean ± sd |",
        "|---|---|---|---|---|---|",
    ]
    t0 = m0["test"]
    lines.append(f"| MiniLM teacher | 1 (fine-tuned once) | {t0['accuracy']:.4f} [{t0['interval95']['accuracy'][0]:.3f}, "
                 f"{t0['interval95']['accuracy'][1]:.3f}] | {t0['f1']:.4f} | {t0['roc_auc']:.4f} | - |")
    for n, s in r["students"].items():
        cell = lambda d, k: f"{d[k][0]:.4f} ± {d[k][1]:.4f}"  # noqa: E731
        lines.append(f"| {n} | {len(s['seeds'])} | {cell(s['test_mean_sd'], 'accuracy')} | {cell(s['test_mean_sd'], 'f1')} "
                     f"| {cell(s['test_mean_sd'], 'roc_auc')} | {cell(s['valid_mean_sd'], 'accuracy')} |")
    lines += [
        "",
        f"Baselines on this test set: {BASELINE_RULE['accuracy']} accuracy {t0['baseline']['accuracy']:.4f}, "
        f"{BASELINE_RULE['f1']} F1 {t0['baseline']['f1']:.4f}. The teacher's interval is a 95 % bootstrap interval.",
        "",
        f"## Costs, measured side by side (first seed's students, {m0['inputs']['functions']} test functions)",
        "",
        "| model | test acc [95 % interval] | params | size MB (fp32 weights / on disk) | tokens per input | latency ms p50 / p90 (batch 1) | ex/s (batch 32) | J / example | gCO2e / 1k ex |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in r["measured"]:
        t = m["test"]
        acc = "n/a (random weights)" if t is None else f"{t['accuracy']:.4f} [{t['interval95']['accuracy'][0]:.3f}, {t['interval95']['accuracy'][1]:.3f}]"
        disk = "-" if m["disk_bytes"] is None else f"{m['disk_bytes'] / MB:.2f}"
        energy = (f"{m['energy']['joules_per_example']:.4g} ({m['energy']['method']})" if m["energy"]["resolved"]
                  else f"unresolved ({m['energy']['method']})")
        lines.append(
            f"| {name[m['model']]} | {acc} | {m['parameters']:,} | {m['size_mb']:.2f} / {disk} | {m['inputs']['tokens_per_input']:.0f} "
            f"| {m['latency_ms']['median']:.2f} / {m['latency_ms']['p90']:.2f} | {m['throughput']['examples_per_second']:.1f} "
            f"| {energy} | {m['carbon']['grams_per_1000_examples']:.4g} |"
        )
    lines += ["", "Ratios (how many times smaller / faster / less energy; accuracy difference in points, with McNemar's test):", ""]
    for title, key in (("vs the MiniLM teacher", "vs_minilm_teacher"), ("vs the codebert-base architecture", "vs_codebert_base_architecture")):
        for model, q in r[key].items():
            diff = f", accuracy {100 * q['score_difference']:+.2f}" if "score_difference" in q else ""
            if "mcnemar" in q:
                diff += f" (McNemar p = {q['mcnemar']['p_value']:.3g})"
            lines.append(f"- {name[model]} {title}: {ratio_sentence(q)}{diff}")
    for m in r["measured"]:
        if m["test"] is not None and (why := learned_nothing(m["test"], "accuracy")):
            lines.append(f"- {name[m['model']]} {why}.")
    lines += [
        "",
        f"Energy: {m0['energy']['method']} ({m0['energy']['model'] or 'idle baseline subtracted'}), {m0['energy']['blocks']} "
        f"interleaved blocks of {m0['energy']['block_seconds']} s per model. Carbon at {m0['carbon']['g_per_kwh']} g/kWh "
        f"({m0['carbon']['region']}: {m0['carbon']['source']}).",
        f"Latency: model forward at batch 1, {m0['latency_ms']['runs']} interleaved runs per model on the same test functions; "
        f"the codebert-base architecture reads each at the teacher tokenizer's length, capped at {MEASURE.architecture_tokens} "
        "(CodeXGLUE's block size); the others their own tokenisation (mean tokens per input in the table).",
        "",
        "Students:",
        "",
    ]
    for n, s in r["students"].items():
        first = s["seeds"][str(r["seeds"][0])]
        lines.append(f"- {n}: `{json.dumps(s['student'])}`; loss: {s['loss']}; {s['parameters']:,} parameters; agreement with the teacher on its "
                     f"training data {first['agreement_with_teacher']:.3f} (seed {r['seeds'][0]}); {first['train_seconds']:.0f} s "
                     f"training, {first['steps']} steps")
    lines += ["", f"Paper, for reference (CodeBERT teachers, another machine): {r['paper']}.", ""]
    for model, q in r["vs_minilm_teacher"].items():
        if "mcnemar" not in q:
            continue
        p_value, loss = q["mcnemar"]["p_value"], -100 * q["score_difference"] / m0["test"]["accuracy"]
        lines.append(f"- {name[model]}: {abs(loss):.2f} % relative {'loss' if loss >= 0 else 'gain'} of accuracy on the teacher "
                     + (f"(McNemar p = {p_value:.3g}: not told apart from no difference, so it is not set beside the paper's "
                        "1.67 % average loss)" if p_value >= 0.05 else f"(McNemar p = {p_value:.3g}); the paper's average: 1.67 %"))
    (RESULTS / "distill.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown-only"]:  # rewrite distill.md from distill.json, measuring nothing
        write_markdown(json.loads((RESULTS / "distill.json").read_text()))
    else:
        main()
