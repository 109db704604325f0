"""UCI HAR: six activities from smartphone inertial signals, split by subject.

Reads the raw `Inertial Signals` of the UCI "Human Activity Recognition Using Smartphones" data
set (data set 240): 128-step windows (2.56 s at 50 Hz) of 9 channels. Sources, in this order:

1. an explicit path (`data=`, else the environment variable `RNN_ZOO_HAR_DATA`): the official
   `UCI HAR Dataset.zip`, the outer zip UCI serves today (which wraps that zip), an extracted
   `UCI HAR Dataset/` folder, or a folder holding either;
2. the parsed cache, an `.npz` of the un-standardized arrays in the cache folder;
3. a download from UCI with `keras.utils.get_file`, checked against a pinned SHA-256.

Only `Inertial Signals/*`, `y_*.txt` and `subject_*.txt` are read; the 561 engineered features
(`X_train.txt`, ...) are not needed. Parsing the text takes seconds, so the arrays are cached:
the cache folder is `cache_dir=`, else `$RNN_ZOO_CACHE`, else `$XDG_CACHE_HOME/rnn-zoo`, else
`~/.keras/datasets/rnn_zoo` (`zoo.files.cache_dir`). A cache is written atomically and
only after the whole source parsed, so bad input never leaves a cache behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from zoo import files
from zoo.features import channel_statistics, feature_spec
from zoo.tasks.base import DataError, Task, check_flag, register_task
from zoo.tasks.base import standardize as standardize_channels

URL = (
    "https://archive.ics.uci.edu/static/public/240/human+activity+recognition+using+smartphones.zip"
)
OUTER_SHA256 = "c00b803081a5c797cd5e4b83700a9810b38d53d9d84e01917e090e1fdbc81031"
INNER_SHA256 = "2045e435c955214b38145fb5fa00776c72814f01b203fec405152dac7d5bfeb0"
DOWNLOAD_NAME = "human+activity+recognition+using+smartphones.zip"
INNER_ZIP = "UCI HAR Dataset.zip"
FOLDER = "UCI HAR Dataset"
DATA_ENV = "RNN_ZOO_HAR_DATA"

CHANNELS = tuple(
    f"{sensor}_{axis}" for sensor in ("body_acc", "body_gyro", "total_acc") for axis in "xyz"
)
CLASS_NAMES = (
    "WALKING",
    "WALKING_UPSTAIRS",
    "WALKING_DOWNSTAIRS",
    "SITTING",
    "STANDING",
    "LAYING",
)
STEPS = 128
SAMPLING_HZ = 50
DEFAULT_VAL_SUBJECTS = 5
CACHE_VERSION = 1
ARRAYS = ("x_train", "y_train", "s_train", "x_test", "y_test", "s_test")


def _required(split: str) -> list[str]:
    """The files of one split the loader reads, relative to `UCI HAR Dataset/`."""
    signals = [f"{split}/Inertial Signals/{ch}_{split}.txt" for ch in CHANNELS]
    return [f"{split}/y_{split}.txt", f"{split}/subject_{split}.txt", *signals]


REQUIRED = (*_required("train"), *_required("test"))


# ---------------------------------------------------------------- parsing text


def _parse_table(raw: bytes, ncols: int, name: str, where: str) -> np.ndarray:
    """Whitespace-separated numbers, `ncols` a line, as a (rows, ncols) float64 array.

    Fast path: numpy's C text parser (`np.fromstring(..., sep=" ")`, 1.2x `bytes.split` with
    `np.array`) when the text holds rows * ncols numbers in lines of equal length, as the
    official files do (fixed-width values). Anything else goes through the careful path, which
    reports a short or long row or a bad token with its line number.
    """
    text = raw.rstrip()
    rows = text.count(b"\n") + 1 if text else 0
    try:
        values = np.fromstring(text, dtype=np.float64, sep=" ")
    except ValueError:  # something that is not a number: the careful path says where
        values = np.empty(0)
    widths = np.diff(np.flatnonzero(np.frombuffer(text, np.uint8) == 10))
    if not (rows and values.size == rows * ncols and (widths == widths[:1]).all()):
        values = _parse_table_carefully(text, ncols, name, where)
    values = values.reshape(rows, ncols)
    if not np.isfinite(values).all():
        number = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0]) + 1
        raise DataError(
            f"UCI HAR: {name!r} in {where}: expected finite numbers, line {number} has nan or inf"
        )
    return values


def _parse_table_carefully(text: bytes, ncols: int, name: str, where: str) -> np.ndarray:
    """The values of `text`, with every line's count checked: a one-line `DataError` names the
    first line that is short, long or holds something that is not a number."""
    lines = text.splitlines()
    if not lines:
        raise DataError(f"UCI HAR: {name!r} in {where} is empty; expected one row per window")
    for number, line in enumerate(lines, start=1):
        count = len(line.split())
        if count != ncols:
            raise DataError(
                f"UCI HAR: {name!r} in {where}: expected {ncols} values a row, "
                f"line {number} has {count}"
            )
    try:
        return np.array(text.split(), dtype=np.float64)
    except ValueError:
        number, token = _first_bad_token(lines)
        raise DataError(
            f"UCI HAR: {name!r} in {where}: expected numbers, line {number} has {token!r}"
        ) from None


def _first_bad_token(lines: list[bytes]) -> tuple[int, str]:
    """(line number, text) of the first token that is not a number; only run on errors."""
    for number, line in enumerate(lines, start=1):
        for token in line.split():
            try:
                float(token)
            except ValueError:
                return number, token.decode("utf-8", "replace")[:20]
    return 0, ""


def _parse_ids(raw: bytes, name: str, where: str, low: int, high: int | None) -> np.ndarray:
    """One integer a line in low..high (labels, subject ids) as an int32 vector."""
    values = _parse_table(raw, 1, name, where)[:, 0]
    bad = (values != np.round(values)) | (values < low)
    if high is not None:
        bad |= values > high
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        expected = f"integers {low}..{high}" if high is not None else f"integers >= {low}"
        raise DataError(
            f"UCI HAR: {name!r} in {where}: expected {expected}, "
            f"line {index + 1} has {values[index]:g}"
        )
    return values.astype(np.int32)


def _parse_split(read: Callable[[str], bytes], split: str, where: str) -> dict[str, np.ndarray]:
    """x (windows, 128, 9) float32, labels 0..5 and subject ids of one split."""
    y_name, s_name, *signal_names = _required(split)
    y = _parse_ids(read(y_name), y_name, where, 1, len(CLASS_NAMES)) - 1
    subjects = _parse_ids(read(s_name), s_name, where, 1, None)
    _check_rows(s_name, len(subjects), y_name, len(y), where)
    x = np.empty((len(y), STEPS, len(CHANNELS)), dtype=np.float32)
    for channel, name in enumerate(signal_names):
        values = _parse_table(read(name), STEPS, name, where)
        _check_rows(name, len(values), y_name, len(y), where)
        x[:, :, channel] = values
    return {f"x_{split}": x, f"y_{split}": y, f"s_{split}": subjects}


def _check_rows(name: str, rows: int, ref_name: str, ref_rows: int, where: str) -> None:
    """Every file of a split must hold one row per window."""
    if rows != ref_rows:
        raise DataError(
            f"UCI HAR: {name!r} in {where}: expected {ref_rows} rows (one per window, as in "
            f"{ref_name!r}), found {rows}"
        )


# ---------------------------------------------------------------- reading sources


def _is_junk(name: str) -> bool:
    """macOS resource forks and folder entries that official zips carry along."""
    return name.startswith("__MACOSX/") or name.endswith("/") or "/._" in f"/{name}"


def _zip_prefix(names: list[str]) -> str | None:
    """The folder prefix ("UCI HAR Dataset/" or "") under which the zip holds the data set."""
    prefixes = set()
    for name in names:
        if _is_junk(name):
            continue
        for rel in REQUIRED:
            if name == rel or name.endswith("/" + rel):
                prefixes.add(name[: len(name) - len(rel)])
    return min(prefixes, key=len) if prefixes else None


def _inner_zip(names: list[str]) -> str | None:
    """The `UCI HAR Dataset.zip` member of the outer zip UCI serves (else any zip member)."""
    zips = [n for n in names if not _is_junk(n) and n.lower().endswith(".zip")]
    exact = [n for n in zips if n.rsplit("/", 1)[-1] == INNER_ZIP]
    return (exact or zips or [None])[0]


_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError)


def _open_zip(file, where: str, stack: contextlib.ExitStack) -> zipfile.ZipFile:
    """Open a zip (path or file object) with a one-line error for a truncated or corrupt one."""
    try:
        return stack.enter_context(zipfile.ZipFile(file))
    except _ZIP_ERRORS as err:
        raise DataError(
            f"UCI HAR: {where} is not a readable zip file; truncated or corrupt? ({err})"
        ) from None


def _zip_member(zf: zipfile.ZipFile, name: str, where: str) -> bytes:
    """The bytes of one member; a bad CRC or broken deflate stream is a one-line error."""
    try:
        return zf.read(name)
    except _ZIP_ERRORS as err:
        raise DataError(f"UCI HAR: corrupt zip {where}: cannot read {name!r} ({err})") from None


def _zip_reader(path: Path, stack: contextlib.ExitStack) -> tuple[Callable[[str], bytes], str]:
    """A reader of the data set's files inside a zip, or inside the zip nested in UCI's zip.

    The nested zip is read into memory (about 60 MB) and opened from there, so nothing is
    extracted to disk.
    """
    where = str(path)
    zf = _open_zip(path, where, stack)
    prefix = _zip_prefix(zf.namelist())
    if prefix is None:
        inner = _inner_zip(zf.namelist())
        if inner is not None:
            data = _zip_member(zf, inner, where)
            where = f"{inner!r} inside {path}"
            zf = _open_zip(io.BytesIO(data), where, stack)
            prefix = _zip_prefix(zf.namelist())
    if prefix is None:
        raise DataError(
            f"UCI HAR: no '{FOLDER}/train/...' files in {where}; expected the official "
            f"'{INNER_ZIP}' or the UCI download that wraps it"
        )
    names = set(zf.namelist())

    def read(rel: str) -> bytes:
        if prefix + rel not in names:
            raise DataError(f"UCI HAR: missing {rel!r} in {where}")
        return _zip_member(zf, prefix + rel, where)

    return read, where


def _folder_reader(root: Path) -> tuple[Callable[[str], bytes], str]:
    """A reader of the data set's files in an extracted folder."""

    def read(rel: str) -> bytes:
        try:
            return (root / rel).read_bytes()
        except FileNotFoundError:
            raise DataError(f"UCI HAR: missing {rel!r} in {root}") from None
        except OSError as err:
            raise DataError(f"UCI HAR: cannot read {rel!r} in {root} ({err})") from None

    return read, str(root)


