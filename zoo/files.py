"""Files: every file a run or a search writes goes through here, written so a kill cannot tear it.

A file is written to a temporary name beside its target, flushed and fsync'ed, renamed onto the
target, and the folder is fsync'ed: a reader (or a resumed run) sees the old file or the new
one, never half of one, even after a SIGKILL or a power cut. Files are created with the process'
umask, like any other file the user makes (a colleague or a web server can read the results of
a shared folder). State files that a resume reads can keep their previous version beside them
(`keep_previous`), a last good copy for `read_json_recovering`.

JSON is strict: a value that is not a finite number is written as `null`. Also here: the
per-user cache folder (parsed data sets, the C++ op's builds).

The bottom of the zoo's import layers: this module imports nothing from `zoo`, nor Keras.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import secrets
import shutil
from pathlib import Path

CACHE_ENV = "RNN_ZOO_CACHE"
PREVIOUS_SUFFIX = ".bak"  # the last good copy of a state file: NAME.bak beside NAME
TEMPORARY = re.compile(r"\.[^.]+-[0-9a-f]{8}(\..*)?")  # what `temporary_name` makes


class CorruptFile(ValueError):
    """A file that is there but cannot be read: empty, truncated or not what it should be."""


def temporary_name(path: str | os.PathLike) -> Path:
    """A new hidden name beside `path` that keeps all its suffixes (Keras checks `.keras` and
    `.weights.h5`): `model.keras` -> `.model-1a2b3c4d.keras`."""
    path = Path(path)
    stem, dot, suffixes = path.name.lstrip(".").partition(".")
    return path.with_name(f".{stem}-{secrets.token_hex(4)}{dot}{suffixes}")


def is_temporary(name: str) -> bool:
    """True for a name `temporary_name` makes: a file a killed writer left behind."""
    return TEMPORARY.fullmatch(name) is not None


def remove_temporaries(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """Remove the temporary files that writers killed mid-write left in `folder` (and below it
    with `recursive`); returns them. Only for a folder no other process is writing into."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob(".*") if recursive else folder.glob(".*")
    removed = [p for p in found if is_temporary(p.name) and p.is_file()]
    for path in removed:
        with contextlib.suppress(OSError):
            path.unlink()
    return removed


def previous_copy(path: str | os.PathLike) -> Path:
    """Where `keep_previous` keeps the version of `path` before the last write."""
    path = Path(path)
    return path.with_name(path.name + PREVIOUS_SUFFIX)


def fsync_folder(folder: str | os.PathLike) -> None:
    """fsync a folder, so a rename in it survives a power cut (a no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    """fsync a file another writer (Keras, h5py, a compiler) wrote and closed."""
    if path.is_dir():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _keep_previous(path: Path) -> None:
    """Make NAME.bak the current NAME (a hard link, no copy; a copy where links fail)."""
    if not path.is_file():
        return
    target = previous_copy(path)
    tmp = temporary_name(target)
    try:
        os.link(path, tmp)
    except OSError:
        shutil.copyfile(path, tmp)
    os.replace(tmp, target)


def _commit(tmp: Path, path: Path, keep_previous: bool) -> None:
    if keep_previous:
        _keep_previous(path)
    os.replace(tmp, path)
    fsync_folder(path.parent)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "w", *, keep_previous: bool = False, **open_args
):
    """Open a temporary file beside `path` for writing; when the block ends without an error it
    is flushed, fsync'ed and renamed onto `path` (with `keep_previous`, the old file becomes
    NAME.bak first), else removed. The file's mode follows the umask."""
    path = Path(path)
    tmp = temporary_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _commit(tmp, path, keep_previous)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, keep_previous: bool = False):
    """A temporary name beside `path` (same suffixes) for a writer that takes a path (Keras'
    `save`, `save_weights`, matplotlib, a compiler); when the block ends without an error the
    file is fsync'ed and renamed onto `path`, else removed."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        _fsync_file(tmp)
        _commit(tmp, path, keep_previous)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_bytes(path: str | os.PathLike, data: bytes, *, keep_previous: bool = False) -> None:
    """`data` into `path`, atomically."""
    with atomic_write(path, "wb", keep_previous=keep_previous) as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str, *, keep_previous: bool = False) -> None:
    """`text` into `path` (UTF-8), atomically."""
    with atomic_write(path, encoding="utf-8", keep_previous=keep_previous) as f:
        f.write(text)


def json_safe(data):
    """`data` with every float that is not finite (NaN, inf) replaced by None."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    return data


