"""The model card (``README.md``, Hugging Face's convention) written with every export: what the model is, what
it was made from, what was measured with what uncertainty, its threshold, and what it must not be trusted for."""

from __future__ import annotations

from avatar.cost import MB
from avatar.runtime import COMMAND
from avatar.stats import BASELINE_RULE

CARD = "README.md"
LANGUAGE_NAME = {"c": "C", "cpp": "C++", "java": "Java", "python": "Python", "javascript": "JavaScript", "go": "Go"}
PURPOSE = {  # the presets': (purpose, question, unit, what a finding is, what its absence is, tag)
    "defect": ("vulnerability prediction", "whether a C function is vulnerable", "function", "vulnerable", "safe",
               "vulnerability-detection"),
    "clone": ("clone detection", "whether two Java methods do the same thing", "pair", "clone", "different", "clone-detection"),
}


def _purpose(manifest: dict) -> tuple[str, str, str, str, str, str]:
    """What the model is for, in words: a preset's, or made from the task's classes and language."""
    task = manifest["task"]
    if task in PURPOSE:
        return PURPOSE[task]
    language = LANGUAGE_NAME.get(manifest["language"], manifest["language"])
    classes = ", ".join(manifest["classes"])
    finding = " or ".join(manifest["positive"]) or "any class"
    if manifest["num_inputs"] == 1:
        return (f"{task} classification", f"which class ({classes}) a {language} function is in", "function", finding,
                "in another class", "code-classification")
    return (f"{task} pair classification", f"which class ({classes}) a pair of {language} functions is in", "pair", finding,
            "in another class", "code-pair-classification")


def _interval(scores: dict, metric: str) -> str:
    lo, hi = scores["interval95"][metric]
    return f"{scores[metric]:.4f} [{lo:.3f}, {hi:.3f}]"


def model_card(manifest: dict, trained: dict | None, about: dict) -> str:
    """The card's Markdown, from the export manifest, the model folder's training record and ``about``."""
    task = manifest["task"]
    purpose, question, unit, positive, negative, tag = _purpose(manifest)
    main = manifest.get("metric") or ("accuracy" if task == "defect" else "f1")
    lines = [
        "---",
        "library_name: onnxruntime",
        f"tags: [code, avatar, distillation, {tag}]",
        "---",
        "",
        f"# Avatar student: {purpose}",
        "",
        f"A small model that predicts {question}, distilled by Avatar from a larger model of code. It runs on a CPU "
        f"through onnxruntime: `avatar {COMMAND[manifest['num_inputs']]} PATH --model THIS_FOLDER`.",
        "",
        "## Made from",
        "",
        f"- Data: {about.get('data', 'not recorded')} (code normalised: line ends, trailing spaces and blank lines).",
        f"- Teacher: {about.get('teacher', 'not recorded')}.",
    ]
    if about.get("rebuild"):
        lines.append(f"- Rebuilt by: `{about['rebuild']}`.")
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
                         f"{s['vocab_size']} tokens, {s['max_sequence_length']} tokens per {('function' if manifest['num_inputs'] == 1 else 'method')}.")
    lines.append(f"- Parameters: {manifest.get('parameters', 'not recorded'):,}." if isinstance(manifest.get("parameters"), int)
                 else "- Parameters: not recorded.")
    lines += ["", "## Measured (through onnxruntime, as the command runs it)", ""]
    rows = ["| precision | size MB | test " + main + " [95 % interval] | " + f"{BASELINE_RULE[main]} baseline | test ROC AUC [95 %] | "
            "threshold | validation precision / recall | test precision / recall | parity with PyTorch (max prob. diff, agreement) |",
            "|---|---|---|---|---|---|---|---|---|"]
    warnings = []
    for p in manifest["precisions"]:
        d, par = manifest["decisions"][p], manifest["parity"][p]
        sc = d["scores"]
        auc = _interval(sc, "roc_auc") if sc.get("roc_auc") is not None and "roc_auc" in sc["interval95"] else "n/a"
        at = (f"{d['threshold']:.4g} | {d['validation']['precision']:.3f} / {d['validation']['recall']:.3f} | "
              f"{d['test']['precision']:.3f} / {d['test']['recall']:.3f}" if "validation" in d else "none | n/a | n/a")
        rows.append(f"| {p} | {manifest['sizes'][p]['bytes'] / MB:.2f} | {_interval(sc, main)} | {sc['baseline'][main]:.4f} | {auc} | "
                    f"{at} | {par['max_prob_diff']:.2g}, {par['agreement']:.4f} |")
        if d.get("learned_nothing"):
            warnings.append(f"The {p} model {d['learned_nothing']}.")
    first = manifest["decisions"][manifest["precisions"][-1]]
    method = {"platt": "Platt scaling", "temperature": "a temperature"}[first["calibration"]["method"]]
    lines += rows + [
        "",
        f"Test figures are on {first['scores']['examples']} test examples; the intervals are 95 % bootstrap intervals. "
        f"Probabilities are calibrated on {first['calibration']['examples']} validation examples ({method}); "
        + (f"the threshold is {first['rule']}; a {unit} at or above it is reported as {positive}." if "validation" in first
           else f"{first['rule']}."),
        "",
    ]
    if warnings:
        lines += ["**Warning.** " + " ".join(warnings) + " Do not use it to make decisions.", ""]
    proof = (f" At the threshold, about {100 * (1 - first['test']['precision']):.0f} % of flags were wrong on the test split and "
             f"{100 * (1 - first['test']['recall']):.0f} % of {positive} cases were missed." if "validation" in first else "")
    lines += [
        "## Do not trust it for",
        "",
        f"- Proof: a flag is a ranking aid for review, not a finding; an unflagged {unit} is not shown to be {negative}.{proof}",
        f"- Code unlike its training data: it learned from {LANGUAGE_NAME.get(manifest['language'], manifest['language'])} code of the "
        "projects in its data set; other projects, languages, generated or obfuscated code can score very differently.",
        "- Calibration elsewhere: the probabilities are calibrated on the validation split of its own data only.",
        "",
        "Files: `avatar.json` (manifest, hashes, calibration, threshold, figures), the ONNX graphs, `tokenizer.json`.",
    ]
    return "\n".join(lines) + "\n"
