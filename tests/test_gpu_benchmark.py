"""benchmarks/gpu.py end to end on tiny data, on the CPU: the bundle is made here, and the run step works
without the packages the GPU machine lacks (z3, pymoo, tree-sitter, codecarbon, Ray)."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

from conftest import write_clone_data, write_defect_data

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu.py"
ABSENT = ("z3", "pymoo", "tree_sitter", "tree_sitter_c", "tree_sitter_java", "codecarbon", "ray")
WITHOUT = "import runpy, sys\nfor m in {absent!r}:\n    sys.modules[m] = None\nsys.argv = {argv!r}\nrunpy.run_path({script!r}, run_name='__main__')\n"


def test_prepare_here_then_run_without_the_missing_packages(tmp_path, tiny_encoder):
    write_defect_data(tmp_path / "data" / "devign", sizes=(96, 24, 24))
    write_clone_data(tmp_path / "data" / "bigclonebench", sizes=(64, 20, 20))
    bundle, out = tmp_path / "bundle", tmp_path / "out"
    subprocess.run([sys.executable, str(SCRIPT), "prepare", "--data-root", str(tmp_path / "data"), "--teacher", str(tiny_encoder),
                    "--bundle", str(bundle), "--samples", "3", "--sample-steps", "2", "--budget-mb", "0.3", "--epochs", "1", "--teacher-tokens", "48",
                    "--teacher-epochs", "1"], check=True, cwd=tmp_path, capture_output=True)
    plan = json.loads((bundle / "plan.json").read_text())
    assert sorted(plan["tasks"]) == ["clone", "defect"] and (bundle / "teacher" / "model.fp16.safetensors").is_file()
    assert all(len(p["samples"]) == 3 for p in plan["tasks"].values())
    assert sorted(f.name for f in (bundle / "clone").iterdir()) == ["data.jsonl.xz", "test.txt.xz", "train.txt.xz", "valid.txt.xz"]
    # trained here on each task's corpus, shipped with the bundle
    kinds = {(t, c["tokenizer"], c["vocab_size"]) for t, p in plan["tasks"].items() for c in p["samples"]}
    assert len(list((bundle / "tokenizers").glob("*.json.xz"))) == len(kinds)
    argv = [str(SCRIPT), "run", "--bundle", str(bundle), "--out", str(out), "--device", "cpu"]
    proc = subprocess.run([sys.executable, "-c", WITHOUT.format(absent=ABSENT, argv=argv, script=str(SCRIPT))], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "gpu.json").read_text())
    # at most 8 files come back from the GPU machine
    assert sorted(p.name for p in out.iterdir()) == ["clone-soft_labels.json", "clone.tar", "defect-soft_labels.json", "defect.tar", "gpu.json"]
    assert set(result["seconds"]) == {"unpack", "total"}
    for name, test in (("defect", 24), ("clone", 20)):
        r = result["tasks"][name]
        assert set(r["seconds"]) == {"teacher", "soft_labels", "indicator_samples", "student"}
        assert r["examples"]["test"] == test and "interval95" in r["student"]["test"] and "interval95" in r["teacher"]["test"]
        with tarfile.open(out / f"{name}.tar") as tar:
            names = tar.getnames()
            candidates = json.load(tar.extractfile(f"{name}/candidates.json"))
        assert f"{name}/model.safetensors" in names and f"{name}/teacher_test_logits.npy" in names
        assert [c["rung"] for c in candidates].count(1) == 2  # successive halving promoted the better ceil(3 / 2)
        assert r["samples"]["chosen"] in [c["config"] for c in candidates if c["rung"] == 1]


def test_run_fails_at_once_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    proc = subprocess.run([sys.executable, str(SCRIPT), "run", "--bundle", str(tmp_path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "no CUDA device" in proc.stderr and not (tmp_path / "o").exists()
