"""Export a model folder (a student or a fine-tuned teacher) to ONNX, optionally int8, with a parity check.

The graphs come from torch's export-based ONNX exporter (the TorchScript tracer would bake the example's
all-ones attention mask into the graph), with batch and token axes left dynamic. The int8 graphs are
onnxruntime's dynamic quantisation of them (int8 weights, activations quantised on the fly). Parity runs the
exported folder through ``avatar.runtime.model`` exactly as ``avatar scan`` does, tokenizer included, on real
examples, against the PyTorch model; an export outside the bounds is not written. See ``avatar.runtime.model`` for
the folder layout.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from avatar import __version__
from avatar._io import METRICS, atomic_dir, sha256_file, write_json_atomic, write_text_atomic
from avatar.card import CARD, model_card
from avatar.cost import MB
from avatar.errors import AvatarError
from avatar.graphcodebert import MODEL_TYPE_KEY
from avatar.settings import ExportConfig, check_settings
from avatar.modeling import Classifier, PairClassifier, load_classifier, model_max_length, saved_task
from avatar.runtime.model import FORMAT, MANIFEST, TOKENIZER, ExportedModel, graph_files, read_manifest, softmax
from avatar.tasks import Example, Task
from avatar.trainer import encode, predict_logits

log = logging.getLogger(__name__)

FP32_BOUNDS = (1e-4, 0.99)  # (max probability difference, min agreement): fp32 differing more is a bug, not a trade-off


class _SequenceGraph(nn.Module):
    """One-function models: token ids (B, T) -> logits (B, C)."""

    def __init__(self, model: Classifier):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids[:, None], attention_mask[:, None])  # (B, 1, T) in, (B, C) out


class _EncoderGraph(nn.Module):
    """Pair models: token ids (B, T) -> first-token vectors (B, H)."""

    def __init__(self, model: PairClassifier):
        super().__init__()
        self.encoder = model.encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]


class _HeadGraph(nn.Module):
    """Pair models: two first-token vectors side by side (B, 2H) -> logits (B, C)."""

    def __init__(self, model: PairClassifier):
        super().__init__()
        self.model = model

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.model.head(pair)


def _graphs(model: Classifier, max_length: int) -> dict[str, tuple[nn.Module, tuple, dict, str]]:
    """Each graph role with its module, example inputs, dynamic axes and output name."""
    B, T = torch.export.Dim("batch", max=1 << 16), torch.export.Dim("tokens", max=max_length)
    tokens_len = min(max_length, 16)
    ids = torch.full((2, tokens_len), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    token_axes = {"input_ids": {0: B, 1: T}, "attention_mask": {0: B, 1: T}}
    if isinstance(model, PairClassifier):
        pair = torch.zeros(2, 2 * model.config.hidden_size)
        return {
            "encoder": (_EncoderGraph(model), (ids, mask), token_axes, "vector"),
            "head": (_HeadGraph(model), (pair,), {"pair": {0: B}}, "logits"),
        }
    return {"model": (_SequenceGraph(model), (ids, mask), token_axes, "logits")}


def _strip(proto) -> None:
    """Drop the exporter's per-node debugging metadata (source lines, FX names): about as large as a student's weights."""
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    proto.doc_string = ""


def _export_graph(module: nn.Module, inputs: tuple, axes: dict, output: str, path: Path, external_data_mb: float) -> None:
    import onnx

    module.eval()
    names = list(axes)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed", on every export
    # the exporter prints progress and warns about its internals; neither is the user's business
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, inputs, None, input_names=names, output_names=[output],
            dynamic_shapes=axes, dynamo=True, verbose=False,
        )
    proto = program.model_proto
    _strip(proto)
    weights = sum(len(t.raw_data) for t in proto.graph.initializer)
    external = weights > external_data_mb * MB
    onnx.save_model(proto, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
                    location=path.name + ".data", size_threshold=1024)


def _quantize(src: Path, dst: Path, external: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    before = logging.root.manager.disable
    logging.disable(max(before, logging.WARNING))  # it suggests its optional pre-processing step through the root logger
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, use_external_data_format=external)
    finally:
        logging.disable(before)


def graph_and_data_files(path: Path) -> list[Path]:
    """The graph file and every external data file it refers to: what its size is."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    tensors = list(proto.graph.initializer)
    tensors += [a.t for n in proto.graph.node for a in n.attribute if a.type == onnx.AttributeProto.TENSOR]
    locations = {
        entry.value
        for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL
        for entry in t.external_data if entry.key == "location"
    }
    return [path] + [path.parent / loc for loc in sorted(locations)]


