"""Run an exported model with onnxruntime and tokenizers only: no torch, no transformers.

An export folder (written by ``avatar export`` or the compress run's ``onnx/`` stage) holds:

- ``avatar.json``: the manifest: task, its classes in order and those that mean a finding, the code's language,
  tokens per function, pad id, the graph files of each precision with their SHA-256, sizes and the parity
  measured at export;
- ``tokenizer.json``: the model's own tokenizer (special tokens included by its post-processor);
- one-function models: ``model.onnx`` (and ``model.int8.onnx``): token ids (B, T) -> logits (B, C), one per class;
- pair models: ``encoder.onnx`` (and ``encoder.int8.onnx``): token ids (B, T) -> first-token vectors (B, H),
  and ``head.onnx`` (and ``head.int8.onnx``): two vectors side by side (B, 2H) -> logits (B, C). Each function
  is encoded once however many pairs it is in.

A finding is an example whose class is one of the task's positive classes; its probability (P(class 1) of a
two-class model, the positive classes' total otherwise) is what thresholds read.

int8 graphs quantise activations per batch, over the whole (B, T) tensor, so an int8 score moves slightly (about
1e-3 in probability) with the other functions in its batch; fp32 scores do not.

This module is the whole inference path of ``avatar scan`` and ``avatar clones``; keep torch out of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar._io import sha256_file
from avatar.errors import AvatarError
from avatar.runtime import TASK_LANGUAGE
from avatar.runtime.text import normalize_code

MANIFEST = "avatar.json"
TOKENIZER = "tokenizer.json"
FORMAT = 1  # bump when the folder layout changes
PRECISIONS = ("fp32", "int8")
RUN_EXPORT = "onnx"  # where avatar compress puts its export inside the run folder
GRAPHS = {1: ("model",), 2: ("encoder", "head")}  # graph roles by functions per example
# the exports shipped in the package, by functions per example: what avatar scan uses when given no model
# (scripts/make_default_model.py makes it; its avatar.json says how it was made and what it scored)
BUILTIN = {1: Path(__file__).resolve().parent.parent / "models" / "defect"}


def builtin_model(num_inputs: int) -> Path | None:
    """The packaged export for models reading ``num_inputs`` functions, where the package has one."""
    folder = BUILTIN.get(num_inputs)
    return folder if folder is not None and (folder / MANIFEST).is_file() else None


def graph_files(num_inputs: int, precision: str) -> dict[str, str]:
    """File name of each graph role of a model reading ``num_inputs`` functions, at ``precision``."""
    suffix = ".onnx" if precision == "fp32" else f".{precision}.onnx"
    return {role: role + suffix for role in GRAPHS[num_inputs]}


def resolve_export(path: Path) -> Path:
    """An export folder, or the export inside a compress run folder."""
    path = Path(path)
    if not path.exists():
        raise AvatarError("model folder not found", path)
    if not path.is_dir():
        raise AvatarError("model path is not a folder", path)
    if not (path / MANIFEST).is_file() and (path / RUN_EXPORT / MANIFEST).is_file():
        return path / RUN_EXPORT
    if not (path / MANIFEST).is_file():
        raise AvatarError(
            f"not an exported model (no {MANIFEST}); make one with `avatar compress` (RUN/{RUN_EXPORT}) "
            "or `avatar export --model STUDENT --out DIR`", path
        )
    return path


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AvatarError(f"malformed JSON ({e.msg})", path, e.lineno) from None
    except (OSError, UnicodeDecodeError) as e:
        raise AvatarError(f"cannot read the manifest ({e})", path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise AvatarError(f"not an Avatar export manifest of format {FORMAT}; re-export the model", path)
    for key, kind in (("task", str), ("num_inputs", int), ("max_length", int), ("pad_id", int), ("files", dict), ("precisions", list)):
        if not isinstance(manifest.get(key), kind):
            raise AvatarError(f"manifest field {key!r} is missing or has the wrong type", path)
    if manifest["num_inputs"] not in GRAPHS:
        raise AvatarError(f"manifest num_inputs must be 1 or 2, got {manifest['num_inputs']}", path)
    manifest.setdefault("classes", ["0", "1"])  # exports made before tasks had other classes
    manifest.setdefault("positive", manifest["classes"][1:] if len(manifest["classes"]) == 2 else [])
    manifest.setdefault("language", TASK_LANGUAGE.get(manifest["task"]))
    classes, positive = manifest["classes"], manifest["positive"]
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)
            and isinstance(positive, list) and all(c in classes for c in positive) and isinstance(manifest["language"], str)):
        raise AvatarError("manifest classes, positive or language are missing or damaged; re-export the model", path)
    return manifest


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _check_file(folder: Path, name: str, manifest: dict) -> Path:
    """The file, after checking it is there and is the one the export wrote (its SHA-256)."""
    path = folder / name
    expected = manifest["files"].get(name)
    if not path.is_file():
        raise AvatarError("model file missing", path)
    if not isinstance(expected, dict):
        raise AvatarError(f"{name} is not listed in {MANIFEST}", folder)
    if sha256_file(path) != expected.get("sha256"):
        raise AvatarError("model file is corrupt (its SHA-256 differs from the export's); re-export the model", path)
    return path


def load_tokenizer(path: Path, max_length: int):
    """A ``tokenizer.json`` set to truncate at ``max_length`` tokens (special tokens included) and not to pad."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises plain Exception on a malformed file
        raise AvatarError(f"cannot load tokenizer: {_first_line(e)}", path) from None
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


