"""The student's configuration space: one typed definition of its 13 dimensions, user-overridable.

Each dimension is an integer range with a step, a float range with a step, or a set of categories. Genes are
positions normalised to [0, 1] per dimension, so samplers and distances treat every dimension alike (the
paper measured distance in raw units, where vocabulary size swamped everything).
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from avatar._io import read_text
from avatar.errors import AvatarError
from avatar.student import ACTIVATIONS, POSITION_EMBEDDINGS, TOKENIZERS, StudentConfig


class _Grid:
    """Grid index <-> value, the one conversion every stage uses (sampling, SMT bounds, search variables)."""

    def value(self, index: int):
        """The grid's ``index``-th value as a plain Python value (JSON and dataclass checks want plain types)."""
        v = self.values()[int(index)]
        return v.item() if hasattr(v, "item") else v

    def index(self, value) -> int:
        """Index of the grid value nearest ``value`` (of a choice: its position)."""
        return int(np.abs(self.values() - value).argmin())


@dataclass(frozen=True)
class IntDim(_Grid):
    low: int  # smallest value
    high: int  # largest value (on the grid: low + k * step)
    step: int = 1  # grid spacing

    def values(self) -> np.ndarray:
        return np.arange(self.low, self.high + 1, self.step, dtype=np.int64)

    def __len__(self) -> int:
        return (self.high - self.low) // self.step + 1


@dataclass(frozen=True)
class FloatDim(_Grid):
    low: float
    high: float
    step: float

    def values(self) -> np.ndarray:
        n = len(self)
        return np.round(self.low + self.step * np.arange(n), 10)

    def __len__(self) -> int:
        return int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1


@dataclass(frozen=True)
class CatDim(_Grid):
    choices: tuple  # allowed values, in a fixed order

    def values(self) -> list:
        return list(self.choices)

    def index(self, value) -> int:
        return self.choices.index(value)

    def __len__(self) -> int:
        return len(self.choices)


Dim = IntDim | FloatDim | CatDim

# The paper's ranges. Steps: hidden sizes move in multiples of 16 and sequence lengths in multiples of 32, which
# keeps the SMT split small; vocabulary and intermediate sizes keep step 1, as the paper's sampler drew them.
PAPER_DIMS: dict[str, Dim] = {
    "tokenizer": CatDim(TOKENIZERS),
    "vocab_size": IntDim(1000, 50265),
    "num_hidden_layers": IntDim(1, 12),
    "hidden_size": IntDim(16, 768, 16),
    "hidden_act": CatDim(ACTIVATIONS),
    "hidden_dropout_prob": FloatDim(0.1, 0.5, 0.05),
    "intermediate_size": IntDim(16, 3072),
    "num_attention_heads": IntDim(1, 12),
    "attention_probs_dropout_prob": FloatDim(0.1, 0.5, 0.05),
    "max_sequence_length": IntDim(256, 512, 32),
    "position_embedding_type": CatDim(POSITION_EMBEDDINGS),
    "learning_rate": CatDim((1e-3, 1e-4, 5e-5)),
    "batch_size": CatDim((16, 32, 64)),
}
NAMES = tuple(f.name for f in fields(StudentConfig))


