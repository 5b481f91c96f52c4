"""`avatar scan` and `avatar clones`: score the functions of a code base with an exported model, and report.

Torch-free: functions come from ``avatar.runtime.functions`` (tree-sitter), scores from ``avatar.runtime.model``
(onnxruntime). Reports are plain text, JSON, or SARIF 2.1.0 for IDEs and code-scanning services.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from avatar import __version__
from avatar.errors import AvatarError
from avatar.runtime.functions import DEFAULT_MAX_BYTES, Function, find_functions
from avatar.runtime import TASK_COMMAND, TASK_LANGUAGE
from avatar.runtime.model import ExportedModel

FORMATS = ("text", "json", "sarif")
ERROR_AT = 0.9  # calibrated probability from which a SARIF finding is an error rather than a warning
RULE_ID = "AVATAR-VULN"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


@dataclass(frozen=True)
class Scored:
    function: Function
    probability: float  # P(vulnerable)


@dataclass
class ScanResult:
    scored: list[Scored]  # every function found, riskiest first
    files: int  # files read
    threshold: float  # what is reported: functions at or above it
    model: str  # the export folder
    precision: str
    warnings: list[str] = field(default_factory=list)
    decision: dict | None = None  # the export's calibration and threshold with its precision/recall (avatar.decision)
    threshold_given: bool = False  # the user's --threshold, not the one chosen on validation

    @property
    def flagged(self) -> list[Scored]:
        return [s for s in self.scored if s.probability >= self.threshold]


def _collector(warn: Callable[[str], None] | None) -> tuple[list[str], Callable[[str], None]]:
    """A list of warnings for the report, and a function that adds one (and passes it on to ``warn``)."""
    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        if warn is not None:
            warn(message)

    return warnings, note


def _threshold(threshold: float | None, model: ExportedModel) -> float:
    """The user's threshold (checked), else the one the export chose on validation."""
    if threshold is None:
        return model.threshold
    if not 0.0 <= threshold <= 1.0:  # also refuses nan
        raise AvatarError(f"--threshold must be a probability in [0, 1], got {threshold}")
    return threshold


def threshold_note(threshold: float, given: bool, decision: dict | None) -> str:
    """Where the threshold comes from and what it means, in words."""
    if given:
        return f"threshold {threshold:g} (given)"
    if decision is None:
        return f"threshold {threshold:g} (this export has no threshold chosen on validation: re-export it)"
    v, t = decision["validation"], decision["test"]
    return (f"threshold {threshold:.4g} ({decision['rule']}; precision {v['precision']:.2f}, recall {v['recall']:.2f} on "
            f"validation, {t['precision']:.2f} / {t['recall']:.2f} on test)")


def model_notice(decision: dict | None) -> str | None:
    """The plain line for an exported model that learned nothing, or None."""
    why = (decision or {}).get("learned_nothing")
    return f"this model {why}; its scores mean nothing" if why else None


def _check_task(model: ExportedModel, task: str) -> None:
    if model.task != task:
        raise AvatarError(f"avatar {TASK_COMMAND[task]} needs a {task} model; this one was trained for {model.task}", model.folder)


def scan(paths: Sequence[Path], model: ExportedModel, threshold: float | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
         batch_size: int = 32, warn: Callable[[str], None] | None = None) -> ScanResult:
    """Every function in the C/C++ files under ``paths`` with its (calibrated) probability of being vulnerable;
    ``threshold`` defaults to the one the export chose on validation."""
    given, threshold = threshold is not None, _threshold(threshold, model)
    _check_task(model, "defect")
    warnings, note = _collector(warn)
    if (notice := model_notice(model.decision)) is not None:
        note(notice)
    functions, files = find_functions(paths, TASK_LANGUAGE["defect"], note, max_bytes)
    probs = model.probabilities([(f.code,) for f in functions], batch_size) if functions else []
    scored = sorted((Scored(f, float(p)) for f, p in zip(functions, probs)),
                    key=lambda s: (-s.probability, s.function.path, s.function.start_line))
    return ScanResult(scored, files, threshold, str(model.folder), model.precision, warnings, model.decision, given)


def scan_text(result: ScanResult) -> str:
    lines = [f"{s.probability:.3f}  {s.function.where}  {s.function.name}" for s in result.flagged]
    lines.append(
        f"{len(result.flagged)} of {len(result.scored)} function(s) in {result.files} file(s) at or above the "
        f"{threshold_note(result.threshold, result.threshold_given, result.decision)} (model {result.model}, {result.precision})"
    )
    return "\n".join(lines) + "\n"