def parity(model: Classifier, tokenizer, task: Task, exported: ExportedModel, examples: Sequence[Example]) -> dict:
    """Compare the export's class probabilities with PyTorch's on ``examples`` (both uncalibrated softmax): the
    largest difference over examples and classes (with two classes, that of P(class 1)), and how often the two
    predict the same class."""
    reference = softmax(predict_logits(model, encode(tokenizer, examples, model_max_length(model))))
    got = softmax(exported.logits([ex.texts for ex in examples]))
    diff = np.abs(got - reference).max(axis=1)
    diff[~np.isfinite(got).all(axis=1)] = np.inf  # a NaN compares false with any bound: count it as the worst difference
    return {
        "examples": len(examples),
        "max_prob_diff": float(diff.max()),
        "mean_prob_diff": float(diff.mean()),
        "agreement": float(np.mean(got.argmax(axis=1) == reference.argmax(axis=1))),
    }


def decision(task: Task, exported: ExportedModel, valid: Sequence[Example], test: Sequence[Example],
             target_precision: float | None) -> dict:
    """The export's calibration and threshold (chosen on ``valid``), precision/recall at it on both splits, and
    its test scores with their intervals and baseline, all through the runtime that ``avatar scan`` uses."""
    from avatar.decision import decide, decide_classes
    from avatar.stats import learned_nothing, test_scores

    def logits_and_labels(examples: Sequence[Example]) -> tuple[np.ndarray, np.ndarray]:
        return exported.logits([ex.texts for ex in examples]).astype(np.float64), np.array([ex.label for ex in examples])

    (vl, vy), (tl, ty) = logits_and_labels(valid), logits_and_labels(test)
    if task.num_classes == 2:
        out = decide(vl[:, 1] - vl[:, 0], vy, tl[:, 1] - tl[:, 0], ty, target_precision)
    else:
        out = decide_classes(vl, vy, tl, ty, [task.classes.index(c) for c in task.positive], target_precision)
    scores = test_scores(task, ty, tl)
    out["scores"] = scores
    out["learned_nothing"] = learned_nothing(scores, task.main_metric)
    return out


def _read_metrics(model_dir: Path) -> dict | None:
    """The model folder's training record, for the model card (None when it has none that reads)."""
    import json

    try:
        return json.loads((Path(model_dir) / METRICS).read_text())
    except (OSError, ValueError):
        return None


def _drop_precision(folder: Path, manifest: dict, precision: str) -> None:
    """Remove one precision's graphs from an export being written, and every mention of it from its manifest."""
    others = {name for p, size in manifest["sizes"].items() if p != precision for name in size["files"]}
    for name in manifest["sizes"][precision]["files"]:
        if name not in others:
            (folder / name).unlink()
            del manifest["files"][name]
    manifest["precisions"].remove(precision)
    for key in ("sizes", "parity", "decisions"):
        del manifest[key][precision]


