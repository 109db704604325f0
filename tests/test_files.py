"""zoo.files: atomic writes, strict JSON, last good copies, the temporaries a kill leaves."""

from __future__ import annotations

import json
import os

import pytest

from zoo import files


def test_atomic_write_replaces_whole_follows_the_umask_and_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "state.json"
    old = os.umask(0o027)
    try:
        files.write_json(path, {"a": 1})
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == {"a": 1}
    assert path.stat().st_mode & 0o777 == 0o640
    with pytest.raises(RuntimeError), files.atomic_write(path) as f:
        f.write("half")
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"a": 1}  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_temporary_names_keep_every_suffix_and_are_recognised(tmp_path):
    for name in ("model.keras", "checkpoint.weights.h5", "trial.json", "epoch-3.npz"):
        tmp = files.temporary_name(tmp_path / name)
        assert tmp.name.startswith(".") and tmp.name.endswith(name.partition(".")[2])
        assert files.is_temporary(tmp.name) and not files.is_temporary(name)
    (tmp_path / "sub").mkdir()
    left = files.temporary_name(tmp_path / "sub" / "model.keras")
    left.write_bytes(b"half")
    (tmp_path / "sub" / ".keep").write_text("a user's hidden file")
    assert files.remove_temporaries(tmp_path, recursive=True) == [left]
    assert (tmp_path / "sub" / ".keep").exists()


def test_strict_json_and_the_last_good_copy(tmp_path):
    path = tmp_path / "oracle.json"
    files.write_json(path, {"v": 1, "loss": float("nan")}, keep_previous=True)
    files.write_json(path, {"v": 2}, keep_previous=True)
    assert "NaN" not in files.previous_copy(path).read_text()
    assert files.read_json_recovering(path) == ({"v": 2}, None)
    path.write_text('{"v": 3, "tri')  # torn by something that does not write atomically
    with pytest.raises(files.CorruptFile, match="truncated"):
        files.read_json(path)
    data, note = files.read_json_recovering(path)
    assert data == {"v": 1, "loss": None} and "last good copy oracle.json.bak" in note
    path.write_text("")
    files.previous_copy(path).unlink()
    with pytest.raises(files.CorruptFile, match="is empty"):
        files.read_json_recovering(path)


def test_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path / "env"))
    assert files.cache_dir() == tmp_path / "env"
    assert files.cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(files.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert files.cache_dir() == tmp_path / "xdg" / "rnn-zoo"
