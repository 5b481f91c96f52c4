"""The settings of a whole ``avatar compress`` run: typed defaults, a TOML file over them, flags over both.

The resolved settings are written back as ``RUN/config.toml``, which ``--config`` reads again unchanged.
TOML has no null: an option whose value is "none" (no limit, every core, ...) is left out, and its default
is always None, so leaving it out means the same thing in every file.
"""

from __future__ import annotations

import re
import tomllib
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path

from avatar.errors import AvatarError


@dataclass
class FinetuneSection:
    epochs: int = 2  # passes over the labelled half
    learning_rate: float = 5e-5  # peak learning rate
    batch_size: int = 16  # training batch size
    max_length: int = 256  # tokens per function the teacher reads
    limit: int | None = None  # at most this many labelled examples
    eval_limit: int | None = None  # at most this many validation and test examples each


@dataclass
class SearchSection:
    samples: int = 8  # configurations distilled briefly to train the indicator
    sample_epochs: int = 1  # epochs of each sample's short distillation
    sample_limit: int | None = None  # unlabelled examples of each sample's short distillation
    sample_eval_limit: int | None = None  # validation examples scoring each sample
    sample_metric: str = "roc_auc"  # validation metric the indicator learns: roc_auc, accuracy or f1
    objective: str = "latency"  # "latency" (measured on this CPU) or "flops" (the paper's proxy)
    latency_architectures: int = 16  # random-weight architectures timed to fit the latency model
    algorithm: str = "nsga2"  # "nsga2" or "paper-ga"
    population: int = 40  # individuals per generation
    generations: int = 30  # generations of the search
    prefer: str = "effectiveness"  # automatic choice: effectiveness, knee, fastest or smallest
    max_gflops: float | None = None  # cap on inference GFLOPs per example
    min_head_dim: int = 4  # smallest hidden_size / heads allowed
    executor: str = "local"  # "local" process pool or "ray"
    workers: int | None = None  # local workers (none: one per core)
    ray_address: str | None = None  # join this Ray cluster (none: start Ray locally)


@dataclass
class DistillSection:
    epochs: int = 10  # passes over the unlabelled half for the chosen student
    temperature: float = 2.0  # softens teacher and student distributions in the KL term
    alpha: float = 0.0  # weight of cross-entropy on the teacher's argmax
    patience: int | None = 3  # validations without improvement before stopping (none: never)
    limit: int | None = None  # at most this many unlabelled examples
    eval_limit: int | None = None  # at most this many validation and test examples each


@dataclass
class MeasureSection:
    runs: int = 20  # batch-1 passes timed per model
    warmup: int = 3  # untimed passes first
    threads: int | None = None  # torch CPU threads (none: torch's default)
    throughput_examples: int = 64  # examples pushed through for the throughput figure
    energy_rounds: int = 2  # interleaved energy blocks per model
    energy_examples: int = 8  # batch-1 passes per energy block
    eval_limit: int | None = None  # score on at most this many test examples
    country: str | None = None  # ISO alpha-3 code for carbon intensity (none: world mean)
    architectures: list[str] = field(default_factory=lambda: ["codebert-base"])  # measured with random weights, costs only


@dataclass
class ExportSection:
    int8: bool = True  # also write int8 graphs (dynamic quantisation): about half the size, and what avatar scan uses
    parity_examples: int = 256  # test examples the parity check compares with PyTorch
    max_prob_diff: float = 0.1  # int8: largest allowed probability difference from PyTorch
    min_agreement: float = 0.95  # int8: smallest allowed share of predictions equal to PyTorch's


@dataclass
class CompressConfig:
    task: str = "defect"  # defect (Devign) or clone (BigCloneBench)
    data: str | None = None  # data folder in CodeXGLUE format (none: the built-in sample)
    teacher: str = "minilm"  # 'minilm' (packaged), a local folder, or a hub id
    teacher_finetuned: bool = False  # the teacher is already fine-tuned on this task: skip fine-tuning
    budget_mb: float = 3.0  # largest student, MB (2^20 bytes) of fp32 weights
    seed: int = 42  # data split, sampling, search, training
    finetune: FinetuneSection = field(default_factory=FinetuneSection)
    search: SearchSection = field(default_factory=SearchSection)
    distill: DistillSection = field(default_factory=DistillSection)
    measure: MeasureSection = field(default_factory=MeasureSection)
    export: ExportSection = field(default_factory=ExportSection)
    space: dict = field(default_factory=dict)  # overrides of the paper's space, as in ``avatar space --space``

    def validate(self) -> None:
        from avatar.pipeline import check_search_settings
        from avatar.space import Space
        from avatar.tasks import TASKS

        if self.task not in TASKS:
            raise AvatarError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        Space.paper().override(self.space)
        check_search_settings(self.search_settings())
        for section in (self.finetune, self.search, self.distill, self.measure, self.export):
            for f in fields(section):
                value = getattr(section, f.name)
                if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0 and f.name not in ("alpha",):
                    raise AvatarError(f"{_section_name(section)}.{f.name} must be positive, got {value}")
        if self.distill.alpha < 0:
            raise AvatarError(f"distill.alpha must be at least 0, got {self.distill.alpha}")
        from avatar.measure import ARCHITECTURES

        unknown = [a for a in self.measure.architectures if a not in ARCHITECTURES]
        if unknown:
            raise AvatarError(f"measure.architectures: unknown {unknown[0]!r}; choose from {', '.join(ARCHITECTURES)}")
        from avatar.energy import carbon_intensity

        carbon_intensity(self.measure.country)  # an unknown country fails now, not after hours of work
        try:
            self.export_config().check()
        except AvatarError as e:
            raise AvatarError(f"export: {e.message}") from None

    def export_config(self):
        from avatar.export import ExportConfig

        e = self.export
        return ExportConfig(int8=e.int8, parity_examples=e.parity_examples, max_prob_diff=e.max_prob_diff,
                            min_agreement=e.min_agreement)

    def search_settings(self):
        from avatar.distill import DistillConfig
        from avatar.pipeline import SearchSettings

        s = self.search
        return SearchSettings(
            budget_mb=self.budget_mb, max_gflops=s.max_gflops, min_head_dim=s.min_head_dim, samples=s.samples,
            sample_metric=s.sample_metric,
            short_budget=DistillConfig(epochs=s.sample_epochs, limit=s.sample_limit, eval_limit=s.sample_eval_limit,
                                       patience=None, seed=self.seed),
            objective=s.objective, latency_architectures=s.latency_architectures, algorithm=s.algorithm,
            population=s.population, generations=s.generations, prefer=s.prefer, executor=s.executor,
            workers=s.workers, ray_address=s.ray_address, seed=self.seed,
        )


