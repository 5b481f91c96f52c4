"""ONNX export: graphs, int8, sizes that count every file, parity against PyTorch, and atomic output."""

from __future__ import annotations

import json

from avatar.card import CARD

import numpy as np
import pytest

from avatar.errors import AvatarError
from avatar._io import KIND
from avatar.export import export, graph_and_data_files
from avatar.settings import ExportConfig
from avatar.modeling import load_classifier
from avatar.runtime.model import MANIFEST, ExportedModel
from avatar.tasks import get_task
from avatar.trainer import encode, predict_logits


def _manifest(folder):
    return json.loads((folder / MANIFEST).read_text())


@pytest.mark.parametrize("task", ["defect", "clone"])
def test_export_matches_pytorch_in_fp32_and_int8(exports, task):
    m = _manifest(exports[task])
    assert m["task"] == task and m["precisions"] == ["fp32", "int8"]
    assert m["parity"]["fp32"]["max_prob_diff"] < 1e-4 and m["parity"]["fp32"]["agreement"] == 1.0
    assert m["parity"]["int8"]["max_prob_diff"] < 0.1 and m["parity"]["int8"]["agreement"] >= 0.95
    # the runtime's logits, checked here independently of the export's own parity code
    t = get_task(task)
    model, tokenizer = load_classifier(exports[f"{task}-model"], t)
    test = t.load(exports[f"{task}-data"]).test
    reference = predict_logits(model, encode(tokenizer, test, 64))
    got = ExportedModel(exports[task], "fp32").logits([ex.texts for ex in test])
    np.testing.assert_allclose(got, reference, atol=1e-5)


def test_sizes_count_every_file_a_precision_needs(exports):
    folder = exports["clone"]
    m = _manifest(folder)
    for precision, size in m["sizes"].items():
        assert size["bytes"] == sum((folder / f).stat().st_size for f in size["files"])
        assert "tokenizer.json" in size["files"]
    assert set(m["sizes"]["int8"]["files"]) == {"tokenizer.json", "encoder.int8.onnx", "head.int8.onnx"}
    assert (folder / "encoder.int8.onnx").stat().st_size < (folder / "encoder.onnx").stat().st_size
    assert set(m["files"]) == {p.name for p in folder.iterdir()} - {MANIFEST, KIND, CARD}  # marker and card are not the model's


def test_external_weights_are_counted_listed_and_loaded(tmp_path, exports):
    data = get_task("defect").load(exports["defect-data"])
    m = export(exports["defect-model"], tmp_path / "ext", data.test, data.valid, ExportConfig(int8=True, external_data_mb=0))
    files = m["sizes"]["fp32"]["files"]
    assert "model.onnx.data" in files and "model.int8.onnx.data" in m["sizes"]["int8"]["files"]
    assert [p.name for p in graph_and_data_files(tmp_path / "ext" / "model.onnx")] == ["model.onnx", "model.onnx.data"]
    assert m["sizes"]["fp32"]["bytes"] == sum((tmp_path / "ext" / f).stat().st_size for f in files)
    assert (tmp_path / "ext" / "model.onnx.data").stat().st_size > (tmp_path / "ext" / "model.onnx").stat().st_size
    assert m["parity"]["fp32"]["max_prob_diff"] < 1e-4 and "model.onnx.data" in m["files"]


def test_an_int8_only_export_keeps_no_fp32_graph_and_says_so(tmp_path, exports):
    data = get_task("clone").load(exports["clone-data"])
    about = {"data": "synthetic", "rebuild": "python make_it.py"}
    m = export(exports["clone-model"], tmp_path / "int8", data.test, data.valid, ExportConfig(int8=True, fp32=False), about)
    folder = tmp_path / "int8"
    assert m == _manifest(folder) and m["precisions"] == ["int8"] and m["about"] == about
    assert set(m["files"]) == {"tokenizer.json", "encoder.int8.onnx", "head.int8.onnx"}
    assert {p.name for p in folder.iterdir()} == set(m["files"]) | {MANIFEST, KIND, CARD}
    assert set(m["sizes"]) == set(m["parity"]) == set(m["decisions"]) == {"int8"}
    assert ExportedModel(folder).precision == "int8" and "`python make_it.py`" in (folder / CARD).read_text()
    with pytest.raises(AvatarError, match="this export has no fp32 model"):
        ExportedModel(folder, "fp32")
    with pytest.raises(AvatarError, match="fp32 = false needs int8 = true"):
        export(exports["clone-model"], tmp_path / "none", data.test, data.valid, ExportConfig(int8=False, fp32=False))
    assert not (tmp_path / "none").exists()


def test_failed_parity_writes_nothing(tmp_path, exports):
    data = get_task("defect").load(exports["defect-data"])
    with pytest.raises(AvatarError, match="int8 export fails parity.*nothing written"):
        export(exports["defect-model"], tmp_path / "out", data.test, data.valid, ExportConfig(int8=True, max_prob_diff=0.0))
    assert list(tmp_path.iterdir()) == []


