"""Fine-tune the MiniLM teacher on real Devign and BigCloneBench (CPU-sized subsets) and record the scores.

    python benchmarks/teacher.py                 # Devign, settings below (what benchmarks/results/teacher.md holds)
    python benchmarks/teacher.py --task clone    # BigCloneBench's CPU-sized subset (not in the committed results)

Reads ../shared/data (override with --data-root); writes benchmarks/results/teacher.{json,md}, merging with
results already there for the other task. Subsets are stratified and seeded (``stratified_sample``); the
settings of each run are written next to its scores.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import torch
import transformers
from transformers.utils import logging as hf_logging

from avatar.tasks import get_task, stratified_sample
from avatar.settings import FinetuneConfig
from avatar.teacher import finetune

HERE = Path(__file__).parent
RESULTS = HERE / "results"

# CPU budget (2 cores, about 3 training examples/s for MiniLM at 256 tokens). Devign: the whole labelled half
# (10,927 functions, about 65 min an epoch), 2 epochs, resumable from the end-of-epoch checkpoint (run the same
# command again after a kill); BigCloneBench: a subset (its CodeBERT teacher's predictions exist, see
# benchmarks/paper_table.py).
SETTINGS = {
    "defect": {"data": "devign", "train": None, "valid": None, "test": None, "epochs": 2},
    "clone": {"data": "bigclonebench", "train": 1000, "valid": 400, "test": 2000, "epochs": 1},
}
COMMON = {"model": "minilm", "max_length": 256, "lr": 5e-5, "batch_size": 16, "seed": 42}


def run(task_name: str, data_root: Path, out_root: Path) -> dict:
    s = SETTINGS[task_name]
    task = get_task(task_name)
    data = task.load(data_root / s["data"], seed=COMMON["seed"])
    full = {split: len(data.split(split)) for split in ("labelled", "valid", "test")}
    for split, n in (("labelled", s["train"]), ("valid", s["valid"]), ("test", s["test"])):
        if n is not None:
            setattr(data, split, stratified_sample(data.split(split), n, COMMON["seed"])[0])
    config = FinetuneConfig(
        model=COMMON["model"],
        max_length=COMMON["max_length"],
        epochs=s["epochs"], learning_rate=COMMON["lr"], batch_size=COMMON["batch_size"], seed=COMMON["seed"],
    )
    start = time.perf_counter()
    metrics = finetune(task, data, out_root / task_name, config)
    return uncertainty(task, data, out_root / task_name) | {
        "task": task_name,
        "data": f"../shared/data/{s['data']}",
        "full_split_sizes": full,
        "used": metrics["examples"],
        "epochs": s["epochs"],
        **COMMON,
        "valid": metrics["valid"],
        "test": metrics["test"],
        "best_step": metrics["best_step"],
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": round(time.perf_counter() - start, 1),
        "history": metrics["history"],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }


def uncertainty(task, data, model_dir: Path) -> dict:
    """The test score's 95 % bootstrap interval and baseline, from the saved teacher's predictions."""
    from avatar.modeling import load_classifier
    from avatar.stats import baseline, bootstrap_intervals
    from avatar.trainer import encode_for, score_and_margins

    model, tokenizer = load_classifier(model_dir, task)
    test = encode_for(model, tokenizer, data.test, task)
    _, margins = score_and_margins(task, model, test)
    labels = test.labels
    return {"test_interval95": bootstrap_intervals(task, labels, (margins > 0).astype(int), margins), "test_baseline": baseline(task, labels)}


def write_markdown(results: dict) -> None:
    command = " / ".join(dict.fromkeys(r["command"] for r in results["runs"].values()))  # each row's own
    lines = [
        "# MiniLM teacher fine-tuned on real data (CPU)",
        "",
        f"Command: `{command}`",
        "",
        "| task | train / valid / test used (full) | epochs | test acc [95 % interval] | majority-class acc | test P | test R | test F1 | test ROC AUC | valid main | train time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"].values():
        u, f, t = r["used"], r["full_split_sizes"], r["test"]
        main = "accuracy" if r["task"] == "defect" else "f1"
        ci = (r.get("test_interval95") or t["interval95"])["accuracy"]  # recorded by --add-uncertainty, or with the scores
        acc = f"{t['accuracy']:.4f} [{ci[0]:.3f}, {ci[1]:.3f}]"
        base = f"{(r.get('test_baseline') or t['baseline'])['accuracy']:.4f}"
        auc = f"{t['roc_auc']:.4f}" if t.get("roc_auc") is not None else "-"
        lines.append(
            f"| {r['task']} | {u['train']} / {u['valid']} / {u['test']} ({f['labelled']} / {f['valid']} / {f['test']}) "
            f"| {r['epochs']} | {acc} | {base} | {t['precision']:.4f} | {t['recall']:.4f} | {t['f1']:.4f} | {auc} "
            f"| {main} {r['valid'][main]:.4f} | {r['train_seconds']:.0f} s |"
        )
    lines += [
        "",
        f"Settings: model {COMMON['model']} (all-MiniLM-L6-v2, 22.7 M parameters), max length {COMMON['max_length']}, "
        f"lr {COMMON['lr']}, batch {COMMON['batch_size']}, seed {COMMON['seed']}, AdamW + linear warm-up/decay, "
        "best checkpoint by validation main metric (defect: accuracy, clone: F1).",
        "Train examples come from the labelled half of train; subsets are stratified and seeded.",
        *([] if "clone" in results["runs"] else [
            "BigCloneBench: not run on the full data here (about 3 pairs/s on this CPU); the clone students learn from the "
            "fine-tuned CodeBERT teacher's predictions instead (benchmarks/results/paper_table.md)."]),
        f"Machine: {results['machine']}.",
        "Library versions per run: "
        + "; ".join(f"{t}: transformers {r.get('versions', {}).get('transformers', 'not recorded (5.23.0, before the <5 pin)')}" for t, r in results["runs"].items())
        + ".",
    ]
    (RESULTS / "teacher.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    if sys.argv[1:2] == ["--add-uncertainty"]:  # intervals and baselines for a teacher already fine-tuned and kept
        add_uncertainty(sys.argv[2])
        return
    if sys.argv[1:2] == ["--keep-predictions"]:  # the teacher's logits, small enough to keep with the project
        keep_predictions(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(SETTINGS), action="append")
    parser.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--models-out", type=Path, default=HERE / "out" / "teacher")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "teacher.json"
    results = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    results["machine"] = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    command = "python benchmarks/teacher.py " + " ".join(sys.argv[1:])
    for task_name in args.task or ["defect"]:
        r = run(task_name, args.data_root, args.models_out)
        r["command"] = command.strip()
        results["runs"][task_name] = r
        path.write_text(json.dumps(results, indent=2) + "\n")
        write_markdown(results)
        print(json.dumps({k: r[k] for k in ("task", "test", "train_seconds")}))


ARTEFACTS = HERE / "artefacts"


def keep_predictions(task_name: str) -> None:
    """The fine-tuned teacher's logits on the unlabelled half, validation and test, as predictions files
    (``avatar label --predictions`` reads the unlabelled one): what the other benchmarks need of the teacher, kept
    with the project because the teacher took hours to fine-tune here and its 87 MB folder is not kept."""
    from avatar.modeling import load_classifier
    from avatar.trainer import encode_for, predict_logits

    s = SETTINGS[task_name]
    task = get_task(task_name)
    data = task.load(HERE.parent.parent / "shared" / "data" / s["data"], seed=COMMON["seed"])
    folder = HERE / "out" / "teacher" / task_name
    model, tokenizer = load_classifier(folder, task)
    out = ARTEFACTS / f"{task_name}-teacher"
    out.mkdir(parents=True, exist_ok=True)
    for split in ("unlabelled", "valid", "test"):
        examples = data.split(split)
        logits = predict_logits(model, encode_for(model, tokenizer, examples, task))
        rows = [{"id": ex.id, "logits": [round(float(v), 5) for v in row]} for ex, row in zip(examples, logits)]
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = json.loads((folder / "metrics.json").read_text())
    (out / "README.md").write_text(
        f"# The {task_name} teacher's predictions\n\n"
        f"Logits (class 0, class 1) of the MiniLM teacher of benchmarks/results/teacher.md ({task_name}: "
        f"{metrics['examples']['train']} training examples, settings in teacher.json) on the unlabelled half, the "
        "validation and the test split of ../shared/data, keyed by example id. Written by "
        f"`python benchmarks/teacher.py --keep-predictions {task_name}`. The soft labels of `avatar compress` come "
        f"from `avatar label --task {task_name} --data DIR --predictions unlabelled.jsonl --out soft_labels.json`.\n"
    )


def add_uncertainty(task_name: str) -> None:
    s = SETTINGS[task_name]
    task = get_task(task_name)
    data = task.load(HERE.parent.parent / "shared" / "data" / s["data"], seed=COMMON["seed"])
    if s["test"] is not None:
        data.test = stratified_sample(data.test, s["test"], COMMON["seed"])[0]
    path = RESULTS / "teacher.json"
    results = json.loads(path.read_text())
    results["runs"][task_name] |= uncertainty(task, data, HERE / "out" / "teacher" / task_name)
    path.write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results)


if __name__ == "__main__":
    main()
