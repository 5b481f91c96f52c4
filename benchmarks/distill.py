"""Distil ~3 MB (and ~1 MB) students from the MiniLM teacher's soft labels on real Devign; measure them.

    python benchmarks/teacher.py --task defect   # first: the fine-tuned MiniLM teacher
    python benchmarks/distill.py

Labels the whole unlabelled half (10,927 functions) with the teacher, distils each student below on it, then
measures teacher, students and the codebert-base architecture (random weights: costs only) in one interleaved
run on this CPU. Writes benchmarks/results/distill.{json,md}. Stages are cached: soft labels by teacher and
data, a student by its folder's settings, so a rerun only measures again.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from avatar.cost import MB
from avatar.distill import distill
from avatar.labels import label, load_soft_labels
from avatar.measure import load_subject, measure, ratios
from avatar.report import ratio_sentence
from avatar.settings import DistillConfig, MeasureConfig
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
SETTINGS = DistillConfig(epochs=3, temperature=2.0, alpha=0.0, patience=2, seed=42)  # 3 epochs: ~6 min each for the 3 MB student on 2 cores
MEASURE = MeasureConfig(runs=50, warmup=5, energy_rounds=3, energy_examples=16)
PAPER = "Avatar paper (Devign, CodeBERT teacher): 3 MB students, 160x smaller, up to 76x lower latency, 184x less energy, 1.67 % average effectiveness loss"


def _student(name: str, cfg: StudentConfig, task, data, soft, out: Path) -> dict:
    folder = out / name
    metrics_file = folder / "metrics.json"
    if metrics_file.is_file():
        saved = json.loads(metrics_file.read_text())
        if saved["student"] == asdict(cfg) and saved["settings"] == asdict(SETTINGS):
            return saved
    return distill(task, data, soft, cfg, folder, SETTINGS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--teacher", type=Path, default=HERE / "out" / "teacher" / "defect")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "distill")
    parser.add_argument("--students", nargs="*", default=list(STUDENTS), choices=list(STUDENTS))
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if not (args.teacher / "model.safetensors").is_file():
        sys.exit(f"error: {args.teacher}: no fine-tuned teacher; run python benchmarks/teacher.py --task defect first")

    task = get_task("defect")
    data = task.load(args.data_root / "devign", seed=42)
    start = time.perf_counter()
    label(args.teacher, task, data.unlabelled, args.out / "soft_labels.json")
    label_seconds = time.perf_counter() - start
    soft = load_soft_labels(args.out / "soft_labels.json")
    students = {name: _student(name, STUDENTS[name], task, data, soft, args.out) for name in args.students}

    specs = [str(args.teacher), *(str(args.out / n) for n in args.students), "arch:codebert-base"]
    subjects = [load_subject(s, task, data.test, data.test[: MEASURE.runs]) for s in specs]
    measured = measure(subjects, task, MEASURE)
    teacher, *rest = measured
    codebert = measured[-1]
    results = {
        "command": "python benchmarks/distill.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "data": {"unlabelled": len(data.unlabelled), "valid": len(data.valid), "test": len(data.test)},
        "teacher_label_seconds": round(label_seconds, 1),
        "settings": asdict(SETTINGS),
        "students": students,
        "measured": measured,
        "vs_minilm_teacher": {r["model"]: ratios(teacher, r, task.main_metric) for r in rest},
        "vs_codebert_base_architecture": {r["model"]: ratios(codebert, r, task.main_metric) for r in measured[:-1]},
        "paper": PAPER,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distill.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results)
    print((RESULTS / "distill.md").read_text())


def write_markdown(r: dict) -> None:
    name = {m["model"]: Path(m["model"]).name if not m["model"].startswith("arch:") else m["model"] for m in r["measured"]}
    name[r["measured"][0]["model"]] = "MiniLM teacher"
    lines = [
        "# Distilled students vs the MiniLM teacher on real Devign (CPU)",
        "",
        f"Command: `{r['command'].strip()}`  ",
        f"Machine: {r['machine']}. Data: distilled on the unlabelled half ({r['data']['unlabelled']} functions, "
        f"teacher soft labels only), best checkpoint by validation accuracy ({r['data']['valid']}), scored on the full "
        f"CodeXGLUE test set ({r['data']['test']}).",
        "",
        "| model | test acc | test F1 | params | size MB (fp32 weights / on disk; 1 MB = 2^20 bytes) | latency ms p50 / p90 (batch 1) | ex/s (batch 32) | J / example | gCO2e / 1k ex |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in r["measured"]:
        t = m["test"]
        acc, f1 = ("n/a (random weights)", "n/a") if t is None else (f"{t['accuracy']:.4f}", f"{t['f1']:.4f}")
        disk = "-" if m["disk_bytes"] is None else f"{m['disk_bytes'] / MB:.2f}"
        lines.append(
            f"| {name[m['model']]} | {acc} | {f1} | {m['parameters']:,} | {m['size_mb']:.2f} / {disk} "
            f"| {m['latency_ms']['median']:.2f} / {m['latency_ms']['p90']:.2f} | {m['throughput']['examples_per_second']:.1f} "
            f"| {m['energy']['joules_per_example']:.4f} ({m['energy']['method']}) | {m['carbon']['grams_per_1000_examples']:.4f} |"
        )
    lines += ["", "Ratios (how many times smaller / faster / less energy; accuracy difference in points):", ""]
    for title, key in (("vs the MiniLM teacher", "vs_minilm_teacher"), ("vs the codebert-base architecture", "vs_codebert_base_architecture")):
        for model, q in r[key].items():
            diff = f", accuracy {100 * q['score_difference']:+.2f}" if "score_difference" in q else ""
            lines.append(f"- {name[model]} {title}: {ratio_sentence(q)}{diff}")
    m0 = r["measured"][0]
    lines += [
        "",
        f"Energy method: {m0['energy']['method']} (no RAPL counters on this machine: CodeCarbon's estimate, labelled as such). "
        f"Carbon at {m0['carbon']['g_per_kwh']} g/kWh ({m0['carbon']['region']}: {m0['carbon']['source']}). "
        f"Each energy block is {MEASURE.energy_examples} batch-1 passes (well under a second for the students), "
        "where CodeCarbon's estimate is coarse: read the energy ratios as indicative, the latency ratios as measured.",
        f"Latency: model forward only (tokenisation excluded), {m0['latency_ms']['runs']} interleaved runs per model on test functions; "
        "the codebert-base architecture reads 400-token inputs (CodeXGLUE's block size), the others their own tokenisation.",
        "",
        "Students:",
        "",
    ]
    for n, s in r["students"].items():
        lines.append(f"- {n}: `{json.dumps(s['student'])}`; {s['parameters']:,} parameters; valid acc {s['valid']['accuracy']:.4f}; "
                     f"agreement with teacher on its training data {s['agreement_with_teacher']:.3f}; {s['train_seconds']:.0f} s training, {s['steps']} steps")
    lines += ["", f"Paper, for reference: {r['paper']}."]
    (RESULTS / "distill.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown-only"]:  # rewrite distill.md from distill.json, measuring nothing
        write_markdown(json.loads((RESULTS / "distill.json").read_text()))
    else:
        main()
