"""Atomic writes and content hashes: a stage's artefact is either complete or absent."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from avatar.errors import AvatarError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def cache_dir() -> Path:
    """Where results that can be recomputed are kept (``AVATAR_CACHE_DIR``, else ~/.cache/avatar)."""
    return Path(os.environ.get("AVATAR_CACHE_DIR", Path.home() / ".cache" / "avatar"))


def _check_file_target(path: Path) -> None:
    """A rename over a device, FIFO or socket would replace it: only a regular file (or nothing) may be there."""
    if path.exists() and not path.is_file():
        raise AvatarError("output exists and is not a regular file; give a file name", path)


def read_text(path: Path) -> str:
    """A UTF-8 text file's contents; bytes that are not UTF-8 are reported with their line and column."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise AvatarError(f"not UTF-8 text at column {column} ({e.reason})", path, line) from None


_TEMP = re.compile(r"^\.(.+)\.[A-Za-z0-9_]{8}\.tmp$")  # an atomic write's temporary name: tempfile's random part is 8 characters


def user_path(path: str | os.PathLike) -> str:
    """The path the user named for a path inside an atomic write's temporary file or folder (``.NAME.xxxx.tmp``
    beside NAME), so that an error says where the user's output was going, not where it was being made."""
    return str(Path(*(_TEMP.sub(r"\1", part) for part in Path(path).parts)))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename."""
    path = Path(path)
    _check_file_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def copy_atomic(src: Path, dst: Path) -> None:
    _check_file_target(Path(dst))
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, obj: Any, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent) + "\n")


METRICS = "metrics.json"  # written last into every model folder Avatar makes: its mark of a finished folder
KIND = ".avatar-kind"  # in every folder Avatar makes: what it is ("model", "export" or "run"), so that a command
# replaces only a folder of its own kind


def folder_kind(path: Path) -> str | None:
    """What Avatar made in ``path``: its marker, or for folders made before markers, the files they hold."""
    path = Path(path)
    if (path / KIND).is_file():
        return (path / KIND).read_text().strip()
    from avatar.engine import STAGES  # imported here: both import this module
    from avatar.runtime.model import MANIFEST

    if (path / "config.toml").is_file() or (path / STAGES).is_dir():
        return "run"
    if (path / MANIFEST).is_file():
        return "export"
    return "model" if (path / METRICS).is_file() else None


def mark_folder(path: Path, kind: str) -> None:
    write_text_atomic(Path(path) / KIND, kind + "\n")


def check_replaceable(path: Path, kind: str = "model") -> None:
    """Refuse an output folder that holds anything but a folder Avatar made of this ``kind`` (or nothing)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise AvatarError("output exists and is not a folder", path)
    if path.is_dir() and any(path.iterdir()):
        found = folder_kind(path)
        if found is None:
            raise AvatarError("output folder is not empty and was not written by Avatar; choose another --out", path)
        if found != kind:
            raise AvatarError(f"output folder holds an Avatar {found} folder, not a {kind} folder: it is kept; choose another --out", path)
    if path.resolve() == Path.cwd().resolve():
        raise AvatarError("output folder is the current folder; choose a new one", path)


@contextlib.contextmanager
def atomic_dir(path: Path, kind: str = "model") -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``, on failure it is removed."""
    check_replaceable(path, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        mark_folder(tmp, kind)
        mask = _umask()  # mkdtemp and some writers make owner-only entries; give the usual permissions
        os.chmod(tmp, 0o777 & ~mask)
        for p in tmp.rglob("*"):
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def checkpoint_path(out_dir: Path) -> Path:
    """Where the training that writes ``out_dir`` keeps its end-of-epoch state: a hidden folder beside it."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.checkpoint"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def toml_line(text: str, key: str, table: str | None) -> int | None:
    """Line of ``key = ...`` (inside ``[table]`` when given) in a TOML text, for error messages."""
    current = None
    for n, line in enumerate(text.splitlines(), 1):
        header = re.match(r"\s*\[([^\]]+)\]", line)
        if header:
            current = header.group(1).strip()
        elif current == table and re.match(rf"\s*\"?{re.escape(key)}\"?\s*=", line):
            return n
    return None
