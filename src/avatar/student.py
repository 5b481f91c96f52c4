"""The student's 13-hyperparameter configuration (the paper's search space): plain data, no torch.

A configuration is saved and loaded as JSON and checked on load. The model it describes is built by
``avatar.modeling.build_student`` (a randomly initialised RoBERTa encoder with the task's head); its parameter
count is the cost model's (``avatar.cost``), exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from avatar.errors import AvatarError

TOKENIZERS = ("BPE", "WordPiece", "Unigram", "WordLevel")
ACTIVATIONS = ("gelu", "relu", "silu", "gelu_new")
POSITION_EMBEDDINGS = ("absolute", "relative_key", "relative_key_query")
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # RoBERTa's, with RoBERTa's ids 0..4
PAD_ID = 1
POSITION_OFFSET = PAD_ID + 1  # RoBERTa numbers positions from pad id + 1: a model reads that many fewer tokens than its position rows


@dataclass(frozen=True)
class StudentConfig:
    tokenizer: str = "BPE"  # student tokenizer algorithm: BPE (byte-level), WordPiece, Unigram or WordLevel
    vocab_size: int = 2000  # size of the student's own vocabulary (embedding rows)
    num_hidden_layers: int = 4  # transformer layers
    hidden_size: int = 96  # width of every token vector; must be divisible by num_attention_heads
    hidden_act: str = "gelu"  # feed-forward activation: gelu, relu, silu or gelu_new
    hidden_dropout_prob: float = 0.1  # dropout on embeddings and layer outputs
    intermediate_size: int = 256  # feed-forward inner width
    num_attention_heads: int = 4  # attention heads per layer
    attention_probs_dropout_prob: float = 0.1  # dropout on attention weights
    max_sequence_length: int = 256  # tokens per function the student reads; longer code is truncated
    position_embedding_type: str = "absolute"  # absolute, relative_key or relative_key_query
    learning_rate: float = 1e-3  # peak AdamW learning rate of distillation
    batch_size: int = 32  # distillation batch size

    def __post_init__(self) -> None:
        problems = validate(self)
        if problems:
            raise AvatarError("invalid student configuration: " + "; ".join(problems))

    @property
    def max_position_embeddings(self) -> int:
        """RoBERTa numbers positions from pad id + 1, so it needs that many rows more than tokens."""
        return self.max_sequence_length + POSITION_OFFSET

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def save(self, path: Path) -> None:
        from avatar._io import write_text_atomic

        write_text_atomic(Path(path), self.to_json())

    @classmethod
    def load(cls, path: Path) -> StudentConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AvatarError("student configuration not found", path) from None
        except json.JSONDecodeError as e:
            raise AvatarError(f"malformed JSON ({e.msg})", path, e.lineno) from None
        try:
            return cls.from_dict(raw)
        except AvatarError as e:
            raise AvatarError(e.message, path) from None

    @classmethod
    def from_dict(cls, raw: object) -> StudentConfig:
        if not isinstance(raw, dict):
            raise AvatarError("a student configuration is a JSON object")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise AvatarError(f"unknown field(s) {', '.join(unknown)}; expected {', '.join(known)}")
        values = {}
        for name, value in raw.items():
            kind = known[name].type
            if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise AvatarError(f"{name} must be an integer, got {value!r}")
            if kind == "float" and (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)):
                raise AvatarError(f"{name} must be a finite number, got {value!r}")
            if kind == "str" and not isinstance(value, str):
                raise AvatarError(f"{name} must be a string, got {value!r}")
            values[name] = float(value) if kind == "float" else value
        return cls(**values)


def validate(cfg: StudentConfig) -> list[str]:
    """Every reason the configuration cannot be built (empty when it can)."""
    problems = []
    for name, choices in (
        ("tokenizer", TOKENIZERS),
        ("hidden_act", ACTIVATIONS),
        ("position_embedding_type", POSITION_EMBEDDINGS),
    ):
        if getattr(cfg, name) not in choices:
            problems.append(f"{name} must be one of {', '.join(choices)}, got {getattr(cfg, name)!r}")
    for name in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "batch_size"):
        if getattr(cfg, name) < 1:
            problems.append(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.vocab_size < 300:  # byte-level BPE alone needs 256 symbols plus the special tokens
        problems.append(f"vocab_size must be at least 300, got {cfg.vocab_size}")
    if cfg.max_sequence_length < 8:
        problems.append(f"max_sequence_length must be at least 8, got {cfg.max_sequence_length}")
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            problems.append(f"{name} must be in [0, 1), got {getattr(cfg, name)}")
    if not math.isfinite(cfg.learning_rate) or cfg.learning_rate <= 0:
        problems.append(f"learning_rate must be positive, got {cfg.learning_rate}")
    if cfg.num_attention_heads >= 1 and cfg.hidden_size % cfg.num_attention_heads:
        problems.append(
            f"hidden_size ({cfg.hidden_size}) must be divisible by num_attention_heads ({cfg.num_attention_heads})"
        )
    return problems
