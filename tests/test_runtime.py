"""The torch-free runtime: tokenization equal to the training side's, clean errors on broken exports, no torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from avatar.errors import AvatarError
from avatar.runtime import TRAINING_MODULES
from avatar.runtime.model import MANIFEST, ExportedModel, load_tokenizer, positive_probability


@pytest.mark.parametrize("kind", ["BPE", "WordPiece", "Unigram", "WordLevel"])
def test_runtime_tokenization_equals_the_students(tmp_path, kind):
    from avatar.vocab import train_tokenizer

    code = [f"static int f{i}(char *p) {{ return p[{i}] + 0x{i:x}; /* é ünïcode */ }}" for i in range(60)]
    hf = train_tokenizer(kind, 400, code)
    hf.save_pretrained(tmp_path)
    raw = load_tokenizer(tmp_path / "tokenizer.json", 12)
    texts = code[:5] + ["", "x", "a very long line " * 20]
    assert [e.ids for e in raw.encode_batch(texts)] == hf(texts, truncation=True, max_length=12)["input_ids"]


def test_probabilities_and_pair_scores(exports):
    defect = ExportedModel(exports["defect"])
    assert defect.precision == "int8" and defect.task == "defect"
    p = defect.probabilities([("void f ( ) { strcpy }",), ("void f ( ) { strncpy }",)])
    assert p.shape == (2,) and np.all((p > 0) & (p < 1))
    clone = ExportedModel(exports["clone"], "fp32")
    a, b = "void f ( ) { sort v1 v2 }", "void f ( ) { parse v30 }"
    vectors = clone.embed([a, b])
    assert vectors.shape == (2, 32)
    np.testing.assert_allclose(clone.pair_logits(vectors[:1], vectors[1:]), clone.logits([(a, b)]), atol=1e-6)
    with pytest.raises(AvatarError, match="reads 2 function"):
        clone.logits([(a,)])
    with pytest.raises(AvatarError, match="embed needs a pair model"):
        defect.embed([a])


def test_positive_probability_is_a_stable_softmax():
    logits = np.array([[0.0, 0.0], [1.0, 3.0], [1000.0, -1000.0]], dtype=np.float32)
    np.testing.assert_allclose(positive_probability(logits), [0.5, 1 / (1 + np.exp(-2)), 0.0], atol=1e-12)


def _broken_copy(exports, tmp_path, name="defect"):
    folder = tmp_path / "broken"
    shutil.copytree(exports[name], folder)
    return folder


def test_corrupt_or_incomplete_exports_are_clear_errors(exports, tmp_path):
    folder = _broken_copy(exports, tmp_path)
    graph = folder / "model.int8.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(AvatarError, match=r"model\.int8\.onnx: model file is corrupt"):
        ExportedModel(folder)
    ExportedModel(folder, "fp32")  # the other precision is intact
    graph.unlink()
    with pytest.raises(AvatarError, match="model file missing"):
        ExportedModel(folder)
    with pytest.raises(AvatarError, match="has no int8 model"):
        ExportedModel(_fp32_only(exports, tmp_path), "int8")
    (folder / MANIFEST).write_text('{"format": 1,\n "task": }')
    with pytest.raises(AvatarError, match=r"avatar\.json:2: malformed JSON"):
        ExportedModel(folder)
    (folder / MANIFEST).unlink()
    with pytest.raises(AvatarError, match="not an exported model"):
        ExportedModel(folder)
    with pytest.raises(AvatarError, match="model folder not found"):
        ExportedModel(tmp_path / "nowhere")


def _fp32_only(exports, tmp_path):
    folder = tmp_path / "fp32-only"
    shutil.copytree(exports["defect"], folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["precisions"] = ["fp32"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


def test_a_graph_that_is_not_onnx_is_a_clear_error(exports, tmp_path):
    folder = _broken_copy(exports, tmp_path)
    (folder / "model.onnx").write_bytes(b"not a protobuf at all")
    manifest = json.loads((folder / MANIFEST).read_text())  # even with a matching hash, it must not load
    from avatar._io import sha256_file

    manifest["files"]["model.onnx"]["sha256"] = sha256_file(folder / "model.onnx")
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(AvatarError, match=r"model\.onnx: cannot load ONNX model"):
        ExportedModel(folder, "fp32")


def test_a_compress_run_folder_resolves_to_its_export(exports, tmp_path):
    shutil.copytree(exports["defect"], tmp_path / "run" / "onnx")
    assert ExportedModel(tmp_path / "run").folder == tmp_path / "run" / "onnx"


BLOCK_TRAINING_MODULES = textwrap.dedent(f"""
    import sys
    from importlib.abc import MetaPathFinder

    BLOCKED = {set(TRAINING_MODULES)!r}
    ATTEMPTED = []  # even an import that is caught and worked around is a failure of the runtime path

    class Block(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                ATTEMPTED.append(name)
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: runtime-only install)", name=name)

    sys.meta_path.insert(0, Block())
