"""The run/stage engine: a run directory, its stage records, and resume.

A stage is identified by a key: a hash of its own settings and the keys of the stages it reads. When it has
finished, a record ``RUN/stages/<name>.json`` (key, inputs, a small result) is written after its artefacts.
A stage whose record carries the same key, and whose artefacts are all present, is skipped; otherwise it runs
again. So a killed run resumes where it stopped, and a changed option reruns exactly the stages downstream of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from avatar._io import check_replaceable, folder_kind, mark_folder, sha256_json, write_json_atomic
from avatar.errors import AvatarError

log = logging.getLogger(__name__)

STAGES = "stages"
LOCK = ".lock"  # held (flock) by the one command writing the run folder


@dataclass
class Stage:
    name: str
    key: str  # hash of the stage's settings and its inputs' keys
    result: dict  # small JSON summary; the artefacts hold the rest
    reused: bool  # skipped: an earlier run had finished it with the same key
    seconds: float  # how long it took when it ran


class Run:
    """A run directory and its stage records."""

    def __init__(self, root: Path, on_start: Callable[[str], None] | None = None, on_end: Callable[[Stage], None] | None = None):
        self.root = Path(root)
        self.on_start, self.on_end = on_start, on_end
        self.held = False  # this process holds the folder's lock (see ``writing``)

    @contextlib.contextmanager
    def writing(self) -> Iterator[Run]:
        """Hold the run folder for one writer for as long as the block runs.

        The folder must be empty or an Avatar run folder (never a model, an export or anything else). An exclusive
        ``flock`` on ``RUN/.lock`` refuses a second writer at once, naming the first one's PID; the OS releases it
        when the holder dies, however it dies. Holding it, the leftovers of a killed run (temporary files of
        atomic writes) are removed: no live writer can own them.
        """
        check_replaceable(self.root, "run")
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise AvatarError(f"another avatar command (PID {holder}) is writing this run folder; wait for it to "
                                  "finish or choose another --out", self.root) from None
            self.held = True
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            if folder_kind(self.root) is None:
                mark_folder(self.root, "run")
            self.clear_leftovers()
            yield self
        finally:
            self.held = False
            os.close(fd)  # releases the lock

    def clear_leftovers(self) -> None:
        """Remove the temporary files and folders of atomic writes that a killed run left behind."""
        if self.root.is_dir():
            for stale in sorted(self.root.rglob(".*.tmp"), key=lambda p: len(p.parts), reverse=True):
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)

    def record(self, name: str) -> dict | None:
        try:
            return json.loads((self.root / STAGES / f"{name}.json").read_text())
        except (OSError, ValueError):
            return None

    def stage(self, name: str, inputs: dict, artefacts: list[str], fn: Callable[[], dict]) -> Stage:
        key = sha256_json({"stage": name, "inputs": inputs})[:24]
        record = self.record(name)
        if record and record.get("key") == key and all((self.root / a).exists() for a in artefacts):
            log.info("%s: up to date", name)
            stage = Stage(name, key, record["result"], True, record["seconds"])
        else:
            if self.on_start:
                self.on_start(name)
            (self.root / STAGES / f"{name}.json").unlink(missing_ok=True)  # its artefacts are about to change
            start = time.perf_counter()
            result = fn()
            seconds = round(time.perf_counter() - start, 1)
            write_json_atomic(self.root / STAGES / f"{name}.json",
                              {"stage": name, "key": key, "inputs": inputs, "artefacts": artefacts, "seconds": seconds, "result": result})
            stage = Stage(name, key, result, False, seconds)
        if self.on_end:
            self.on_end(stage)
        return stage
