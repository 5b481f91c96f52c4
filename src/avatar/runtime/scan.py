"""`avatar scan` and `avatar clones`: score the functions of a code base with an exported model, and report.

Torch-free: functions come from ``avatar.runtime.functions`` (tree-sitter), in the language the model was
trained on; scores from ``avatar.runtime.model`` (onnxruntime). Reports are plain text, JSON, or SARIF 2.1.0 for
IDEs and code-scanning services. Each function gets its most probable class; it is flagged (and only then a
SARIF result) when its probability of a finding, the task's positive classes together, reaches the threshold.
A two-class model whose second class is a finding lists the flagged functions; any other model lists every
function with its class (and a pair model each flagged pair with its class).
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
from avatar.runtime import COMMAND
from avatar.runtime.model import ExportedModel

FORMATS = ("text", "json", "sarif")
ERROR_AT = 0.9  # calibrated probability from which a SARIF finding is an error rather than a warning
RULE_ID = "AVATAR-VULN"  # the Devign preset's rule; other tasks' rules are named by their class (rule_id)
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


@dataclass(frozen=True)
class Scored:
    function: Function
    probability: float  # P(finding): vulnerable, or any positive class
    label: str = ""  # the most probable class
    label_probability: float = 0.0  # its probability
    finding_label: str = ""  # the most probable of the positive classes (the SARIF rule of a flagged function)


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
    task: str = "defect"
    classes: tuple[str, ...] = ("0", "1")
    positive: tuple[str, ...] = ("1",)

    @property
    def flagged(self) -> list[Scored]:
        return [s for s in self.scored if self.positive and s.probability >= self.threshold]

    @property
    def findings_only(self) -> bool:
        """A two-class model with a class that means a finding: the report is its flagged functions (no class
        to name); otherwise every function is listed with its class."""
        return len(self.classes) == 2 and bool(self.positive)


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
    if "validation" not in decision:
        return f"no threshold ({decision['rule']})"
    v, t = decision["validation"], decision["test"]
    return (f"threshold {threshold:.4g} ({decision['rule']}; precision {v['precision']:.2f}, recall {v['recall']:.2f} on "
            f"validation, {t['precision']:.2f} / {t['recall']:.2f} on test)")


def model_notice(decision: dict | None) -> str | None:
    """The plain line for an exported model that learned nothing, or None."""
    why = (decision or {}).get("learned_nothing")
    return f"this model {why}; its scores mean nothing" if why else None


def _check_inputs(model: ExportedModel, num_inputs: int) -> None:
    if model.num_inputs != num_inputs:
        what = {1: "one function", 2: "a pair of functions"}
        raise AvatarError(f"avatar {COMMAND[num_inputs]} needs a model that reads {what[num_inputs]}; this one ({model.task}) reads "
                          f"{what[model.num_inputs]}: use avatar {COMMAND[model.num_inputs]}", model.folder)


def scan(paths: Sequence[Path], model: ExportedModel, threshold: float | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
         batch_size: int = 32, warn: Callable[[str], None] | None = None) -> ScanResult:
    """Every function in the source files under ``paths`` (the model's language) with its most probable class and
    its (calibrated) probability of a finding; ``threshold`` defaults to the one the export chose on validation."""
    given, threshold = threshold is not None, _threshold(threshold, model)
    _check_inputs(model, 1)
    warnings, note = _collector(warn)
    if (notice := model_notice(model.decision)) is not None:
        note(notice)
    if not model.positive:
        note("no class of this model means a finding: functions are listed with their class, none is flagged")
    functions, files = find_functions(paths, model.language, note, max_bytes)
    logits = model.logits([(f.code,) for f in functions], batch_size) if functions else np.zeros((0, len(model.classes)))
    probs = model.class_probabilities_of_logits(logits)
    finding, positive = model.finding_of(probs), model.positive_indices
    scored = sorted((Scored(f, float(p), model.classes[int(c.argmax())], float(c.max()),
                            model.classes[positive[int(c[positive].argmax())]] if positive else "")
                     for f, p, c in zip(functions, finding, probs)),
                    key=lambda s: (-s.probability, -s.label_probability, s.function.path, s.function.start_line))
    return ScanResult(scored, files, threshold, str(model.folder), model.precision, warnings, model.decision, given, model.task,
                      model.classes, model.positive)


def scan_text(result: ScanResult) -> str:
    if result.findings_only:
        lines = [f"{s.probability:.3f}  {s.function.where}  {s.function.name}" for s in result.flagged]
    else:  # every function with its class; "!" marks the flagged ones
        flagged = {id(s) for s in result.flagged}
        lines = [f"{'!' if id(s) in flagged else ' '} {s.label} {s.label_probability:.3f}  {s.function.where}  {s.function.name}"
                 for s in result.scored]
    summary = (f"{len(result.flagged)} of {len(result.scored)} function(s) in {result.files} file(s) at or above the "
               f"{threshold_note(result.threshold, result.threshold_given, result.decision)}" if result.positive
               else f"{len(result.scored)} function(s) in {result.files} file(s) by class: "
               + ", ".join(f"{c} {sum(s.label == c for s in result.scored)}" for c in result.classes))
    lines.append(f"{summary} (model {result.model}, {result.precision})")
    return "\n".join(lines) + "\n"


def _scored_json(s: Scored, result: ScanResult) -> dict:
    extra = {} if result.findings_only else {"class": s.label, "class_probability": round(s.label_probability, 6),
                                          "flagged": bool(result.positive) and s.probability >= result.threshold}
    return {**_function_json(s.function), "probability": round(s.probability, 6), **extra}


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
        "task": result.task,
        "classes": list(result.classes),
        "positive": list(result.positive),
        # two classes, the second a finding: the flagged functions; otherwise every function with its class
        "results": [_scored_json(s, result) for s in (result.flagged if result.findings_only else result.scored)],
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


def _rules(result: ScanResult) -> list[dict]:
    """One SARIF rule per class that means a finding (the Devign preset's is AVATAR-VULN)."""
    if result.task == "defect":
        return [{"id": RULE_ID, "name": "PossiblyVulnerableFunction",
                 "shortDescription": {"text": "Function a distilled code model rates as likely vulnerable"},
                 "fullDescription": {"text": "A small model distilled from a large language model of code, trained on "
                                             "vulnerability data such as Devign, gives this function a high probability "
                                             "of being vulnerable. It is a ranking aid for review, not a proof."}}]
    return [{"id": rule_id(result.task, c), "name": f"Class {c}",
             "shortDescription": {"text": f"Function a distilled code model puts in class {c!r} of {result.task}"},
             "fullDescription": {"text": f"A small model distilled from a large language model of code, trained on the "
                                         f"{result.task} data set, gives this function a high probability of class {c!r}. "
                                         "It is a ranking aid for review, not a proof."}} for c in result.positive]


def rule_id(task: str, label: str) -> str:
    """A SARIF rule id for a class of a task: letters, digits and dashes."""
    clean = "".join(ch if ch.isalnum() else "-" for ch in f"{task}-{label}").upper()
    return "AVATAR-" + clean


def _finding_class(result: ScanResult, s: Scored) -> int:
    """Index, among the positive classes, of the flagged function's most probable positive class (which need not
    be its most probable class: the positive ones together pass the threshold)."""
    return result.positive.index(s.finding_label)


def scan_sarif(result: ScanResult) -> str:
    """SARIF 2.1.0: a rule per class that means a finding, one result per flagged function (level from the
    calibrated probability)."""
    rules = _rules(result)
    results = []
    for s in result.flagged:
        uri, base = _uri(s.function.path)
        artifact = {"uri": uri, **({"uriBaseId": base} if base else {})}
        k = _finding_class(result, s) if len(rules) > 1 else 0
        what = "vulnerability" if result.task == "defect" else f"{result.positive[k]!r}" if len(rules) > 1 else "finding"
        results.append({
            "ruleId": rules[k]["id"],
            "ruleIndex": k,
            "level": _level(result, s.probability),
            "message": {"text": f"{s.function.name}: {what} probability {s.probability:.3f} "
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
                    **rule,
                    "defaultConfiguration": {"level": "warning"},
                    "properties": {"threshold": result.threshold, "threshold_given": result.threshold_given,
                                   "error_from_probability": ERROR_AT, **_rule_properties(result.decision)},
                } for rule in rules],
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
    if decision is None or "validation" not in decision:
        return {"calibrated": decision is not None}
    v, t = decision["validation"], decision["test"]
    return {"calibrated": True, "threshold_rule": decision["rule"], "validation_precision": v["precision"],
            "validation_recall": v["recall"], "test_precision": t["precision"], "test_recall": t["recall"],
            **({"learned_nothing": decision["learned_nothing"]} if decision.get("learned_nothing") else {})}


@dataclass(frozen=True)
class ClonePair:
    a: Function
    b: Function
    probability: float  # P(clone): of a finding, the positive classes together
    label: str = ""  # the pair's most probable class
    label_probability: float = 0.0  # its probability


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
    task: str = "clone"
    classes: tuple[str, ...] = ("0", "1")
    positive: tuple[str, ...] = ("1",)


def clones(a: Sequence[Path], b: Sequence[Path], model: ExportedModel, threshold: float | None = None, max_pairs: int = 100_000,
           max_bytes: int = DEFAULT_MAX_BYTES, batch_size: int = 32, warn: Callable[[str], None] | None = None) -> ClonesResult:
    """Function pairs across ``a`` and ``b`` (in the model's language) that the pair model flags: their
    probability of a finding (a clone, or any positive class) reaches the threshold. A function is never paired with
    itself, and a pair of functions found on both sides (``a`` and ``b`` the same, or overlapping) is scored
    once. Each function is encoded once, whatever the number of pairs it is in. ``threshold`` defaults to the one
    the export chose on validation."""
    given, threshold = threshold is not None, _threshold(threshold, model)
    if max_pairs < 1:
        raise AvatarError(f"--max-pairs must be at least 1, got {max_pairs}")
    _check_inputs(model, 2)
    warnings, note = _collector(warn)
    if (notice := model_notice(model.decision)) is not None:
        note(notice)
    if not model.positive:
        note("no class of this model means a finding: no pair is flagged")
    left, _ = find_functions(a, model.language, note, max_bytes)
    right, _ = find_functions(b, model.language, note, max_bytes)
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
            logits = model.pair_logits(np.stack([vectors[left_keys[i]] for i, _ in part]), np.stack([vectors[right_keys[j]] for _, j in part]))
            classes = model.class_probabilities_of_logits(logits)
            found += [ClonePair(left[i], right[j], float(p), model.classes[int(c.argmax())], float(c.max()))
                      for (i, j), p, c in zip(part, model.finding_of(classes), classes) if model.positive and p >= threshold]
    found.sort(key=lambda c: (-c.probability, c.a.path, c.a.start_line, c.b.path, c.b.start_line))
    return ClonesResult(found, len(left), len(right), total, len(pairs), threshold, str(model.folder), model.precision, warnings,
                        model.decision, given, model.task, model.classes, model.positive)


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
    named = len(result.classes) > 2  # which kind of clone it is, where the model knows more than clone / not
    lines = [f"{c.probability:.3f}  {f'{c.label} {c.label_probability:.3f}  ' if named else ''}{c.a.where} {c.a.name}  ~  "
             f"{c.b.where} {c.b.name}" for c in result.pairs]
    lines.append(
        f"{len(result.pairs)} of {result.scored_pairs} scored pair(s) at or above the "
        f"{threshold_note(result.threshold, result.threshold_given, result.decision)} "
        f"({result.functions_a} x {result.functions_b} function(s); model {result.model}, {result.precision})"
    )
    return "\n".join(lines) + "\n"


def clones_json(result: ClonesResult) -> str:
    out = {k: getattr(result, k) for k in ("model", "precision", "threshold", "threshold_given", "functions_a", "functions_b",
                                           "candidate_pairs", "scored_pairs")}
    out.update(task=result.task, classes=list(result.classes), positive=list(result.positive))
    out["decision"] = _decision_json(result.decision)
    out["warnings"] = result.warnings
    out["pairs"] = [{"a": _function_json(c.a), "b": _function_json(c.b), "probability": round(c.probability, 6),
                     "class": c.label, "class_probability": round(c.label_probability, 6)} for c in result.pairs]
    return json.dumps(out, indent=2) + "\n"
