"""Export a real Devign student to ONNX fp32 and int8, check parity on every Devign test function, and time `avatar scan`.

    python benchmarks/distill.py        # first: the students (benchmarks/out/distill/student-3mb+ground-truth-seed42)
    python benchmarks/scan.py [--student benchmarks/out/distill/student-3mb+ground-truth-seed42]

1. Export (fp32 + int8) with the parity check on all 2,732 Devign test functions: sizes of every file, the
   largest probability difference and the prediction agreement against PyTorch, and test accuracy of each.
2. Writes the test functions into C files (20 a file) under benchmarks/out/scan/src and scans them, fp32 and
   int8 interleaved, 3 rounds each, on this machine's cores: functions found by tree-sitter against those
   written, and functions per second for the whole scan (reading, parsing, tokenizing, inference), for
   inference alone, and for a cold `avatar scan` command (a new process: imports and model loading included).
Writes benchmarks/results/scan.{json,md}. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from avatar.cost import MB
from avatar.export import export
from avatar.settings import ExportConfig
from avatar.runtime.functions import find_functions, functions_in_source
from avatar.runtime.model import ExportedModel
from avatar.runtime.scan import scan
from avatar.tasks import get_task

HERE = Path(__file__).parent
RESULTS = HERE / "results"
PER_FILE = 20
ROUNDS = 3


def _write_sources(functions: list[str], folder: Path) -> int:
    """The functions, PER_FILE to a file, as a code base to scan; returns how many were written."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for start in range(0, len(functions), PER_FILE):
        (folder / f"devign_{start // PER_FILE:04d}.c").write_text("\n\n".join(functions[start : start + PER_FILE]) + "\n")
    return len(functions)


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(logits.argmax(axis=1) == labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--student", type=Path, default=HERE / "out" / "distill" / "student-3mb+ground-truth-seed42")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "scan")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite scan.md from scan.json")
    args = parser.parse_args()
    if args.markdown_only:
        write_markdown(json.loads((RESULTS / "scan.json").read_text()))
        return

    task = get_task("defect")
    data = task.load(args.data_root / "devign")
    test, valid = data.test, data.valid
    labels = np.array([ex.label for ex in test])
    start = time.perf_counter()
    manifest = export(args.student, args.out / "onnx", test, valid, ExportConfig(int8=True, parity_examples=len(test)))
    export_seconds = time.perf_counter() - start

    models = {p: ExportedModel(args.out / "onnx", p) for p in ("fp32", "int8")}
    student_metrics = json.loads((args.student / "metrics.json").read_text())
    accuracy = {"pytorch": student_metrics["test"]["accuracy"]}
    for p, model in models.items():
        accuracy[p] = _accuracy(model.logits([ex.texts for ex in test]), labels)

    alone = [len(functions_in_source(ex.texts[0].encode(), "c")) for ex in test]  # each function parsed on its own
    src = args.out / "src"
    written = _write_sources([ex.texts[0] for ex in test], src)
    warnings: list[str] = []
    found, files = find_functions([src], "c", warnings.append)
    parse_start = time.perf_counter()
    find_functions([src], "c", warnings.append)
    parse_seconds = time.perf_counter() - parse_start
    codes = [(f.code,) for f in found]

    whole: dict[str, list[float]] = {p: [] for p in models}
    inference: dict[str, list[float]] = {p: [] for p in models}
    for p, model in models.items():  # warm-up
        model.probabilities(codes[:64])
    for _ in range(ROUNDS):
        for p, model in models.items():
            t = time.perf_counter()
            scan([src], model, warn=lambda m: None)
            whole[p].append(time.perf_counter() - t)
            t = time.perf_counter()
            model.probabilities(codes)
            inference[p].append(time.perf_counter() - t)

    cold: dict[str, float] = {}
    beside = Path(sys.executable).parent / "avatar"  # the console script of this environment
    avatar = str(beside) if beside.is_file() else shutil.which("avatar") or "avatar"
    for p in models:
        t = time.perf_counter()
        subprocess.run([avatar, "scan", str(src), "--model", str(args.out / "onnx"), "--precision", p, "--format", "json",
                        "-o", str(args.out / f"scan-{p}.json")], check=True, capture_output=True)
        cold[p] = time.perf_counter() - t

    result = {
        "command": "python benchmarks/scan.py" + ("" if args.student == parser.get_default("student") else f" --student {args.student}"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, onnxruntime default threads",
        "student": {"folder": str(args.student.relative_to(HERE.parent)) if args.student.is_relative_to(HERE.parent) else str(args.student),
                    "parameters": student_metrics["parameters"], "config": student_metrics["student"]},
        "export_seconds": round(export_seconds, 1),
        "sizes_bytes": {p: s["bytes"] for p, s in manifest["sizes"].items()},
        "size_files": {p: s["files"] for p, s in manifest["sizes"].items()},
        "pytorch_weights_bytes": (args.student / "model.safetensors").stat().st_size,
        "parity": manifest["parity"],
        "test_accuracy": accuracy,
        "functions_written": written,
        "functions_found": len(found),
        "parsed_alone": {"one_function": alone.count(1), "none": alone.count(0), "more": sum(1 for k in alone if k > 1)},
        "files": files,
        "parse_seconds": round(parse_seconds, 3),
        "scan_seconds": {p: [round(s, 3) for s in v] for p, v in whole.items()},
        "inference_seconds": {p: [round(s, 3) for s in v] for p, v in inference.items()},
        "cold_command_seconds": {p: round(s, 2) for p, s in cold.items()},
        "functions_per_second": {
            p: {"scan": round(len(found) / statistics.median(whole[p]), 1),
                "inference": round(len(found) / statistics.median(inference[p]), 1),
                "cold_command": round(len(found) / cold[p], 1)} for p in models
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scan.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result)


def write_markdown(r: dict) -> None:
    mb = MB
    fps = r["functions_per_second"]
    lines = [
        "# Exported student: size, parity and scan throughput (CPU)", "",
        f"Command: `{r['command']}`  ",
        f"Machine: {r['machine']}. Student: `{r['student']['folder']}` ({r['student']['parameters']:,} parameters, "
        f"distilled from the MiniLM teacher on real Devign by benchmarks/distill.py).", "",
        "## Export and parity on every Devign test function", "",
        "| model | files | size MB | max probability difference vs PyTorch | agreement with PyTorch | test accuracy |",
        "|---|---|---|---|---|---|",
        f"| PyTorch (safetensors weights) | model.safetensors | {r['pytorch_weights_bytes'] / mb:.3f} | – | – | {r['test_accuracy']['pytorch']:.4f} |",
    ]
    for p in ("fp32", "int8"):
        q = r["parity"][p]
        lines.append(f"| ONNX {p} | {' + '.join(r['size_files'][p])} | {r['sizes_bytes'][p] / mb:.3f} | {q['max_prob_diff']:.2g} "
                     f"(mean {q['mean_prob_diff']:.2g}) | {q['agreement']:.4f} ({q['examples']} functions) | {r['test_accuracy'][p]:.4f} |")
    lines += [
        "", f"Export (both precisions, parity included) took {r['export_seconds']} s. Sizes count every file the runtime "
        "reads for that precision: graph, external weights if any, tokenizer.", "",
        "## avatar scan throughput", "",
        f"The {r['functions_written']:,} test functions written {PER_FILE} to a C file ({r['files']} files); tree-sitter found "
        f"{r['functions_found']:,} functions in them (parsing alone: {r['parse_seconds']} s). Parsed one by one, "
        f"{r['parsed_alone']['one_function']:,} of them are one function each and {r['parsed_alone']['none']} are no function "
        "definition to tree-sitter-c: Devign stores some functions without their return type (`aio_write_f(int argc, "
        "char **argv) {`), which is not a C definition; in a file, such a fragment can also hide the function after it.", "",
        "| precision | whole scan, functions/s | inference only, functions/s | cold `avatar scan` command, functions/s |",
        "|---|---|---|---|",
    ]
    for p in ("fp32", "int8"):
        lines.append(f"| {p} | {fps[p]['scan']} | {fps[p]['inference']} | {fps[p]['cold_command']} |")
    lines += [
        "", f"Whole scan and inference: median of {ROUNDS} interleaved rounds (seconds: scan {r['scan_seconds']}, "
        f"inference {r['inference_seconds']}). Cold command: one run of the console script in a new process, imports and "
        f"model loading included ({r['cold_command_seconds']} s). Batches of 32 functions grouped by length.",
    ]
    (RESULTS / "scan.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