def non_finite_keys(data, prefix: str = "") -> list[str]:
    """The keys (dotted paths) of `data` whose values are floats that are not finite."""
    if isinstance(data, float):
        return [] if math.isfinite(data) else [prefix or "value"]
    if isinstance(data, dict):
        return [k for key, v in data.items() for k in non_finite_keys(v, f"{prefix}{key}.")]
    return []


def write_json(
    path: str | os.PathLike, data, *, indent: int | None = 2, keep_previous: bool = False
) -> None:
    """Strict JSON (NaN and inf as null), written atomically. `indent=None` writes one line, as
    keras-tuner does."""
    text = json.dumps(json_safe(data), indent=indent, default=str, allow_nan=False)
    write_text(path, text + ("\n" if indent is not None else ""), keep_previous=keep_previous)


def read_json(path: str | os.PathLike):
    """The JSON in `path`; `CorruptFile` (one line, naming the file) when it is empty or
    truncated; `FileNotFoundError` when it is missing."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise CorruptFile(f"{path} is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CorruptFile(f"{path} is truncated or not JSON ({err})") from None


def read_json_recovering(path: str | os.PathLike, *, repair: bool = False):
    """(data, note): the JSON in `path`, else in its last good copy (NAME.bak, see
    `keep_previous`) with a one-line note saying so; with `repair` (for the file's only writer)
    the copy is put back in its place. Raises `CorruptFile` (or `FileNotFoundError`) when
    neither reads."""
    path = Path(path)
    try:
        return read_json(path), None
    except (CorruptFile, FileNotFoundError) as err:
        first = err
    try:
        data = read_json(previous_copy(path))
    except (CorruptFile, OSError):
        raise first from None
    if repair:
        write_bytes(path, previous_copy(path).read_bytes())
    reason = "missing" if isinstance(first, FileNotFoundError) else "empty or truncated"
    return data, f"{path} was {reason}: using its last good copy {previous_copy(path).name}"


def csv_text(rows: list[dict], fieldnames: list[str]) -> str:
    """Rows as CSV text with a header row (missing values left empty)."""
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=fieldnames, restval="", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_csv(path: str | os.PathLike, rows: list[dict], fieldnames: list[str]) -> None:
    """A CSV with a header row, written atomically (missing values left empty)."""
    with atomic_write(path, newline="") as f:
        f.write(csv_text(rows, fieldnames))


def save_model(model, path: str | os.PathLike) -> None:
    """`model.save(path)` (a `.keras` file), atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def save_weights(model, path: str | os.PathLike, *, keep_previous: bool = False) -> None:
    """`model.save_weights(path)` (a `.weights.h5` file), atomically."""
    with atomic_path(path, keep_previous=keep_previous) as tmp:
        model.save_weights(tmp)


def save_figure(fig, path: str | os.PathLike, **savefig_args) -> None:
    """A matplotlib figure as an image file, atomically (the format from `path`'s suffix)."""
    path = Path(path)
    savefig_args.setdefault("format", path.suffix.lstrip(".") or "png")
    with atomic_write(path, "wb") as f:
        fig.savefig(f, **savefig_args)


def cache_dir(folder: str | os.PathLike | None = None) -> Path:
    """The zoo's per-user cache folder: `folder`, else $RNN_ZOO_CACHE, else
    $XDG_CACHE_HOME/rnn-zoo, else ~/.keras/datasets/rnn_zoo."""
    if folder:
        return Path(folder).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "rnn-zoo"
    return Path.home() / ".keras" / "datasets" / "rnn_zoo"