@dataclass
class _Batch:
    rows: list[int]  # positions of these sequences in the input
    ids: np.ndarray  # (B, T) int64
    mask: np.ndarray  # (B, T) int64


class ExportedModel:
    """A loaded export: ``logits`` and the probabilities made from them for any task, ``embed`` / ``pair_logits``
    for pair models."""

    def __init__(self, folder: Path, precision: str | None = None, threads: int | None = None):
        import onnxruntime as ort

        self.folder = resolve_export(folder)
        manifest = read_manifest(self.folder)
        self.manifest = manifest
        self.task: str = manifest["task"]
        self.classes: tuple[str, ...] = tuple(manifest["classes"])
        self.positive: tuple[str, ...] = tuple(manifest["positive"])  # the classes that mean a finding
        self.language: str = manifest["language"]
        self.num_inputs: int = manifest["num_inputs"]
        self.max_length: int = manifest["max_length"]
        self.pad_id: int = manifest["pad_id"]
        available = [p for p in manifest["precisions"] if p in PRECISIONS]
        if precision is None:  # the smaller, faster one when the export has it
            precision = "int8" if "int8" in available else "fp32"
        if precision not in available:
            raise AvatarError(f"this export has no {precision} model (it has {', '.join(available) or 'none'})", self.folder)
        self.precision = precision
        self.decision: dict | None = manifest.get("decisions", {}).get(precision)  # calibration and threshold (avatar.decision)
        graphs = graph_files(self.num_inputs, precision)
        sizes = manifest.get("sizes", {}).get(precision, {})
        listed = sizes.get("files") if isinstance(sizes, dict) else None
        listed = [n for n in listed if isinstance(n, str)] if isinstance(listed, list) else []
        for name in dict.fromkeys([TOKENIZER, *graphs.values(), *listed]):  # external weights too: ORT reads any bytes
            _check_file(self.folder, name, manifest)
        self.tokenizer = load_tokenizer(self.folder / TOKENIZER, self.max_length)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: ORT's warnings are not the user's business
        self.sessions = {}
        for role, name in graphs.items():
            path = self.folder / name
            try:
                self.sessions[role] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as e:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
                raise AvatarError(f"cannot load ONNX model: {_first_line(e)}", path) from None

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (whitespace normalised as in training), special tokens included, truncated to
        the model's length."""
        return [enc.ids for enc in self.tokenizer.encode_batch([normalize_code(t) for t in texts])]

    def _batches(self, tokens: list[list[int]], batch_size: int) -> Iterator[_Batch]:
        """Sequences grouped by length (little compute goes to padding), padded per batch."""
        order = sorted(range(len(tokens)), key=lambda r: len(tokens[r]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            T = max(1, max(len(tokens[r]) for r in rows))
            ids = np.full((len(rows), T), self.pad_id, dtype=np.int64)  # (B, T)
            mask = np.zeros((len(rows), T), dtype=np.int64)  # (B, T)
            for i, r in enumerate(rows):
                ids[i, : len(tokens[r])] = tokens[r]
                mask[i, : len(tokens[r])] = 1
            yield _Batch(rows, ids, mask)

    def _run(self, role: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.sessions[role].run(None, feeds)[0]

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Clone models: the encoder's first-token vector of each function (N, H)."""
        self._need(2, "embed")
        return self._embed_tokens(self.encode(texts), batch_size)

    def _embed_tokens(self, tokens: list[list[int]], batch_size: int) -> np.ndarray:
        out: np.ndarray | None = None
        for b in self._batches(tokens, batch_size):
            vec = self._run("encoder", {"input_ids": b.ids, "attention_mask": b.mask})  # (B, H)
            if out is None:
                out = np.zeros((len(tokens), vec.shape[1]), dtype=np.float32)
            out[b.rows] = vec
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def pair_logits(self, a: np.ndarray, b: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Pair models: logits (N, C) of pairs given by their functions' vectors ``a`` (N, H) and ``b`` (N, H)."""
        self._need(2, "pair_logits")
        out = np.zeros((len(a), len(self.classes)), dtype=np.float32)
        for start in range(0, len(a), batch_size):
            pair = np.concatenate([a[start : start + batch_size], b[start : start + batch_size]], axis=1)  # (B, 2H)
            out[start : start + batch_size] = self._run("head", {"pair": pair.astype(np.float32)})
        return out

    def logits(self, examples: Sequence[Sequence[str]], batch_size: int = 32) -> np.ndarray:
        """Logits (N, C) of examples, each a tuple of the task's functions (one, or a pair)."""
        for ex in examples:
            if len(ex) != self.num_inputs:
                raise AvatarError(f"a {self.task} model reads {self.num_inputs} function(s) per example, got {len(ex)}")
        flat = self.encode([text for ex in examples for text in ex])
        return self.logits_of_tokens([flat[k : k + self.num_inputs] for k in range(0, len(flat), self.num_inputs)], batch_size)

    def logits_of_tokens(self, examples: Sequence[Sequence[Sequence[int]]], batch_size: int = 32) -> np.ndarray:
        """Logits (N, C) of examples given as token ids (per example, per function), as ``encode`` gives."""
        if self.num_inputs == 2:
            vectors = self._embed_tokens([list(t) for ex in examples for t in ex], batch_size)  # (2N, H)
            return self.pair_logits(vectors[0::2], vectors[1::2])
        out = np.zeros((len(examples), len(self.classes)), dtype=np.float32)
        for b in self._batches([list(ex[0]) for ex in examples], batch_size):
            out[b.rows] = self._run("model", {"input_ids": b.ids, "attention_mask": b.mask})
        return out

    def probabilities(self, examples: Sequence[Sequence[str]], batch_size: int = 32) -> np.ndarray:
        """Probability of a finding (vulnerable, clone, a positive class) of each example (N,), calibrated on
        validation when the export was (the softmax of the logits otherwise)."""
        return self.probability_of_logits(self.logits(examples, batch_size))

    def class_probabilities_of_logits(self, logits: np.ndarray) -> np.ndarray:
        """Probability of each class (N, C), calibrated as the export was: Platt scaling of the margin (two
        classes) or a temperature (more)."""
        c = (self.decision or {}).get("calibration")
        if len(self.classes) == 2:
            p = positive_probability(logits) if c is None else calibrated(logits[:, 1].astype(np.float64) - logits[:, 0], c["a"], c["b"])
            return np.stack([1 - p, p], axis=1)
        return softmax(logits, 1.0 if c is None else c["temperature"])

    def probability_of_logits(self, logits: np.ndarray) -> np.ndarray:
        """Probability of a finding (N,): the positive classes' total (0 when no class means a finding)."""
        return self.finding_of(self.class_probabilities_of_logits(logits))

    @property
    def positive_indices(self) -> list[int]:
        """The positive classes' logit indices, in the order of ``positive``."""
        return [self.classes.index(c) for c in self.positive]

    def finding_of(self, class_probabilities: np.ndarray) -> np.ndarray:
        """Probability of a finding (N,) from the class probabilities (N, C) of ``class_probabilities_of_logits``."""
        return class_probabilities[:, self.positive_indices].sum(axis=1)

    @property
    def threshold(self) -> float:
        """The decision threshold chosen on validation at export (0.5 for an export without one)."""
        t = None if self.decision is None else self.decision.get("threshold")
        return 0.5 if t is None else float(t)

    def _need(self, num_inputs: int, what: str) -> None:
        if self.num_inputs != num_inputs:
            raise AvatarError(f"{what} needs a pair model; this one reads one function ({self.task})", self.folder)


def calibrated(margin: np.ndarray, a: float, b: float) -> np.ndarray:
    """Platt-scaled P(class 1) from the logit margin (logit 1 - logit 0): what ``avatar export`` fitted on validation."""
    return 1.0 / (1.0 + np.exp(-np.clip(a * np.asarray(margin, dtype=np.float64) + b, -500, 500)))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities (N, C) of logits (N, C) at ``temperature``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def positive_probability(logits: np.ndarray) -> np.ndarray:
    """Softmax probability of class 1 from two-class logits (N, 2)."""
    margin = np.clip(logits[:, 0].astype(np.float64) - logits[:, 1], -500, 500)  # exp stays finite
    return 1.0 / (1.0 + np.exp(margin))