def _decision_json(decision: dict | None) -> dict | None:
    if decision is None:
        return None
    keep = ("threshold", "rule", "calibration", "validation", "test", "learned_nothing")
    return {k: decision.get(k) for k in keep}


def _function_json(f: Function) -> dict:
    return {"path": f.path, "name": f.name, "start_line": f.start_line, "end_line": f.end_line}


def scan_json(result: ScanResult) -> str:
    return json.dumps({
        "model": result.model,
        "precision": result.precision,
        "threshold": result.threshold,
        "threshold_given": result.threshold_given,
        "decision": _decision_json(result.decision),
        "files": result.files,
        "functions": len(result.scored),
        "results": [{**_function_json(s.function), "probability": round(s.probability, 6)} for s in result.flagged],
        "warnings": result.warnings,
    }, indent=2) + "\n"


def _uri(path: str) -> tuple[str, str | None]:
    """A SARIF artifact URI: relative to the working folder (with %SRCROOT% as its base) where it lies under it."""
    absolute = Path(os.path.abspath(path))  # not resolve(): a symlinked file is reported where the user sees it
    try:
        relative = absolute.relative_to(os.path.abspath(os.getcwd()))
    except ValueError:
        return absolute.as_uri(), None
    return quote(relative.as_posix()), "%SRCROOT%"


def _level(result: ScanResult, probability: float) -> str:
    """error where the calibrated probability reaches ``ERROR_AT``; warning otherwise (and for an uncalibrated export)."""
    return "error" if result.decision is not None and probability >= ERROR_AT else "warning"


def scan_sarif(result: ScanResult) -> str:
    """SARIF 2.1.0: one rule, one result per flagged function (level from the calibrated probability)."""
    results = []
    for s in result.flagged:
        uri, base = _uri(s.function.path)
        artifact = {"uri": uri, **({"uriBaseId": base} if base else {})}
        results.append({
            "ruleId": RULE_ID,
            "ruleIndex": 0,
            "level": _level(result, s.probability),
            "message": {"text": f"{s.function.name}: vulnerability probability {s.probability:.3f} "
                                f"({threshold_note(result.threshold, result.threshold_given, result.decision)})"},
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": artifact,
                    "region": {"startLine": s.function.start_line, "endLine": s.function.end_line},
                },
                "logicalLocations": [{"name": s.function.name, "kind": "function"}],
            }],
            "properties": {"probability": round(s.probability, 6)},
        })
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "Avatar",
                "version": __version__,
                "rules": [{
                    "id": RULE_ID,
                    "name": "PossiblyVulnerableFunction",
                    "shortDescription": {"text": "Function a distilled code model rates as likely vulnerable"},
                    "fullDescription": {"text": "A small model distilled from a large language model of code, trained on "
                                                "vulnerability data such as Devign, gives this function a high probability "
                                                "of being vulnerable. It is a ranking aid for review, not a proof."},
                    "defaultConfiguration": {"level": "warning"},
                    "properties": {"threshold": result.threshold, "threshold_given": result.threshold_given,
                                   "error_from_probability": ERROR_AT, **_rule_properties(result.decision)},
                }],
            }},
            "invocations": [{
                "executionSuccessful": True,
                "toolExecutionNotifications": [{"level": "warning", "message": {"text": w}} for w in result.warnings],
            }],
            "originalUriBaseIds": {"%SRCROOT%": {"uri": Path(os.path.abspath(os.getcwd())).as_uri() + "/"}},
            "properties": {"model": result.model, "precision": result.precision, "threshold": result.threshold,
                           "functions": len(result.scored), "files": result.files},
            "results": results,
        }],
    }
    return json.dumps(log, indent=2) + "\n"


def _rule_properties(decision: dict | None) -> dict:
    """The threshold's rule and its precision/recall on validation and test, as SARIF property values."""
    if decision is None:
        return {"calibrated": False}
    v, t = decision["validation"], decision["test"]
    return {"calibrated": True, "threshold_rule": decision["rule"], "validation_precision": v["precision"],
            "validation_recall": v["recall"], "test_precision": t["precision"], "test_recall": t["recall"],
            **({"learned_nothing": decision["learned_nothing"]} if decision.get("learned_nothing") else {})}


@dataclass(frozen=True)
class ClonePair:
    a: Function
    b: Function
    probability: float  # P(clone)


@dataclass
class ClonesResult:
    pairs: list[ClonePair]  # pairs at or above the threshold, likeliest first
    functions_a: int
    functions_b: int
    candidate_pairs: int  # all pairs the two sides make
    scored_pairs: int  # pairs scored (the bound may cut)
    threshold: float
    model: str
    precision: str
    warnings: list[str] = field(default_factory=list)
    decision: dict | None = None
    threshold_given: bool = False


