"""The settings of a whole ``avatar compress`` run: the stage configurations, a preset, a TOML file, flags.

Each setting is defined once, with its comment, in its stage's configuration (``FinetuneConfig``,
``SearchSettings``, ``DistillConfig``, ``MeasureConfig``, ``ExportConfig``): those are the sections here, so
``[distill] epochs`` is ``DistillConfig.epochs``. A preset (``demo``, for the built-in sample) only changes
some of them. The resolved settings are written back as ``RUN/config.toml``, which ``--config`` reads again
unchanged. TOML has no null: an option whose value is "none" (no limit, every core, ...) is left out, and its
default is always None, so leaving it out means the same thing in every file.
"""

from __future__ import annotations

import re
import tomllib
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path

from avatar._io import read_text, toml_line
from avatar.errors import AvatarError
from avatar.settings import (
    ARCHITECTURES, BUDGET_MB, MINILM, SEED, DeviceConfig, DistillConfig, ExportConfig, FinetuneConfig, MeasureConfig, SearchSettings,
    check_settings,
)


PRESETS = {
    # the built-in sample (200 unlabelled functions): the whole run in a few minutes on 2 cores
    "demo": {
        "finetune": {"epochs": 2},
        "search": {"samples": 8, "generations": 30, "latency_architectures": 16},
        "measure": {"runs": 20, "warmup": 3, "throughput_examples": 64, "energy_rounds": 2, "energy_seconds": 0.5},
    },
}
SAMPLE_PRESET = "demo"  # what a run on the built-in sample (no data folder) uses unless told otherwise

# settings of a stage that the run sets once for all stages, by name: a section field of the same name
# (FinetuneConfig.model <- teacher) takes the top-level value and is not an option of its own section
OWNED = {"model": "teacher", "seed": "seed", "budget_mb": "budget_mb"}


@dataclass
class CompressConfig:
    task: str = "defect"  # defect (Devign), clone (BigCloneBench), or a data set of your own: classify or pairs (its task.toml)
    data: str | None = None  # data folder in CodeXGLUE format (none: the built-in sample)
    preset: str | None = None  # budget profile under this file's options: "demo" (none: the full defaults; the built-in sample takes demo)
    teacher: str = MINILM  # 'minilm' (packaged), a local folder, or a hub id
    teacher_finetuned: bool = False  # the teacher is already fine-tuned on this task: skip fine-tuning
    teacher_labels: str | None = None  # a soft-label file (avatar label, e.g. --predictions) to distil from: no teacher model runs
    budget_mb: float = BUDGET_MB  # largest student, MB (2^20 bytes) of fp32 weights
    seed: int = SEED  # data split, sampling, search, training
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    search: SearchSettings = field(default_factory=SearchSettings)
    distill: DistillConfig = field(default_factory=DistillConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    space: dict = field(default_factory=dict)  # overrides of the paper's space, as in ``avatar space --space``

    def __post_init__(self) -> None:
        """The stage configurations take the run-wide settings, field by field, by name (see OWNED)."""
        for name in SECTIONS:
            section = getattr(self, name)
            owned = {f.name: getattr(self, OWNED[f.name]) for f in fields(section) if f.name in OWNED}
            setattr(self, name, replace(section, **owned))

    def validate(self) -> None:
        from avatar.space import Space
        from avatar.tasks import TASK_NAMES

        if self.task not in TASK_NAMES:
            raise AvatarError(f"task must be one of {', '.join(TASK_NAMES)}, got {self.task!r}")
        if self.preset is not None and self.preset not in PRESETS:
            raise AvatarError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.teacher_labels is not None and self.teacher_finetuned:
            raise AvatarError("teacher_labels replaces the teacher model: it cannot be combined with teacher_finetuned")
        Space.paper().override(self.space)
        check_settings(self)  # the run-wide numbers
        for name in SECTIONS:
            check_settings(getattr(self, name), name)
        unknown = [a for a in self.measure.architectures if a not in ARCHITECTURES]
        if unknown:
            raise AvatarError(f"measure.architectures: unknown {unknown[0]!r}; choose from {', '.join(ARCHITECTURES)}")
        from avatar.energy import carbon_intensity

        carbon_intensity(self.measure.country)  # an unknown country fails now, not after hours of work


SECTIONS = {"finetune": FinetuneConfig, "search": SearchSettings, "distill": DistillConfig, "measure": MeasureConfig,
            "export": ExportConfig, "device": DeviceConfig}


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


def _apply(obj, values: dict, text: str, path: Path | None, table: str | None):
    hints = typing.get_type_hints(type(obj))
    changes = {}
    for key, value in values.items():
        where = key if table is None else f"{table}.{key}"
        line = toml_line(text, key, table)
        if table is not None and key in OWNED:
            raise AvatarError(f"{where} is set once for the whole run: write {OWNED[key]} = ... at the top of the file", path, line)
        if key not in hints:
            allowed = ", ".join(f.name for f in fields(obj) if table is None or f.name not in OWNED)
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


def _read_toml(path: Path) -> tuple[dict, str]:
    try:
        text = read_text(path)
        return tomllib.loads(text), text
    except FileNotFoundError:
        raise AvatarError("config file not found", path) from None
    except OSError as e:
        raise AvatarError(f"cannot read config file ({e.__class__.__name__})", path) from None
    except tomllib.TOMLDecodeError as e:
        line = re.search(r"line (\d+)", str(e))
        raise AvatarError(f"malformed TOML ({str(e).split(' (at')[0]})", path, int(line.group(1)) if line else None) from None


def resolve(path: Path | None = None, options: dict | None = None) -> CompressConfig:
    """The settings of a run: the defaults, then a preset, then a TOML file, then ``options`` (shaped as the file:
    top-level names, and a dict per section), each over the one before. The preset is the one named, else the
    built-in sample's when no data folder is given. Relative paths in the file are the file's."""
    raw, text = ({}, "") if path is None else _read_toml(Path(path))
    options = options or {}
    if path is not None:
        for key in ("data", "teacher", "teacher_labels"):
            value = raw.get(key)
            if isinstance(value, str) and not Path(value).is_absolute() and (key != "teacher" or (Path(path).parent / value).exists()):
                raw[key] = str((Path(path).parent / value).resolve())
    preset = options.get("preset", raw.get("preset"))
    if preset is None and options.get("data", raw.get("data")) is None:
        preset = SAMPLE_PRESET
    if preset is not None and preset not in PRESETS:
        raise AvatarError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}", path, toml_line(text, "preset", None))
    config = _apply(CompressConfig(), PRESETS.get(preset, {}), "", None, None)
    config = _apply(config, raw, text, path, None)
    config = _apply(config, options, "", None, None)
    config = replace(config, preset=preset)
    try:
        config.validate()
    except AvatarError as e:
        section, name = getattr(e, "setting", (None, None))
        raise AvatarError(e.message, path, toml_line(text, name, section) if name else None) from None
    return config


def load_config(path: Path) -> CompressConfig:
    """The settings a TOML file gives (over its preset and the defaults)."""
    return resolve(path)


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
            if is_dataclass(value) or f.name == "space" or (obj is not config and f.name in OWNED):
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
    """The one-line comment on each field of a settings dataclass (and the classes it extends), read from the source."""
    import inspect

    comments = {}
    for klass in reversed([k for k in cls.__mro__ if is_dataclass(k)]):
        source = inspect.getsource(klass)
        comments |= {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s+(\w+): [^=]+=.*?  # (.*)$", source, re.M)}
    return comments

