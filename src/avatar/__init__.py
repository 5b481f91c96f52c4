"""Avatar: compress large language models of code into tiny students that run on a developer's CPU."""

from avatar.errors import AvatarError

__all__ = ["AvatarError", "Example", "Task", "TaskData", "get_task"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # the task API needs the training install (scikit-learn); importing avatar must not, for the runtime-only one
    if name in ("Example", "Task", "TaskData", "get_task"):
        from avatar import tasks

        return getattr(tasks, name)
    raise AttributeError(f"module 'avatar' has no attribute {name!r}")
