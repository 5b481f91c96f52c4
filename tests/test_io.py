import json
from pathlib import Path

import pytest

from avatar._io import atomic_dir, sha256_json, write_json_atomic
from avatar.errors import AvatarError


def test_write_json_atomic_leaves_no_temp_files(tmp_path):
    write_json_atomic(tmp_path / "a" / "x.json", {"k": 1})
    assert json.loads((tmp_path / "a" / "x.json").read_text()) == {"k": 1}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.json"]


def test_atomic_dir_replaces_on_success_and_keeps_old_on_failure(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "w").write_text("one")
        (tmp / "metrics.json").write_text("{}")
    assert (target / "w").read_text() == "one"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "w").write_text("half")
        raise RuntimeError("killed")
    assert (target / "w").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_never_replaces_a_folder_avatar_did_not_write(tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("mine")
    with pytest.raises(AvatarError, match="not empty and was not written by Avatar"), atomic_dir(tmp_path / "docs"):
        pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(AvatarError, match="not a folder"), atomic_dir(tmp_path / "file"):
        pass
    monkeypatch.chdir(tmp_path / "docs")
    (tmp_path / "docs" / "metrics.json").write_text("{}")
    with pytest.raises(AvatarError, match="current folder"), atomic_dir(Path(".")):
        pass
    assert (tmp_path / "docs" / "a.txt").read_text() == "mine"


def test_sha256_json_ignores_key_order():
    assert sha256_json({"a": 1, "b": 2}) == sha256_json({"b": 2, "a": 1})
    assert sha256_json({"a": 1}) != sha256_json({"a": 2})


def test_a_command_replaces_only_a_folder_of_its_own_kind(tmp_path):
    from avatar._io import folder_kind

    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "metrics.json").write_text("{}")
    assert folder_kind(tmp_path / "model") == "model"
    run = tmp_path / "run"  # a compress run folder also has metrics.json at its top: it is a run all the same
    (run / "stages").mkdir(parents=True)
    (run / "metrics.json").write_text("{}")
    (run / "config.toml").write_text("")
    for kind, folder in (("model", run), ("export", run), ("run", tmp_path / "model")):
        with pytest.raises(AvatarError, match="holds an Avatar .* folder, not a .* folder: it is kept"), atomic_dir(folder, kind):
            pass
    assert (run / "config.toml").exists() and (tmp_path / "model" / "metrics.json").exists()


def test_atomic_writes_never_rename_over_a_device_or_fifo(tmp_path):
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(AvatarError, match="not a regular file"):
        write_json_atomic(fifo, {"k": 1})
    assert fifo.is_fifo() and [p.name for p in tmp_path.iterdir()] == ["pipe"]


def test_an_error_inside_an_atomic_write_names_the_users_path(tmp_path):
    from avatar._io import user_path

    target = tmp_path / "student"
    with pytest.raises(OSError) as e, atomic_dir(target) as tmp:
        (tmp / "missing-folder" / "model.safetensors").write_text("x")  # what a failed save raises
    assert ".tmp" in e.value.filename
    assert user_path(e.value.filename) == str(target / "missing-folder" / "model.safetensors")
    assert user_path("/data/run/.config.toml.k3j_9x2a.tmp") == "/data/run/config.toml"
    assert user_path("/data/.hidden/notes.txt") == "/data/.hidden/notes.txt"  # a real dot-name is left alone