def export(model_dir: Path, out: Path, test: Sequence[Example], valid: Sequence[Example], config: ExportConfig = ExportConfig(),
           about: dict | None = None) -> dict:
    """Write the export folder ``out`` for the model folder ``model_dir``; return its manifest.

    ``test`` gives the parity examples (its first ``config.parity_examples``) and the reported test figures,
    ``valid`` the calibration and threshold; ``about`` (``data``, ``teacher``, optionally ``rebuild``: the command that
    remakes it) goes into the model card and the manifest.
    """
    check_settings(config)
    if not test or not valid:
        raise AvatarError("an export needs test examples (parity, test figures) and validation examples (threshold)")
    task = saved_task(model_dir)
    model, tokenizer = load_classifier(model_dir, task)
    if getattr(model.config, MODEL_TYPE_KEY, None) == "graphcodebert":
        # the runtime feeds token ids only: a graph model exported so would silently read no data flow
        raise AvatarError("a GraphCodeBERT model cannot be exported: the runtime has no data-flow inputs; export a student, "
                          "which reads tokens only", model_dir)
    if not getattr(tokenizer, "is_fast", False):
        raise AvatarError("the model's tokenizer has no tokenizer.json (fast tokenizer); the runtime needs one", model_dir)
    max_length = model_max_length(model)
    examples = list(test[: config.parity_examples])
    precisions = ["fp32", "int8"] if config.int8 else ["fp32"]
    out = Path(out)
    if (out / MANIFEST).is_file():
        try:
            read_manifest(out)
        except AvatarError:
            raise AvatarError("output folder holds an avatar.json that is not an Avatar export; choose another --out", out) from None
    with atomic_dir(out, kind="export") as tmp:
        backend = tokenizer.backend_tokenizer
        backend.no_truncation()  # the runtime sets its own; the saved file must not carry a call's settings
        backend.no_padding()
        backend.save(str(tmp / TOKENIZER))
        files: list[Path] = [tmp / TOKENIZER]
        sizes = {}
        graphs = _graphs(model, max_length)
        for precision in precisions:
            needed = [tmp / TOKENIZER]
            for role, name in graph_files(task.num_inputs, precision).items():
                if precision == "fp32":
                    _export_graph(*graphs[role], tmp / name, config.external_data_mb)
                else:
                    fp32 = tmp / graph_files(task.num_inputs, "fp32")[role]
                    _quantize(fp32, tmp / name, external=len(graph_and_data_files(fp32)) > 1)
                needed += graph_and_data_files(tmp / name)
            files += needed[1:]
            sizes[precision] = {"bytes": sum(p.stat().st_size for p in needed), "files": [p.name for p in needed]}
        manifest = {
            "format": FORMAT,
            "task": task.name,
            "classes": list(task.classes),
            "positive": list(task.positive),  # the classes that mean a finding
            "language": task.language,
            "metric": task.main_metric,
            "num_inputs": task.num_inputs,
            "max_length": max_length,
            "pad_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
            "precisions": precisions,
            "parameters": sum(p.numel() for p in model.parameters()),
            "files": {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in files},
            "sizes": sizes,
            "source": str(Path(model_dir).resolve()),
            "avatar_version": __version__,
        }
        write_json_atomic(tmp / MANIFEST, manifest)
        manifest["parity"] = {}
        for precision in precisions:
            bound, agreement = FP32_BOUNDS if precision == "fp32" else (config.max_prob_diff, config.min_agreement)
            result = parity(model, tokenizer, task, ExportedModel(tmp, precision), examples)
            result.update(max_allowed_prob_diff=bound, min_allowed_agreement=agreement)
            manifest["parity"][precision] = result
            if not (result["max_prob_diff"] <= bound and result["agreement"] >= agreement):
                remedy = ("loosen --max-prob-diff / --min-agreement or export without --int8" if precision == "int8"
                          else "fp32 should match PyTorch: an exporter bug for this architecture")
                raise AvatarError(
                    f"{precision} export fails parity on {len(examples)} examples: max probability difference "
                    f"{result['max_prob_diff']:.4g} (allowed {bound:g}), agreement {result['agreement']:.4f} "
                    f"(required {agreement:g}); nothing written ({remedy})", out
                )
        manifest["decisions"] = {p: decision(task, ExportedModel(tmp, p), valid, test, config.target_precision) for p in precisions}
        if not config.fp32:  # made to quantise and check against: the int8 graphs alone are kept
            _drop_precision(tmp, manifest, "fp32")
        manifest["config"] = asdict(config)
        manifest["about"] = dict(about or {})
        write_json_atomic(tmp / MANIFEST, manifest)
        write_text_atomic(tmp / CARD, model_card(manifest, _read_metrics(model_dir), about or {}))
    log.info("exported %s to %s", model_dir, out)
    return manifest