@dataclass(frozen=True)
class Space:
    dims: dict  # name -> IntDim | FloatDim | CatDim, for every StudentConfig field

    def __post_init__(self) -> None:
        for name, dim in self.dims.items():
            if isinstance(dim, IntDim | FloatDim) and (dim.step <= 0 or dim.high < dim.low):
                raise AvatarError(f"space: {name} needs low <= high and a positive step, got {dim}")
            if isinstance(dim, CatDim) and (not dim.choices or len(set(dim.choices)) != len(dim.choices)):
                raise AvatarError(f"space: {name} needs at least one choice, each once")
            off_grid = (dim.high - dim.low) % dim.step if isinstance(dim, IntDim) else (
                abs(dim.low + (len(dim) - 1) * dim.step - dim.high) > 1e-9 if isinstance(dim, FloatDim) else False)
            if off_grid:
                raise AvatarError(f"space: {name} high ({dim.high}) must lie on the grid low + k * step")
        if set(self.dims) != set(NAMES):
            raise AvatarError(f"space: needs exactly the dimensions {', '.join(NAMES)}")
        # every value must make a valid configuration (divisibility aside): check both corners and every category
        for corner in (0, -1):
            values = {n: d.value(corner % len(d)) for n, d in self.dims.items()}
            values["num_attention_heads"] = 1
            for name, d in self.dims.items():
                for choice in d.values() if isinstance(d, CatDim) else ():
                    try:
                        StudentConfig(**{**values, name: choice})
                    except AvatarError as e:
                        raise AvatarError(f"space: {e.message.removeprefix('invalid student configuration: ')}") from None

    @classmethod
    def paper(cls) -> Space:
        return cls(dict(PAPER_DIMS))

    def total(self) -> int:
        """Configurations on the grid (before any constraint)."""
        return math.prod(len(d) for d in self.dims.values())

    def override(self, changes: dict) -> Space:
        """A space with some dimensions replaced: ``{"vocab_size": {"low": 2000, "high": 8000}, "tokenizer": ["BPE"]}``."""
        dims = dict(self.dims)
        for name, spec in changes.items():
            if name not in dims:
                raise AvatarError(f"space: unknown dimension {name!r}; expected one of {', '.join(NAMES)}")
            old = dims[name]
            if isinstance(old, CatDim):
                choices = spec.get("choices") if isinstance(spec, dict) else spec
                if not isinstance(choices, list):
                    raise AvatarError(f"space: {name} takes a list of choices")
                dims[name] = CatDim(tuple(choices))
            else:
                if not isinstance(spec, dict) or set(spec) - {"low", "high", "step"}:
                    raise AvatarError(f"space: {name} takes a table with low, high and/or step")
                cast = int if isinstance(old, IntDim) else float
                try:
                    dims[name] = replace(old, **{k: cast(v) for k, v in spec.items()})
                except (TypeError, ValueError):
                    raise AvatarError(f"space: {name} bounds must be numbers, got {spec}") from None
        return Space(dims)

    def within(self, bounds: dict) -> Space:
        """This space cut to the SMT analysis's bounds (``SmtResult.bounds``: a numeric dimension's [min, max] over
        feasible configurations, a categorical one's feasible choices), on the same grid: every feasible
        configuration is still in it, and sampling and search draw from it instead of the whole grid."""
        changes: dict = {}
        for name in NAMES:
            b, d = bounds[name], self.dims[name]
            if isinstance(d, CatDim):
                changes[name] = [c for c in d.choices if c in b]
            else:
                changes[name] = {"low": d.value(d.index(b[0])), "high": d.value(d.index(b[1]))}
        return self.override(changes)

    @classmethod
    def load(cls, path: Path) -> Space:
        """The paper's space with the overrides of a TOML or JSON file (a ``[space]`` table, or top level)."""
        path = Path(path)
        try:
            text = read_text(path)
            raw = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
        except FileNotFoundError:
            raise AvatarError("space file not found", path) from None
        except OSError as e:
            raise AvatarError(f"cannot read space file ({e.__class__.__name__})", path) from None
        except tomllib.TOMLDecodeError as e:
            raise AvatarError(f"malformed TOML ({e})", path) from None
        except json.JSONDecodeError as e:
            raise AvatarError(f"malformed JSON ({e.msg})", path, e.lineno) from None
        raw = raw.get("space", raw) if isinstance(raw, dict) else raw
        if not isinstance(raw, dict):
            raise AvatarError("a space file holds a table of dimensions", path)
        try:
            return cls.paper().override(raw)
        except AvatarError as e:
            raise AvatarError(e.message, path) from None

    def override_flags(self, ranges: list[str], choices: list[str]) -> Space:
        """Overrides from command-line flags: ``NAME=LOW:HIGH[:STEP]`` and ``NAME=A,B,C``."""
        changes: dict = {}
        for flag in ranges:
            name, _, spec = flag.partition("=")
            parts = spec.split(":")
            if not name or len(parts) not in (2, 3):
                raise AvatarError(f"--range takes NAME=LOW:HIGH or NAME=LOW:HIGH:STEP, got {flag!r}")
            changes[name] = dict(zip(("low", "high", "step"), parts))
        for flag in choices:
            name, _, spec = flag.partition("=")
            if not name or not spec:
                raise AvatarError(f"--choices takes NAME=A,B,C, got {flag!r}")
            kind = type(PAPER_DIMS[name].choices[0]) if name in PAPER_DIMS and isinstance(PAPER_DIMS[name], CatDim) else str
            try:
                changes[name] = [kind(x) for x in spec.split(",")]
            except ValueError:
                raise AvatarError(f"--choices {name} takes {kind.__name__} values, got {spec!r}") from None
        return self.override(changes)

    def describe(self) -> dict:
        out = {}
        for name, d in self.dims.items():
            if isinstance(d, CatDim):
                out[name] = {"kind": "categorical", "choices": list(d.choices)}
            else:
                out[name] = {"kind": "int" if isinstance(d, IntDim) else "float", "low": d.low, "high": d.high, "step": d.step}
        return out

    # genes: one number in [0, 1] per dimension, in NAMES order
    def genes(self, index: np.ndarray) -> np.ndarray:
        """(N, 13) grid indices -> (N, 13) genes, every dimension scaled to [0, 1] by its grid position."""
        lengths = np.array([len(self.dims[n]) for n in NAMES])
        return index / np.maximum(lengths - 1, 1)

    def encode(self, values: dict) -> np.ndarray:
        """Genes of a configuration given as a ``{name: value}`` mapping (``dataclasses.asdict`` of a config)."""
        index = []
        for name in NAMES:
            d, v = self.dims[name], values[name]
            if isinstance(d, CatDim):
                if v not in d.choices:
                    raise AvatarError(f"{name}={v!r} is not in the space")
                index.append(d.choices.index(v))
            else:
                index.append(round((v - d.low) / d.step))
        return self.genes(np.array([index]))[0]

    def decode(self, genes: np.ndarray) -> dict:
        """The grid values nearest to ``genes``, by name (heads may not divide hidden yet: see ``smt.repair``)."""
        return self.at([round(g * (len(self.dims[name]) - 1)) for name, g in zip(NAMES, np.clip(genes, 0.0, 1.0))])

    def at(self, indices) -> dict:
        """The configuration at grid indices (one per dimension, in NAMES order)."""
        return {name: self.dims[name].value(i) for name, i in zip(NAMES, indices)}
