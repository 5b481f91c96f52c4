"""A real multi-class task end to end: `avatar compress --task classify` on Devign's project x target (4 classes).

    python benchmarks/multiclass.py

The data set is built here, honestly, from ../shared/data/devign: each function's class is its project crossed
with its label (FFmpeg/clean, FFmpeg/vulnerable, qemu/clean, qemu/vulnerable), the splits are Devign's own
(train, valid, test), and the two vulnerable classes are the ones that mean a finding. It is written as a user's
own data set would be: CSV files with the fields `id`, `code`, `class` and a `task.toml` that names them, so the
run exercises the generic reader, four logits through every stage, macro-F1, temperature calibration and the
threshold on P(vulnerable). Sized to 2 CPU cores: the MiniLM teacher fine-tuned on TEACHER_LIMIT labelled
functions, 8 indicator samples at 40 steps, the student distilled with the labelled half's true labels.

The run (benchmarks/out/multiclass/run) is resumable: run the command again after a kill. Writes
benchmarks/results/multiclass.{md,json}.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from avatar.config import CompressConfig
from avatar.pipeline import compress
from avatar.report import headline, ratio_lines
from avatar.settings import MINILM, DistillConfig, FinetuneConfig, MeasureConfig, SearchSettings

HERE = Path(__file__).parent
OUT = HERE / "out" / "multiclass"
RESULTS = HERE / "results"
TEACHER_LIMIT = 3000  # labelled functions the teacher is fine-tuned on (of 10,927): about 20 min an epoch here
TASK_FILE = """# Devign's project crossed with its label: four classes, the vulnerable ones are findings
language = "c"
code_field = "code"
label_field = "class"
id_field = "id"
classes = ["FFmpeg/clean", "FFmpeg/vulnerable", "qemu/clean", "qemu/vulnerable"]
positive = ["FFmpeg/vulnerable", "qemu/vulnerable"]
"""


def build(devign: Path, out: Path) -> Path:
    """The 4-class data folder (CSV, as a user's own would be), written once."""
    if (out / "task.toml").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        with open(devign / f"{split}.jsonl") as src, open(out / f"{split}.csv", "w", newline="") as dst:
            w = csv.writer(dst)
            w.writerow(["id", "code", "class"])
            for line in src:
                r = json.loads(line)
                w.writerow([r["idx"], r["func"], f"{r['project']}/{'vulnerable' if r['target'] else 'clean'}"])
    (out / "task.toml").write_text(TASK_FILE)  # last: its presence says the folder is complete
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    data = build(args.data_root / "devign", OUT / "data")
    config = CompressConfig(
        task="classify", data=str(data.resolve()), teacher=MINILM, budget_mb=3.0, seed=42,
        finetune=FinetuneConfig(epochs=2, limit=TEACHER_LIMIT, learning_rate=5e-5, batch_size=16),
        search=SearchSettings(samples=8, sample_steps=40, sample_limit=2000, sample_eval_limit=1000, population=40, generations=30),
        distill=DistillConfig(epochs=3, patience=2, ground_truth=1.0),
        measure=MeasureConfig(runs=30, warmup=5, throughput_examples=64, energy_rounds=2, energy_seconds=1.0,
                              architectures=["codebert-base"], length_tokenizer=MINILM),
        space={"position_embedding_type": ["absolute"]},
    )
    config.validate()
    run = compress(config, OUT / "run", on_end=lambda s: print(f"multiclass: {s.name} {'up to date' if s.reused else f'{s.seconds:.0f} s'}",
                                                             file=sys.stderr))
    metrics = json.loads((OUT / "run" / "metrics.json").read_text())
    manifest = json.loads((OUT / "run" / "onnx" / "avatar.json").read_text())
    result = {
        "command": "python benchmarks/multiclass.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "data": "Devign's train/valid/test, class = project x target (benchmarks/multiclass.py)",
        "classes": manifest["classes"], "positive": manifest["positive"],
        "stage_seconds": {name: s.seconds for name, s in run.stages.items()},
        "metrics": metrics,
        "decisions": manifest["decisions"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "multiclass.json").write_text(json.dumps(result, indent=2) + "\n")
    columns, rows = headline(metrics)
    lines = ["# A 4-class task end to end (Devign project x target, CPU)", "",
             f"Command: `{result['command'].strip()}`. Machine: {result['machine']}. Classes: {', '.join(result['classes'])}; "
             f"findings: {', '.join(result['positive'])}. Teacher: MiniLM-L6 fine-tuned on {TEACHER_LIMIT} labelled functions.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *("| " + " | ".join(r) + " |" for r in rows), "",
             *(f"- {line}" for line in ratio_lines(metrics))]
    for precision, d in manifest["decisions"].items():
        if "validation" in d:
            lines.append(f"- {precision}: threshold {d['threshold']:.4g} on P(vulnerable) ({d['rule']}): precision "
                         f"{d['test']['precision']:.3f}, recall {d['test']['recall']:.3f} on test.")
    lines.append(f"- Stage seconds: {', '.join(f'{k} {v:.0f}' for k, v in result['stage_seconds'].items())}.")
    (RESULTS / "multiclass.md").write_text("\n".join(lines) + "\n")
    print((RESULTS / "multiclass.md").read_text())


if __name__ == "__main__":
    main()
