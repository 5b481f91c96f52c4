"""The model avatar scan uses when given none: packaged, int8, with its measured figures and its rebuild command."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

from avatar.card import CARD
from avatar.runtime.model import BUILTIN, MANIFEST, ExportedModel, builtin_model

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("make_default_model", ROOT / "scripts" / "make_default_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_packaged_devign_student_is_int8_and_carries_its_figures():
    folder = builtin_model(1)
    assert folder == BUILTIN[1] and builtin_model(2) is None  # no pair model is packaged
    model = ExportedModel(folder)  # every file's hash checked against the manifest
    m, d = model.manifest, model.decision
    assert model.precision == "int8" and m["precisions"] == ["int8"] and m["task"] == "defect"
    assert m["sizes"]["int8"]["bytes"] < 1.5e6
    assert m["about"]["rebuild"] == _script().REBUILD and m["config"]["target_precision"] == _script().TARGET_PRECISION
    assert d["test"]["examples"] == d["scores"]["examples"] == m["parity"]["int8"]["examples"] == 2732  # the whole test split
    assert 0 < d["test"]["precision"] <= 1 and 0 < d["test"]["recall"] <= 1 and d["validation"]["precision"] >= _script().TARGET_PRECISION
    assert d["scores"]["accuracy"] > d["scores"]["baseline"]["accuracy"] and d["learned_nothing"] is None
    vulnerable = "int copy(char *dst, char *src) { char buf[8]; strcpy(buf, src); memcpy(dst, buf, strlen(src)); return 0; }"
    p = model.probabilities([(vulnerable,), ("int add(int a, int b) { return a + b; }",)])
    assert p.shape == (2,) and ((p >= 0) & (p <= 1)).all()


def test_the_package_ships_every_file_it_needs():
    import glob  # as setuptools expands package-data patterns (hidden files left out)

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["avatar"]
    package = ROOT / "src" / "avatar"
    shipped = {Path(f) for p in patterns for f in glob.glob(p, root_dir=package)}
    needed = [*ExportedModel(BUILTIN[1]).manifest["files"], MANIFEST, CARD]
    assert all(BUILTIN[1].relative_to(package) / name in shipped for name in needed)
