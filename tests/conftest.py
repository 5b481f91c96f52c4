"""Fixtures: tiny random-initialised encoders with their own tokenizer, and small synthetic data sets.

The synthetic tasks are easy on purpose (one keyword decides the label), so a tiny model that learns
anything at all beats chance clearly, while one that learns nothing stays near 50 %.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

FILLER = [f"v{i}" for i in range(40)] + ["int", "char", "*", "(", ")", "{", "}", ";", "=", "+", "return", "if"]
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
VULN, SAFE = "strcpy", "strncpy"  # the keyword that decides a synthetic defect label
KINDS = ["sort", "parse"]  # a synthetic clone pair matches when both functions are of the same kind


def _function(rng: random.Random, keyword: str, n: int = 14, words: list[str] = FILLER) -> str:
    body = [rng.choice(words) for _ in range(n)]
    body.insert(rng.randrange(n), keyword)
    return "void f ( ) { " + " ".join(body) + " }"


def write_defect_data(root: Path, sizes=(120, 40, 40), seed: int = 0) -> Path:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    idx = 0
    for split, n in zip(("train", "valid", "test"), sizes):
        with open(root / f"{split}.jsonl", "w") as f:
            for i in range(n):
                target = i % 2
                f.write(json.dumps({"func": _function(rng, VULN if target else SAFE), "target": target, "idx": idx}) + "\n")
                idx += 1
    return root


def write_clone_data(root: Path, sizes=(120, 40, 40), seed: int = 0, functions_per_kind: int = 12) -> Path:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    # each kind draws its identifiers from its own half of the filler words, so a function's kind shows everywhere
    words = {k: FILLER[i * 20 : (i + 1) * 20] for i, k in enumerate(KINDS)}
    funcs = {f"{k}{j}": (k, _function(rng, k, words=words[k])) for k in KINDS for j in range(functions_per_kind)}
    with open(root / "data.jsonl", "w") as f:
        for idx, (_, code) in funcs.items():
            f.write(json.dumps({"idx": idx, "func": code}) + "\n")
    ids = list(funcs)
    for split, n in zip(("train", "valid", "test"), sizes):
        with open(root / f"{split}.txt", "w") as f:
            for i in range(n):
                want = i % 2
                while True:
                    a, b = rng.sample(ids, 2)
                    if (funcs[a][0] == funcs[b][0]) == bool(want):
                        break
                f.write(f"{a}\t{b}\t{want}\n")
    return root


def make_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + FILLER + [VULN, SAFE, "void", "f"] + KINDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        mask_token="<mask>", cls_token="<s>", sep_token="</s>",
    )


def make_tiny_encoder(folder: Path, seed: int = 0) -> Path:
    """A 'pretrained' (randomly initialised) RoBERTa encoder folder, loadable like any HF checkpoint."""
    import torch

    torch.manual_seed(seed)
    tokenizer = make_tokenizer()
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=66, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    RobertaModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder"))


@pytest.fixture
def defect_classifier(tmp_path, tiny_encoder) -> Path:
    """A saved (untrained) defect classifier folder built on the tiny encoder: a stand-in teacher or student."""
    from avatar.modeling import load_pretrained, save_classifier
    from avatar.tasks import get_task

    task = get_task("defect")
    model, tokenizer = load_pretrained(task, str(tiny_encoder))
    save_classifier(model, tokenizer, task, tmp_path / "classifier")
    return tmp_path / "classifier"


@pytest.fixture
def defect_data(tmp_path) -> Path:
    return write_defect_data(tmp_path / "defect")


@pytest.fixture
def clone_data(tmp_path) -> Path:
    return write_clone_data(tmp_path / "clone")


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory):
    """Keep the suite out of ~/.cache, also for module- and session-scoped fixtures that run first."""
    previous = os.environ.get("AVATAR_CACHE_DIR")
    os.environ["AVATAR_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        del os.environ["AVATAR_CACHE_DIR"]
    else:
        os.environ["AVATAR_CACHE_DIR"] = previous


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVATAR_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def ray_executor():
    """One local Ray instance for the whole suite; its workers can import the test job functions in tests/."""
    ray = pytest.importorskip("ray")
    from avatar.executor import make_executor

    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).parent), previous) if p)  # before Ray starts
    yield make_executor("ray")
    ray.shutdown()
    if previous is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = previous


def _saved_classifier(folder: Path, task_name: str, encoder: Path) -> Path:
    from avatar.modeling import load_pretrained, save_classifier
    from avatar.tasks import get_task

    import torch

    task = get_task(task_name)
    torch.manual_seed(0)  # the fresh head: the same whichever tests ran before
    model, tokenizer = load_pretrained(task, str(encoder))
    save_classifier(model, tokenizer, task, folder)
    return folder


@pytest.fixture(scope="session")
def exports(tmp_path_factory, tiny_encoder) -> dict[str, Path]:
    """Export folders (fp32 and int8) of an untrained defect and an untrained clone classifier on the tiny encoder,
    parity-checked on the synthetic test splits: built once, read by every test of export, runtime and scan."""
    from avatar.export import export
    from avatar.settings import ExportConfig
    from avatar.tasks import get_task

    root = tmp_path_factory.mktemp("exports")
    out = {}
    for task_name, write in (("defect", write_defect_data), ("clone", write_clone_data)):
        model = _saved_classifier(root / f"{task_name}-model", task_name, tiny_encoder)
        data = get_task(task_name).load(write(root / f"{task_name}-data"))
        export(model, root / f"{task_name}-onnx", data.test, data.valid, ExportConfig(int8=True))
        out[task_name] = root / f"{task_name}-onnx"
        out[f"{task_name}-model"] = model
        out[f"{task_name}-data"] = root / f"{task_name}-data"
    return out