""")


def test_scanning_never_imports_torch(exports, tmp_path):
    """The runtime install has no torch: with the training packages blocked, the scan command still works."""
    src, scan_out, clones_out = tmp_path / "src", tmp_path / "scan.json", tmp_path / "clones.json"
    code = BLOCK_TRAINING_MODULES + textwrap.dedent(f"""
        from avatar.cli import app
        app(["scan", {str(src)!r}, "--model", {str(exports["defect"])!r}, "--format", "json", "--threshold", "0",
             "-o", {str(scan_out)!r}], standalone_mode=False)
        app(["clones", {str(src)!r}, {str(src)!r}, "--model", {str(exports["clone"])!r}, "--threshold", "0",
             "--format", "json", "-o", {str(clones_out)!r}], standalone_mode=False)
        print("ATTEMPTED", ATTEMPTED)
    """)
    src.mkdir()
    (src / "a.c").write_text("int f(int x) { return x; }\nint g(void) { return 1; }\n")
    (src / "A.java").write_text("class A { int f() { return 1; } int g() { return 2; } }\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ATTEMPTED []" in out.stdout
    scan = json.loads(scan_out.read_text())
    assert scan["functions"] == 2 and sorted(r["name"] for r in scan["results"]) == ["f", "g"]
    pairs = json.loads(clones_out.read_text())["pairs"]
    assert [(p["a"]["name"], p["b"]["name"]) for p in pairs] == [("A.f", "A.g")]


def test_scanning_with_the_training_install_present_still_leaves_torch_alone(exports, tmp_path):
    (tmp_path / "a.c").write_text("int f(int x) { return x; }\n")
    code = textwrap.dedent(f"""
        import sys
        from avatar.cli import app
        app(["scan", {str(tmp_path)!r}, "--model", {str(exports["defect"])!r}, "--threshold", "0"], standalone_mode=False)
        print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "sklearn")))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout and "1 of 1 function(s)" in out.stdout


def test_corrupt_external_weights_are_caught(exports, tmp_path):
    from avatar.export import export
    from avatar.settings import ExportConfig
    from avatar.tasks import get_task

    test = get_task("defect").load(exports["defect-data"]).test[:4]
    export(exports["defect-model"], tmp_path / "ext", test, test, ExportConfig(int8=False, external_data_mb=0))
    data = tmp_path / "ext" / "model.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0x01
    data.write_bytes(bytes(raw))
    with pytest.raises(AvatarError, match=r"model\.onnx\.data: model file is corrupt"):
        ExportedModel(tmp_path / "ext")


def test_a_training_command_without_the_training_install_says_so(tmp_path):
    code = BLOCK_TRAINING_MODULES + "from avatar.cli import main\nsys.argv = ['avatar', 'space']\nmain()\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "needs the training install (missing " in out.stderr and "'avatar-distill[train]'" in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


DEVIGN_STYLE = "static int add(int a, int b)\r\n\r\n{\r\n\r\n    int s = a + b;   \r\n\r\n\r\n    return s;\r\n\r\n}\r\n\r\n"
PLAIN = "static int add(int a, int b)\n{\n    int s = a + b;\n    return s;\n}\n"


def test_a_devign_style_function_and_the_same_without_blank_lines_read_the_same(exports, tmp_path):
    from avatar.runtime.text import normalize_code
    from avatar.tasks import get_task

    assert normalize_code(DEVIGN_STYLE) == normalize_code(PLAIN) == normalize_code(normalize_code(PLAIN))
    assert normalize_code(PLAIN).splitlines()[2] == "    int s = a + b;"  # indentation kept
    model = ExportedModel(exports["defect"], "fp32")
    assert model.encode([DEVIGN_STYLE]) == model.encode([PLAIN])  # what avatar scan reads
    # training, labelling and the parity check read examples as the task loads them: the same text
    data = tmp_path / "data"
    data.mkdir()
    for k, split in enumerate(("train", "valid", "test")):
        rows = [{"func": f, "target": i % 2, "idx": 10 * k + i} for i, f in enumerate([DEVIGN_STYLE, PLAIN] * 4)]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = get_task("defect").load(data)
    texts = {ex.texts[0] for split in ("labelled", "unlabelled", "valid", "test") for ex in loaded.split(split)}
    assert texts == {normalize_code(PLAIN)}
