"""Make the model `avatar scan` uses when given none (src/avatar/models/defect): the best measured Devign student,
exported int8 alone (about 1 MB), with its test figures and this command in its manifest.

    python benchmarks/distill.py          # first: the students (benchmarks/out/distill/student-3mb+ground-truth-seed42)
    python scripts/make_default_model.py [--student DIR] [--data-root ../shared/data]

The student is benchmarks/distill.py's 3 MB one trained with the labelled half's true labels (seed 42: test
accuracy 0.6043 in PyTorch; benchmarks/results/distill.md). Its threshold is the lowest whose validation
precision reaches TARGET_PRECISION: at the best validation F1 (the export's default) it would flag nine functions
in ten, which is no help in a review; the parity check runs on the whole Devign test split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avatar.cost import MB
from avatar.export import export
from avatar.runtime.model import BUILTIN
from avatar.settings import SEED, ExportConfig
from avatar.tasks import get_task

ROOT = Path(__file__).resolve().parent.parent
STUDENT = ROOT / "benchmarks" / "out" / "distill" / "student-3mb+ground-truth-seed42"
TARGET_PRECISION = 0.6  # validation precision the threshold must reach (the validation split is 45 % vulnerable)
REBUILD = "python benchmarks/distill.py && python scripts/make_default_model.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", type=Path, default=STUDENT)
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    task = get_task("defect")
    data = task.load(args.data_root / "devign", seed=SEED)
    config = ExportConfig(int8=True, fp32=False, parity_examples=len(data.test), target_precision=TARGET_PRECISION)
    about = {
        "data": f"Devign (CodeXGLUE defect detection, FFmpeg and QEMU): the teacher's soft labels on the "
                f"{len(data.unlabelled):,} functions of the unlabelled half and the true labels of the {len(data.labelled):,} of "
                f"the labelled half; checkpoint, calibration and threshold on validation ({len(data.valid):,}), figures on "
                f"test ({len(data.test):,})",
        "teacher": "MiniLM-L6 fine-tuned on Devign's labelled half (benchmarks/teacher.py)",
        "rebuild": REBUILD,
    }
    manifest = export(args.student, BUILTIN[1], data.test, data.valid, config, about)
    d = manifest["decisions"]["int8"]
    print(f"wrote {BUILTIN[1].relative_to(ROOT)}: int8 {manifest['sizes']['int8']['bytes'] / MB:.2f} MB, test accuracy "
          f"{d['scores']['accuracy']:.4f}, threshold {d['threshold']:.4f}: test precision {d['test']['precision']:.3f}, "
          f"recall {d['test']['recall']:.3f}, agreement with PyTorch {manifest['parity']['int8']['agreement']:.4f}")


if __name__ == "__main__":
    main()
