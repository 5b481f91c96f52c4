"""The model card (``README.md``, Hugging Face's convention) written with every export: what the model is, what
it was made from, what was measured with what uncertainty, its threshold, and what it must not be trusted for."""

from __future__ import annotations

from avatar.cost import MB
from avatar.runtime import TASK_COMMAND, TASK_LANGUAGE
from avatar.stats import BASELINE_RULE

CARD = "README.md"
LANGUAGE_NAME = {"c": "C", "java": "Java"}
PURPOSE = {
    "defect": ("vulnerability prediction", "whether a C function is vulnerable", "function", "vulnerable"),
    "clone": ("clone detection", "whether two Java methods do the same thing", "pair", "clone"),
}


def _interval(scores: dict, metric: str) -> str:
    lo, hi = scores["interval95"][metric]
    return f"{scores[metric]:.4f} [{lo:.3f}, {hi:.3f}]"


def model_card(manifest: dict, trained: dict | None, about: dict) -> str:
    """The card's Markdown, from the export manifest, the model folder's training record and ``about``."""
    task = manifest["task"]
    purpose, question, unit, positive = PURPOSE[task]
    main = "accuracy" if task == "defect" else "f1"
    lines = [
        "---",
        "library_name: onnxruntime",
        "tags: [code, avatar, distillation, " + ("vulnerability-detection" if task == "defect" else "clone-detection") + "]",
        "---",
        "",
        f"# Avatar student: {purpose}",
        "",
        f"A small model that predicts {question}, distilled by Avatar from a larger model of code. It runs on a CPU "
        f"through onnxruntime: `avatar {TASK_COMMAND[task]} PATH --model THIS_FOLDER`.",
        "",
        "## Made from",
        "",
        f"- Data: {about.get('data', 'not recorded')} (code normalised: line ends, trailing spaces and blank lines).",
        f"- Teacher: {about.get('teacher', 'not recorded')}.",
    ]
    if trained:
        ex = trained.get("examples", {})
        truth = f" and {ex['labelled']} with their true labels" if ex.get("labelled") else ""
        lines.append(f"- Training: {ex.get('train', '?')} examples labelled by the teacher{truth}, best checkpoint by validation "
                     f"{trained.get('main_metric', main)} on {ex.get('valid', '?')}; {trained.get('steps', '?')} optimiser steps"
                     + (f"; loss: {trained['loss']}." if trained.get("loss") else "."))
        if "student" in trained:
            s = trained["student"]
            lines.append(f"- Configuration: {s['num_hidden_layers']} layers, hidden {s['hidden_size']}, intermediate "
                         f"{s['intermediate_size']}, {s['num_attention_heads']} heads, {s['tokenizer']} tokenizer of "
                         f"{s['vocab_size']} tokens, {s['max_sequence_length']} tokens per {('function' if task == 'defect' else 'method')}.")
    lines.append(f"- Parameters: {manifest.get('parameters', 'not recorded'):,}." if isinstance(manifest.get("parameters"), int)
                 else "- Parameters: not recorded.")
    lines += ["", "## Measured (through onnxruntime, as the command runs it)", ""]
    rows = ["| precision | size MB | test " + main + " [95 % interval] | " + f"{BASELINE_RULE[main]} baseline | test ROC AUC [95 %] | "
            "threshold | validation precision / recall | test precision / recall | parity with PyTorch (max prob. diff, agreement) |",
            "|---|---|---|---|---|---|---|---|---|"]
    warnings = []
    for p in manifest["precisions"]:
        d, par = manifest["decisions"][p], manifest["parity"][p]
        sc, v, t = d["scores"], d["validation"], d["test"]
        auc = _interval(sc, "roc_auc") if sc.get("roc_auc") is not None and "roc_auc" in sc["interval95"] else "n/a"
        rows.append(f"| {p} | {manifest['sizes'][p]['bytes'] / MB:.2f} | {_interval(sc, main)} | {sc['baseline'][main]:.4f} | {auc} | "
                    f"{d['threshold']:.4g} | {v['precision']:.3f} / {v['recall']:.3f} | {t['precision']:.3f} / {t['recall']:.3f} | "
                    f"{par['max_prob_diff']:.2g}, {par['agreement']:.4f} |")
        if d.get("learned_nothing"):
            warnings.append(f"The {p} model {d['learned_nothing']}.")
    first = manifest["decisions"][manifest["precisions"][-1]]
    lines += rows + [
        "",
        f"Test figures are on {first['scores']['examples']} test examples; the intervals are 95 % bootstrap intervals. "
        f"Probabilities are calibrated on {first['calibration']['examples']} validation examples (Platt scaling); the "
        f"threshold is {first['rule']}; a {unit} at or above it is reported as {positive}.",
        "",
    ]
    if warnings:
        lines += ["**Warning.** " + " ".join(warnings) + " Do not use it to make decisions.", ""]
    lines += [
        "## Do not trust it for",
        "",
        f"- Proof: a flag is a ranking aid for review, not a finding; an unflagged {unit} is not shown to be "
        f"{'safe' if task == 'defect' else 'different'}. At the threshold, about {100 * (1 - first['test']['precision']):.0f} % "
        f"of flags were wrong on the test split and {100 * (1 - first['test']['recall']):.0f} % of {positive} cases were missed.",
        f"- Code unlike its training data: it learned from {LANGUAGE_NAME[TASK_LANGUAGE[task]]} code of the "
        "projects in its data set; other projects, languages, generated or obfuscated code can score very differently.",
        "- Calibration elsewhere: the probabilities are calibrated on the validation split of its own data only.",
        "",
        "Files: `avatar.json` (manifest, hashes, calibration, threshold, figures), the ONNX graphs, `tokenizer.json`.",
    ]
    return "\n".join(lines) + "\n"