def _resolve(path: Path) -> Path:
    """The zip file or `UCI HAR Dataset/` folder that a user's path points at.

    A folder may be the data set folder itself (it holds `train/`), its parent, or the folder
    the outer UCI zip was extracted into (it holds `UCI HAR Dataset.zip`).
    """
    if not path.exists():
        raise DataError(f"UCI HAR: {path} does not exist; expected '{INNER_ZIP}' or '{FOLDER}/'")
    if not path.is_dir() or (path / "train").is_dir() or (path / "test").is_dir():
        return path
    if (path / FOLDER).is_dir():
        return path / FOLDER
    if (path / INNER_ZIP).is_file():
        return path / INNER_ZIP
    raise DataError(
        f"UCI HAR: {path} holds neither '{FOLDER}/' nor its 'train/' and 'test/' folders "
        f"nor '{INNER_ZIP}'"
    )


def parse_source(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Parse a zip or folder (see the module docstring) into un-standardized arrays.

    Returns x_train/x_test (windows, 128, 9) float32, y_* labels 0..5 and s_* subject ids.
    Does not touch the cache.
    """
    path = _resolve(Path(path).expanduser())
    with contextlib.ExitStack() as stack:
        if path.is_dir():
            read, where = _folder_reader(path)
        else:
            read, where = _zip_reader(path, stack)
        return {**_parse_split(read, "train", where), **_parse_split(read, "test", where)}


# ---------------------------------------------------------------- cache and download


def _cache_entry(source: Path | None, cache: Path) -> tuple[Path, str | None]:
    """(cache file, key) for a source; the key changes when the source's files change.

    One cache file per source path (named by a hash of the path), so an edited source replaces
    its cache instead of piling up new ones. The key holds the size and mtime of every file read,
    so it is cheap to check and needs no read of the source. A key of None means: do not cache.
    """
    if source is None:
        return cache / "uci_har.npz", f"v{CACHE_VERSION}|download|{OUTER_SHA256}"
    source = source.resolve()
    files = [source / rel for rel in REQUIRED] if source.is_dir() else [source]
    try:
        stats = [f"{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files]
    except OSError:  # a file is missing: parsing will say which
        stats = None
    digest = hashlib.sha1(str(source).encode()).hexdigest()[:12]
    key = f"v{CACHE_VERSION}|{source}|{','.join(stats)}" if stats else None
    return cache / f"uci_har-{digest}.npz", key


def _read_cache(path: Path, key: str | None) -> dict[str, np.ndarray] | None:
    """The cached arrays if `path` holds a sound cache made under `key`, else None."""
    if key is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            arrays = {name: npz[name] for name in ARRAYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # unreadable cache: parse again and replace it
    for split in ("train", "test"):
        x, y, s = arrays[f"x_{split}"], arrays[f"y_{split}"], arrays[f"s_{split}"]
        if x.shape[1:] != (STEPS, len(CHANNELS)) or not len(x) == len(y) == len(s):
            return None
    return arrays


def _write_cache(path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write the cache atomically (`zoo.files`), readable as the umask allows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_write(path, "wb") as f:
        np.savez(f, key=np.array(key), **arrays)


def download_zip(
    cache: Path, url: str = URL, sha256: str = OUTER_SHA256, fname: str = DOWNLOAD_NAME
) -> Path:
    """Download UCI's zip into `cache` with `keras.utils.get_file` and check its SHA-256."""
    bypass = f"download it yourself and pass data=PATH (--data) or set {DATA_ENV}=PATH"
    made = [p for p in (cache, *cache.parents) if not p.exists()]
    cache.mkdir(parents=True, exist_ok=True)  # else get_file falls back to /tmp/.keras
    try:
        return _get_file(cache, url, sha256, fname, bypass)
    except DataError:
        for folder in made:  # a failed first download leaves no empty cache folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _get_file(cache: Path, url: str, sha256: str, fname: str, bypass: str) -> Path:
    """`keras.utils.get_file` into `cache`, with its errors as one-line `DataError`s."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    try:
        path = keras.utils.get_file(
            fname,
            origin=url,
            file_hash=sha256,
            hash_algorithm="sha256",
            cache_dir=str(cache),
            cache_subdir="",
        )
    except ValueError:  # get_file's hash mismatch: drop the bad file so the next call retries
        with contextlib.suppress(OSError):
            (cache / fname).unlink()
        raise DataError(
            f"UCI HAR: the file downloaded from {url} does not match the pinned sha256 "
            f"{sha256}; {bypass}"
        ) from None
    except Exception as err:  # noqa: BLE001 - get_file raises bare Exception on network errors
        raise DataError(f"UCI HAR: cannot download {url} ({err}); {bypass}") from None
    return Path(path)


def load_arrays(
    data: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    download_ok: bool = True,
) -> tuple[dict[str, np.ndarray], dict]:
    """The un-standardized arrays (see `parse_source`) and where they came from.

    Source order: `data`, else $RNN_ZOO_HAR_DATA; the cache; a download (if `download_ok`).
    Returns (arrays, facts) with facts "source", "cache" (the .npz path) and "from_cache".
    """
    cache = files.cache_dir(cache_dir)
    data = data or os.environ.get(DATA_ENV) or None
    source = _resolve(Path(data).expanduser()) if data is not None else None
    cache_file, key = _cache_entry(source, cache)
    arrays = _read_cache(cache_file, key)
    facts = {"source": str(source) if source else URL, "cache": str(cache_file)}
    if arrays is not None:
        return arrays, {**facts, "from_cache": True}
    if source is None:
        if not download_ok:
            raise DataError(
                f"UCI HAR: no data: no cache {cache_file} and download=False; pass data=PATH "
                f"(--data) or set {DATA_ENV} to '{INNER_ZIP}' or the '{FOLDER}/' folder"
            )
        arrays = parse_source(download_zip(cache))
    else:
        arrays = parse_source(source)
    if key is not None:
        try:
            _write_cache(cache_file, key, arrays)
        except OSError as err:
            warnings.warn(f"UCI HAR: cannot write the cache {cache_file} ({err})", stacklevel=2)
    return arrays, {**facts, "from_cache": False}


# ---------------------------------------------------------------- the task


def pick_val_subjects(train_subjects: np.ndarray, val_subjects: int | str | Sequence[int]):
    """Sorted subject ids held out for validation, chosen among the train subjects.

    An int n picks n subjects spread evenly over the sorted ids: the one in the middle of each
    of n equal runs (for the official 21 train subjects and n=5: 5, 11, 17, 23, 28). A sequence
    (or a comma-separated string) names them.
    """
    ids = np.unique(train_subjects)
    if isinstance(val_subjects, str):
        parts = [int(p) for p in val_subjects.replace(",", " ").split()]
        val_subjects = parts[0] if len(parts) == 1 and "," not in val_subjects else parts
    if isinstance(val_subjects, int | np.integer):
        n = int(val_subjects)
        if not 1 <= n < len(ids):
            raise ValueError(
                f"val_subjects must hold out 1..{len(ids) - 1} of the {len(ids)} train "
                f"subjects. Received: val_subjects={n}"
            )
        return ids[((np.arange(n) + 0.5) * len(ids) / n).astype(int)]
    chosen = np.unique(np.asarray(list(val_subjects), dtype=np.int64))
    if len(chosen) == 0 or not np.isin(chosen, ids).all() or len(chosen) == len(ids):
        raise ValueError(
            f"val_subjects must be some, not all, of the train subjects "
            f"{' '.join(map(str, ids))}. Received: val_subjects={list(val_subjects)}"
        )
    return chosen


def standardize_by_subject(x: np.ndarray, subjects: np.ndarray) -> np.ndarray:
    """Each subject's windows standardised per channel by that subject's own mean and std."""
    out = np.empty(x.shape, dtype=np.float32)
    for subject in np.unique(subjects):
        rows = subjects == subject
        out[rows] = standardize_channels(x[rows])[0][0]
    return out


@register_task(epochs=60, batch_size=64)
def har(
    data: str | os.PathLike | None = None,
    *,
    val_subjects: int | str | Sequence[int] = DEFAULT_VAL_SUBJECTS,
    standardize: bool = True,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    frame_steps: int = 1,
    per_subject: bool = False,
    window_features: bool = False,
) -> Task:
    """UCI HAR: 6 activities from 128-step windows of 9 smartphone inertial channels, by subject.

    The official split by subject: 7352 train windows of 21 subjects, 2947 test windows of 9.
    Validation holds out whole train subjects (default 5, spread evenly: 5 11 17 23 28; see
    `pick_val_subjects`); the test set is never touched. The splits hold the raw windows; the
    model does the rest (`Task.preprocessing`, as Keras layers): with `standardize`, every
    channel is scaled by the mean and std of the remaining train windows. Channels: body_acc
    x y z, body_gyro x y z, total_acc x y z. Sources and cache: see the module docstring.

    `frame_steps` makes the model join that many consecutive steps into one input step (a
    frame): 128 steps of 9 values become 128/frame_steps steps of 9*frame_steps values, the same
    numbers in the same order. A recurrent model then runs frame_steps times fewer sequential
    steps, which trains several times faster on a CPU (see the README's results table).

    `per_subject` first standardises each subject's windows by that subject's own channel mean
    and std, test subjects included. That removes much of what differs between people (how the
    phone sits on the waist), but a model trained so needs a batch of a new user's unlabeled
    windows before it can predict, and its test figure uses the test subjects' unlabeled inputs:
    it is not comparable with figures that never look at the test split.

    `window_features` makes the model also compute each window's 497 features
    (`zoo.features`: from that window alone) and join them to its recurrent summary before
    the head, standardised with the train windows' statistics; the model still takes raw windows.
    """
    check_flag(window_features=window_features)
    divisors = [n for n in range(1, STEPS + 1) if STEPS % n == 0]
    if frame_steps not in divisors:
        raise ValueError(
            f"frame_steps must divide {STEPS} ({', '.join(map(str, divisors))}). "
            f"Received: frame_steps={frame_steps!r}"
        )
    arrays, facts = load_arrays(data, cache_dir=cache_dir, download_ok=download)
    x, y, s = arrays["x_train"], arrays["y_train"], arrays["s_train"]
    x_test = arrays["x_test"]
    if per_subject:
        x, x_test = standardize_by_subject(x, s), standardize_by_subject(x_test, arrays["s_test"])
    val_ids = pick_val_subjects(s, val_subjects)
    held = np.isin(s, val_ids)
    x_train, x_val = x[~held], x[held]
    statistics = channel_statistics(x_train)
    preprocessing = {**(statistics if standardize else {}), "frame_steps": frame_steps}
    if window_features:
        preprocessing["window_features"] = feature_spec(x_train, CHANNELS, SAMPLING_HZ)
    y_train, y_test = y[~held], arrays["y_test"]
    majority = np.bincount(y_train, minlength=len(CLASS_NAMES)).argmax()
    info = {
        **facts,
        "channels": list(CHANNELS),
        "steps": STEPS,
        "frame_steps": frame_steps,
        "per_subject": per_subject,
        "window_features": window_features,
        "sampling_hz": SAMPLING_HZ,
        "standardized": standardize,
        **statistics,
        "preprocessing": "model",
        "train_subjects": np.unique(s[~held]).tolist(),
        "val_subjects": val_ids.tolist(),
        "test_subjects": np.unique(arrays["s_test"]).tolist(),
        "baseline_accuracy": float(np.mean(y_test == majority)),
    }
    return Task(
        name="har",
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y[held],
        x_test=x_test,
        y_test=y_test,
        output_kind="classification",
        num_outputs=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
        info=info,
        preprocessing=preprocessing,
    )
