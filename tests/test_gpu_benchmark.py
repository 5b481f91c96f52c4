"""benchmarks/gpu.py end to end on tiny data, on the CPU: the bundle is made here, and the run step works
without the packages the GPU machine lacks (z3, pymoo, tree-sitter, codecarbon, Ray)."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import write_defect_data

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu.py"
ABSENT = ("z3", "pymoo", "tree_sitter", "tree_sitter_c", "tree_sitter_java", "codecarbon", "ray")
WITHOUT = "import runpy, sys\nfor m in {absent!r}:\n    sys.modules[m] = None\nsys.argv = {argv!r}\nrunpy.run_path({script!r}, run_name='__main__')\n"


def test_prepare_here_then_run_without_the_missing_packages(tmp_path, tiny_encoder):
    write_defect_data(tmp_path / "data" / "devign", sizes=(96, 24, 24))
    bundle, out = tmp_path / "bundle", tmp_path / "out"
    subprocess.run([sys.executable, str(SCRIPT), "prepare", "--data-root", str(tmp_path / "data"), "--teacher", str(tiny_encoder),
                    "--bundle", str(bundle), "--samples", "3", "--sample-steps", "2", "--budget-mb", "0.3", "--epochs", "1", "--teacher-tokens", "48",
                    "--teacher-epochs", "1"], check=True, cwd=tmp_path, capture_output=True)
    plan = json.loads((bundle / "plan.json").read_text())
    assert len(plan["samples"]) == 3 and (bundle / "teacher" / "model.fp16.safetensors").is_file()
    kinds = {(c["tokenizer"], c["vocab_size"]) for c in plan["samples"]}
    assert len(list((bundle / "tokenizers").glob("*.json.xz"))) == len(kinds)  # trained here, shipped with the bundle
    argv = [str(SCRIPT), "run", "--bundle", str(bundle), "--out", str(out), "--device", "cpu"]
    proc = subprocess.run([sys.executable, "-c", WITHOUT.format(absent=ABSENT, argv=argv, script=str(SCRIPT))], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "gpu.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["candidates.json", "gpu.json", "soft_labels.json", "student.tar", "teacher_test_logits.npy"]
    assert set(result["seconds"]) == {"unpack", "teacher", "soft_labels", "indicator_samples", "student", "total"}
    assert result["examples"]["test"] == 24 and "interval95" in result["student"]["test"]
    candidates = json.loads((out / "candidates.json").read_text())
    assert [c["rung"] for c in candidates].count(1) == 2  # successive halving promoted the better ceil(3 / 2)
    assert result["samples"]["chosen"] in [c["config"] for c in candidates if c["rung"] == 1]


def test_run_fails_at_once_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    proc = subprocess.run([sys.executable, str(SCRIPT), "run", "--bundle", str(tmp_path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "no CUDA device" in proc.stderr and not (tmp_path / "o").exists()
