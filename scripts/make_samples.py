"""Cut the small real sample shipped in src/avatar/samples/ out of ../shared/data (run once; seeded).

    python scripts/make_samples.py ../shared/data src/avatar/samples
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

SEED = 20261123
DEFECT_SIZES = {"train": 400, "valid": 100, "test": 100}
CLONE_SIZES = {"label_train": 200, "unlabel_train": 200, "valid": 100, "test": 100}


def stratified(lines: list, label_of, n: int, rng: random.Random) -> list:
    by_label: dict[int, list] = {}
    for line in lines:
        by_label.setdefault(label_of(line), []).append(line)
    picked = []
    for k, (_, group) in enumerate(sorted(by_label.items())):
        share = n - len(picked) if k == len(by_label) - 1 else round(n * len(group) / len(lines))
        picked += rng.sample(group, share)
    order = {id(x): i for i, x in enumerate(lines)}
    return sorted(picked, key=lambda x: order[id(x)])


def main(src: Path, dst: Path) -> None:
    rng = random.Random(SEED)
    out = dst / "defect"
    out.mkdir(parents=True, exist_ok=True)
    for split, n in DEFECT_SIZES.items():
        lines = (src / "devign" / f"{split}.jsonl").read_text().splitlines()
        picked = stratified(lines, lambda s: json.loads(s)["target"], n, rng)
        (out / f"{split}.jsonl").write_text("\n".join(picked) + "\n")

    out = dst / "clone"
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for split, n in CLONE_SIZES.items():
        lines = (src / "bigclonebench" / f"{split}.txt").read_text().splitlines()
        picked = stratified(lines, lambda s: int(s.split("\t")[2]), n, rng)
        used.update(x for line in picked for x in line.split("\t")[:2])
        (out / f"{split}.txt").write_text("\n".join(picked) + "\n")
    functions = [
        line for line in (src / "bigclonebench" / "data.jsonl").read_text().splitlines() if json.loads(line)["idx"] in used
    ]
    (out / "data.jsonl").write_text("\n".join(functions) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
