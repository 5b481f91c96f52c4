"""Avatar: compress large language models of code into tiny students that run on a developer's CPU."""

from avatar.errors import AvatarError
from avatar.tasks import Example, Task, TaskData, get_task

__all__ = ["AvatarError", "Example", "Task", "TaskData", "get_task"]
__version__ = "0.1.0"
