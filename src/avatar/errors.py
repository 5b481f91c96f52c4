"""The one error type for mistakes a user can make (bad data, bad paths, bad options)."""

from __future__ import annotations

from pathlib import Path


class AvatarError(Exception):
    """A user-caused problem, shown by the CLI as one line (``file:line: message``) with exit code 2."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"
