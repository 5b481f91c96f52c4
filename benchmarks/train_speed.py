"""Training speed on this CPU: sequences/s of the MiniLM teacher and two student sizes on real Devign functions,
before and after removing the waste found by profiling (padding: batches of random lengths are padded to their
longest function), at 1 and 2 threads.

    python benchmarks/train_speed.py [--examples 1600]

Each variant trains one epoch with ``Trainer.train`` on the same real functions (their own tokenisation, 256
tokens at most) with a validation set of 8 so that validating costs nothing; "before" is plain random batches
(``length_buckets`` 1), "after" batches drawn from pools sorted by length (``length_buckets`` as below). Writes
benchmarks/results/train_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from avatar.modeling import build_student, load_pretrained
from avatar.settings import MINILM, TrainConfig
from avatar.tasks import get_task
from avatar.trainer import Trainer, batch_rows, encode
from avatar.vocab import distinct_texts, train_tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from distill import STUDENTS  # noqa: E402  (the benchmark students, defined once)

HERE = Path(__file__).parent
RESULTS = HERE / "results"
BUCKETS = 50  # the distillation default this benchmark measures
MAX_LENGTH = 256


def padding_share(data, batches) -> float:
    real = sum(len(t) for b in batches for r in b for t in data.tokens[r])
    padded = sum(len(b) * len(data.tokens[b[0]]) * max(len(t) for r in b for t in data.tokens[r]) for b in batches)
    return 1 - real / padded


def run(name: str, build, tokenizer, examples, batch_size: int, threads: int, buckets: int, lr: float) -> dict:
    torch.set_num_threads(threads)
    task = get_task("defect")
    data = encode(tokenizer, examples, MAX_LENGTH)
    valid = data.subset(range(8))
    torch.manual_seed(0)
    model = build()
    cfg = TrainConfig(epochs=1, learning_rate=lr, batch_size=batch_size, warmup_ratio=0.0, length_buckets=buckets, seed=0)
    trainer = Trainer(model, task, cfg, data, valid)
    batches = list(batch_rows(data, batch_size, torch.Generator().manual_seed(0), buckets))  # what the epoch pads (same seed)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"model": name, "threads": threads, "length_buckets": buckets, "batch_size": batch_size, "sequences": len(data),
            "seconds": round(seconds, 2), "sequences_per_second": round(len(data) / seconds, 2),
            "padding_share": round(padding_share(data, batches), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--examples", type=int, default=1600, help="real functions per student variant (the teacher gets a quarter)")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    task = get_task("defect")
    functions = task.load(args.data_root / "devign").unlabelled
    rows = []
    for name, cfg in STUDENTS.items():
        examples = functions[: args.examples]
        tokenizer = train_tokenizer(cfg.tokenizer, cfg.vocab_size, distinct_texts(examples))
        for threads in (1, 2):
            for buckets in (1, BUCKETS):
                rows.append(run(name, lambda: build_student(task, cfg), tokenizer, examples, cfg.batch_size, threads, buckets,
                                cfg.learning_rate))
                print(json.dumps(rows[-1]), file=sys.stderr)
    _, teacher_tokenizer = load_pretrained(task, MINILM)
    for buckets in (1, BUCKETS):
        rows.append(run("MiniLM teacher", lambda: load_pretrained(task, MINILM)[0], teacher_tokenizer, functions[: args.examples // 4],
                        16, 2, buckets, 5e-5))
        print(json.dumps(rows[-1]), file=sys.stderr)
    result = {"command": "python benchmarks/train_speed.py " + " ".join(sys.argv[1:]),
              "machine": f"{platform.machine()}, torch {torch.__version__}", "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result)
    print((RESULTS / "train_speed.md").read_text())


def write_markdown(r: dict) -> None:
    lines = ["# Training speed on this CPU (sequences/s, one epoch of real Devign functions)", "",
             f"Command: `{r['command'].strip()}`  ", f"Machine: {r['machine']}.", "",
             "| model | threads | batches | batch size | sequences | padding share | sequences/s |", "|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        kind = "random (before)" if x["length_buckets"] == 1 else f"length-sorted pools of {x['length_buckets']} (after)"
        lines.append(f"| {x['model']} | {x['threads']} | {kind} | {x['batch_size']} | {x['sequences']} | {100 * x['padding_share']:.1f} % "
                     f"| {x['sequences_per_second']:.1f} |")
    (RESULTS / "train_speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
