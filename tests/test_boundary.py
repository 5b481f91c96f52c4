"""The runtime boundary, statically: nothing under avatar/runtime/ imports torch, a training-only package, or
the training side of Avatar. Fast (ast only, nothing is imported), so it fails before any slow test runs."""

from __future__ import annotations

import ast
from pathlib import Path

from avatar.runtime import TRAINING_MODULES

RUNTIME = Path(__file__).resolve().parents[1] / "src" / "avatar" / "runtime"
# what the runtime may use of Avatar beyond itself: the package root (its version), the error type, atomic writes
ALLOWED_AVATAR = ("avatar", "avatar.errors", "avatar._io", "avatar.runtime")


def _allowed(name: str) -> bool:
    return any(name == a or (a != "avatar" and name.startswith(a + ".")) for a in ALLOWED_AVATAR)


def forbidden_imports(path: Path) -> list[str]:
    """``file:line: module`` for every import in ``path`` that the runtime may not make (anywhere in the file)."""
    problems = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside the runtime package by construction
                continue
            names = [node.module]
            if node.module == "avatar":  # from avatar import x: x is a module or a name of the package root
                names = [f"avatar.{a.name}" if a.name != "__version__" else "avatar" for a in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in TRAINING_MODULES or (top == "avatar" and not _allowed(name)):
                problems.append((node.lineno, f"{path.name}:{node.lineno}: {name}"))
    return [p for _, p in sorted(problems)]


def test_the_runtime_imports_nothing_from_training():
    files = sorted(RUNTIME.rglob("*.py"))
    assert len(files) >= 4
    assert [p for f in files for p in forbidden_imports(f)] == []


def test_the_checker_catches_each_kind_of_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import numpy\n"
        "from avatar.errors import AvatarError\n"
        "from avatar.runtime.model import ExportedModel\n"
        "def load():\n"
        "    import torch\n"  # hidden in a function: still forbidden
        "    from transformers import AutoModel\n"
        "from avatar.trainer import encode\n"
        "from avatar import modeling\n"
        "import sklearn.metrics\n"
    )
    assert forbidden_imports(bad) == ["bad.py:5: torch", "bad.py:6: transformers", "bad.py:7: avatar.trainer",
                                      "bad.py:8: avatar.modeling", "bad.py:9: sklearn.metrics"]
    clean = tmp_path / "clean.py"
    clean.write_text("import json\nimport numpy as np\nfrom avatar import __version__\nfrom avatar.errors import AvatarError\n")
    assert forbidden_imports(clean) == []