def clones(a: Sequence[Path], b: Sequence[Path], model: ExportedModel, threshold: float | None = None, max_pairs: int = 100_000,
           max_bytes: int = DEFAULT_MAX_BYTES, batch_size: int = 32, warn: Callable[[str], None] | None = None) -> ClonesResult:
    """Java function pairs across ``a`` and ``b`` that the clone model flags. A function is never paired with
    itself, and a pair of functions found on both sides (``a`` and ``b`` the same, or overlapping) is scored
    once. Each function is encoded once, whatever the number of pairs it is in. ``threshold`` defaults to the one
    the export chose on validation."""
    given, threshold = threshold is not None, _threshold(threshold, model)
    if max_pairs < 1:
        raise AvatarError(f"--max-pairs must be at least 1, got {max_pairs}")
    _check_task(model, "clone")
    warnings, note = _collector(warn)
    if (notice := model_notice(model.decision)) is not None:
        note(notice)
    left, _ = find_functions(a, TASK_LANGUAGE["clone"], note, max_bytes)
    right, _ = find_functions(b, TASK_LANGUAGE["clone"], note, max_bytes)
    left_keys, right_keys = [_key(f) for f in left], [_key(f) for f in right]
    overlap = len(set(left_keys) & set(right_keys))
    total = len(left) * len(right) - overlap - overlap * (overlap - 1) // 2  # no self-pairs, no mirrored repeats
    pairs = _first_pairs(left_keys, right_keys, max_pairs)
    if total > len(pairs):
        note(f"scored the first {len(pairs)} of {total} function pairs (--max-pairs {max_pairs}); "
             "narrow A or B, or raise the bound")
    found: list[ClonePair] = []
    if pairs:
        functions = {left_keys[i]: left[i] for i, _ in pairs} | {right_keys[j]: right[j] for _, j in pairs}
        keys = list(functions)
        vectors = dict(zip(keys, model.embed([functions[k].code for k in keys], batch_size)))
        chunk = 65536
        for start in range(0, len(pairs), chunk):
            part = pairs[start : start + chunk]
            probs = model.probability_of_logits(model.pair_logits(np.stack([vectors[left_keys[i]] for i, _ in part]),
                                                           np.stack([vectors[right_keys[j]] for _, j in part])))
            found += [ClonePair(left[i], right[j], float(p)) for (i, j), p in zip(part, probs) if p >= threshold]
    found.sort(key=lambda c: (-c.probability, c.a.path, c.a.start_line, c.b.path, c.b.start_line))
    return ClonesResult(found, len(left), len(right), total, len(pairs), threshold, str(model.folder), model.precision, warnings,
                        model.decision, given)


def _key(f: Function) -> tuple[str, int, int]:
    """One function, however its file was named (relative, absolute, through a link)."""
    return os.path.realpath(f.path), f.start_line, f.start_column


def _first_pairs(left: list, right: list, limit: int) -> list[tuple[int, int]]:
    """Index pairs in order (row by row), at most ``limit``, without building the ones past it. A function is not
    paired with itself, and a pair whose two functions are on both sides is kept in one order only."""
    in_left, in_right = set(left), set(right)
    pairs: list[tuple[int, int]] = []
    for i, ka in enumerate(left):
        for j, kb in enumerate(right):
            if ka == kb or (ka in in_right and kb in in_left and kb < ka):
                continue
            if len(pairs) == limit:
                return pairs
            pairs.append((i, j))
    return pairs


def clones_text(result: ClonesResult) -> str:
    lines = [f"{c.probability:.3f}  {c.a.where} {c.a.name}  ~  {c.b.where} {c.b.name}" for c in result.pairs]
    lines.append(
        f"{len(result.pairs)} of {result.scored_pairs} scored pair(s) at or above the "
        f"{threshold_note(result.threshold, result.threshold_given, result.decision)} "
        f"({result.functions_a} x {result.functions_b} function(s); model {result.model}, {result.precision})"
    )
    return "\n".join(lines) + "\n"


def clones_json(result: ClonesResult) -> str:
    out = {k: getattr(result, k) for k in ("model", "precision", "threshold", "threshold_given", "functions_a", "functions_b",
                                           "candidate_pairs", "scored_pairs")}
    out["decision"] = _decision_json(result.decision)
    out["warnings"] = result.warnings
    out["pairs"] = [{"a": _function_json(c.a), "b": _function_json(c.b), "probability": round(c.probability, 6)}
                    for c in result.pairs]
    return json.dumps(out, indent=2) + "\n"