SECTIONS = {"finetune": FinetuneSection, "search": SearchSection, "distill": DistillSection, "measure": MeasureSection,
            "export": ExportSection}


def _section_name(section) -> str:
    return next(name for name, cls in SECTIONS.items() if isinstance(section, cls))


def _line_of(text: str, key: str, table: str | None) -> int | None:
    """Line of ``key = ...`` (inside ``[table]`` when given) in a TOML text, for error messages."""
    current = None
    for n, line in enumerate(text.splitlines(), 1):
        header = re.match(r"\s*\[([^\]]+)\]", line)
        if header:
            current = header.group(1).strip()
        elif current == table and re.match(rf"\s*\"?{re.escape(key)}\"?\s*=", line):
            return n
    return None


def _check_value(hint, value, where: str) -> None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if args and type(None) in args:  # X | None: None itself cannot be written in TOML
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        ok = isinstance(value, list) and all(isinstance(v, args[0]) for v in value)
        want = f"a list of {args[0].__name__}"
    elif hint is float:
        ok, want = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    elif hint is int:
        ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
    else:
        ok, want = isinstance(value, hint), {str: "a string", bool: "true or false", dict: "a table"}.get(hint, hint.__name__)
    if not ok:
        raise AvatarError(f"{where} must be {want}, got {value!r}")


def _apply(obj, values: dict, text: str, path: Path, table: str | None):
    hints = typing.get_type_hints(type(obj))
    changes = {}
    for key, value in values.items():
        where = key if table is None else f"{table}.{key}"
        line = _line_of(text, key, table)
        if key not in hints:
            allowed = ", ".join(f.name for f in fields(obj))
            raise AvatarError(f"unknown option {where!r}; expected one of {allowed}", path, line)
        if is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise AvatarError(f"{where} must be a table ([{key}])", path, line)
            changes[key] = _apply(getattr(obj, key), value, text, path, key)
            continue
        try:
            _check_value(hints[key], value, where)
        except AvatarError as e:
            raise AvatarError(e.message, path, line) from None
        # 2 and 2.0 are the same temperature: one type, so that stage keys do not tell them apart
        floats = float in (hints[key], *typing.get_args(hints[key]))
        changes[key] = float(value) if floats and isinstance(value, int) else value
    return replace(obj, **changes)


def load_config(path: Path) -> CompressConfig:
    """The built-in defaults with a TOML file's options; relative paths are the file's."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise AvatarError("config file not found", path) from None
    except (OSError, UnicodeError) as e:
        raise AvatarError(f"cannot read config file ({e.__class__.__name__})", path) from None
    except tomllib.TOMLDecodeError as e:
        line = re.search(r"line (\d+)", str(e))
        raise AvatarError(f"malformed TOML ({str(e).split(' (at')[0]})", path, int(line.group(1)) if line else None) from None
    config = _apply(CompressConfig(), raw, text, path, None)
    for key in ("data", "teacher"):
        value = getattr(config, key)
        if key in raw and value is not None and not Path(value).is_absolute() and (key == "data" or (path.parent / value).exists()):
            config = replace(config, **{key: str((path.parent / value).resolve())})
    try:
        config.validate()
    except AvatarError as e:
        raise AvatarError(e.message, path) from None
    return config


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return repr(value)


def to_toml(config: CompressConfig) -> str:
    """The resolved settings as TOML, one commented line per option; options that are none are commented out."""
    lines = ["# avatar compress: the resolved settings of this run (avatar compress --config this-file)", ""]

    def emit(obj) -> None:
        comments = _field_comments(type(obj))
        for f in fields(obj):
            value = getattr(obj, f.name)
            if is_dataclass(value) or f.name == "space":
                continue
            note = f"  # {comments[f.name]}" if f.name in comments else ""
            lines.append(f"# {f.name} = none{note}" if value is None else f"{f.name} = {_toml_value(value)}{note}")

    emit(config)
    for name in SECTIONS:
        lines += ["", f"[{name}]"]
        emit(getattr(config, name))
    if config.space:
        lines += ["", "[space]"] + [f"{k} = {_toml_value(v)}" for k, v in config.space.items()]
    return "\n".join(lines) + "\n"


def _field_comments(cls) -> dict[str, str]:
    """The one-line comment on each field of a settings dataclass, read from this module's source."""
    import inspect

    source = inspect.getsource(cls)
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s+(\w+): [^=]+=.*?  # (.*)$", source, re.M)}

