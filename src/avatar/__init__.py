"""Avatar: compress large language models of code into tiny students that run on a developer's CPU.

The public API, for notebooks and scripts (the CLI is a thin layer over it)::

    import avatar

    settings = avatar.resolve_settings(options={"data": "devign/", "search": {"samples": 20}})
    run = avatar.compress(settings, "runs/devign")        # resumable: the same call again skips finished stages
    run.metrics["student_vs_teacher"]                     # measured side by side
    model = avatar.ExportedModel(run.root)                 # the exported student, torch-free
    model.probabilities([("int f(char *s) { return strlen(s); }",)])

Names are imported on first use, so that ``import avatar`` stays light and the runtime-only install (no torch)
can use the runtime names.
"""

from avatar.errors import AvatarError

__version__ = "0.1.0"

_PUBLIC = {
    # settings of a run, and the verb that runs it
    "CompressConfig": "avatar.config",
    "resolve_settings": ("avatar.config", "resolve"),
    "to_toml": "avatar.config",
    "compress": "avatar.pipeline",
    "CompressRun": "avatar.pipeline",
    "Stage": "avatar.engine",
    # the settings of each stage, and a student configuration
    "FinetuneConfig": "avatar.settings",
    "SearchSettings": "avatar.settings",
    "DistillConfig": "avatar.settings",
    "MeasureConfig": "avatar.settings",
    "ExportConfig": "avatar.settings",
    "StudentConfig": "avatar.student",
    # data
    "Example": "avatar.tasks",
    "Task": "avatar.tasks",
    "TaskData": "avatar.tasks",
    "get_task": "avatar.tasks",
    # the torch-free runtime
    "ExportedModel": "avatar.runtime.model",
}
__all__ = ["AvatarError", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'avatar' has no attribute {name!r}")
    import importlib

    module, attr = _PUBLIC[name] if isinstance(_PUBLIC[name], tuple) else (_PUBLIC[name], name)
    return getattr(importlib.import_module(module), attr)