def test_reexport_replaces_an_export_but_never_another_folder(tmp_path, exports):
    data = get_task("defect").load(exports["defect-data"])
    out = tmp_path / "out"
    export(exports["defect-model"], out, data.test[:4], data.valid, ExportConfig(int8=False))
    assert _manifest(out)["precisions"] == ["fp32"] and _manifest(out)["parity"]["fp32"]["examples"] == 4
    export(exports["defect-model"], out, data.test[:4], data.valid, ExportConfig(int8=True))
    assert _manifest(out)["precisions"] == ["fp32", "int8"]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(AvatarError, match="not empty and was not written by Avatar"):
        export(exports["defect-model"], other, data.test[:4], data.valid)
    assert (other / "notes.txt").read_text() == "keep me"


def test_bad_inputs_are_clear_errors(tmp_path, exports):
    data = get_task("defect").load(exports["defect-data"])
    with pytest.raises(AvatarError, match="not an Avatar model folder"):
        export(tmp_path, tmp_path / "out", data.test, data.valid)
    with pytest.raises(AvatarError, match="min_agreement must be between 0 and 1, got 2"):
        export(exports["defect-model"], tmp_path / "out", data.test, data.valid, ExportConfig(min_agreement=2))
    with pytest.raises(AvatarError, match="needs test examples"):
        export(exports["defect-model"], tmp_path / "out", [], data.valid)
    with pytest.raises(AvatarError, match="and validation examples"):
        export(exports["defect-model"], tmp_path / "out", data.test, [])
    assert not (tmp_path / "out").exists()


def test_the_export_keeps_the_dynamic_axes(exports):
    """Batches and lengths other than the example the exporter traced with (2 x 16)."""
    model = ExportedModel(exports["defect"], "fp32")
    texts = [("void f ( ) { " + "v1 " * n + "}",) for n in (0, 3, 40, 200)]  # 200 words: truncated at 64 tokens
    torch_model, tokenizer = load_classifier(exports["defect-model"], get_task("defect"))
    from avatar.tasks import Example

    reference = predict_logits(torch_model, encode(tokenizer, [Example(str(i), t, 0) for i, t in enumerate(texts)], 64))
    np.testing.assert_allclose(model.logits(texts, batch_size=3), reference, atol=1e-5)


def test_nan_outputs_fail_parity(exports):
    """A NaN compares false with any bound: it must count as the largest difference, not slip through."""
    t = get_task("defect")
    model, tokenizer = load_classifier(exports["defect-model"], t)
    test = t.load(exports["defect-data"]).test[:6]

    class Broken:
        def logits(self, examples):
            return np.full((len(examples), 2), np.nan)

    from avatar.export import parity

    assert parity(model, tokenizer, t, Broken(), test)["max_prob_diff"] == float("inf")


def test_a_folder_with_a_foreign_avatar_json_is_not_replaced(tmp_path, exports):
    data = get_task("defect").load(exports["defect-data"])
    out = tmp_path / "project"
    out.mkdir()
    (out / "avatar.json").write_text('{"name": "my avatar picture settings"}')
    with pytest.raises(AvatarError, match="avatar.json that is not an Avatar export"):
        export(exports["defect-model"], out, data.test[:4], data.valid)
    assert (out / "avatar.json").read_text() == '{"name": "my avatar picture settings"}'


def test_the_threshold_and_calibration_are_chosen_on_validation_and_go_with_the_export(exports):
    from avatar.decision import decide
    from avatar.runtime.model import calibrated

    m = _manifest(exports["defect"])
    t = get_task("defect")
    data = t.load(exports["defect-data"])
    for precision in m["precisions"]:
        d = m["decisions"][precision]
        model = ExportedModel(exports["defect"], precision)
        assert model.threshold == d["threshold"] and d["calibration"]["fitted_on"] == "validation"
        assert d["validation"]["examples"] == len(data.valid) and d["test"]["examples"] == len(data.test)
        assert d["scores"]["examples"] == len(data.test) and set(d["scores"]["baseline"]) == {"accuracy", "f1", "roc_auc"}
        # what the export recorded is what the runtime's logits give on the validation split, redone here
        logits = model.logits([ex.texts for ex in data.valid]).astype(float)
        margin = logits[:, 1] - logits[:, 0]
        test_logits = model.logits([ex.texts for ex in data.test]).astype(float)
        again = decide(margin, [ex.label for ex in data.valid], test_logits[:, 1] - test_logits[:, 0], [ex.label for ex in data.test])
        assert again["threshold"] == pytest.approx(d["threshold"]) and again["validation"] == d["validation"]
        # scan reads calibrated probabilities
        np.testing.assert_allclose(model.probabilities([ex.texts for ex in data.valid]),
                                   calibrated(margin, d["calibration"]["a"], d["calibration"]["b"]), rtol=1e-6)
    card = (exports["defect"] / CARD).read_text()
    assert card.startswith("---\nlibrary_name: onnxruntime") and "# Avatar student: vulnerability prediction" in card
    assert f"{m['decisions']['int8']['threshold']:.4g}" in card and "majority-class baseline" in card
    assert "## Do not trust it for" in card and "the best F1 on the validation split" in card
