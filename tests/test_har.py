"""The UCI HAR task: parsing the official layout, zips, the cache, errors, and the real data.

Small data sets in the official text format are written by the tests; the real zip
(../shared/data/uci_har_dataset.zip) is used where present (marker `har`). Nothing downloads:
every load passes an explicit path or download=False, and a cache folder under tmp_path.
"""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from zoo import files
from zoo.tasks import har as h
from zoo.tasks.base import DataError, get_task

REAL_ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "uci_har_dataset.zip"
FOLDER = "UCI HAR Dataset"
TRAIN_SUBJECTS, TEST_SUBJECTS, WINDOWS = (1, 3, 5, 6), (2, 4), 24


@pytest.fixture(autouse=True)
def _no_env_source(monkeypatch):
    """A user's RNN_ZOO_HAR_DATA / RNN_ZOO_CACHE must not leak into the tests."""
    monkeypatch.delenv(h.DATA_ENV, raising=False)
    monkeypatch.delenv(files.CACHE_ENV, raising=False)


# ---------------------------------------------------------------- a small data set on disk


def fmt(v: float) -> str:
    """A value as the official files write it: %.7e, three-digit exponent, sign column."""
    mantissa, exponent = f"{v:.7e}".split("e")
    return f"{'  ' if v >= 0 else ' '}{mantissa}e{int(exponent):+04d}"


def _small_dataset() -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    """File texts of a tiny `UCI HAR Dataset/` and the arrays they hold."""
    rng = np.random.default_rng(0)
    files, arrays = {}, {}
    for split, ids in (("train", TRAIN_SUBJECTS), ("test", TEST_SUBJECTS)):
        labels = np.arange(WINDOWS) % 6 + 1
        subjects = np.repeat(ids, WINDOWS // len(ids))
        files[f"{split}/y_{split}.txt"] = "".join(f"{v}\n" for v in labels).encode()
        files[f"{split}/subject_{split}.txt"] = "".join(f"{v}\n" for v in subjects).encode()
        x = np.empty((WINDOWS, 128, 9), np.float32)
        for c, channel in enumerate(h.CHANNELS):
            rows = [[fmt(v) for v in rng.normal(c, 0.5 + c, 128)] for _ in range(WINDOWS)]
            x[:, :, c] = [[float(v) for v in row] for row in rows]
            text = "".join("".join(row) + "\n" for row in rows)
            files[f"{split}/Inertial Signals/{channel}_{split}.txt"] = text.encode()
        arrays |= {f"x_{split}": x, f"y_{split}": labels - 1, f"s_{split}": subjects}
    files["activity_labels.txt"] = b"1 WALKING\n"
    return files, arrays


SMALL_FILES, SMALL_ARRAYS = _small_dataset()


@pytest.fixture
def src(tmp_path) -> Path:
    """A folder holding a freshly written small `UCI HAR Dataset/`."""
    root = tmp_path / "src"
    for rel, data in SMALL_FILES.items():
        (root / FOLDER / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / FOLDER / rel).write_bytes(data)
    return root


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def zip_folder(folder: Path, dest: Path) -> Path:
    """Zip `folder` with its name as the top entry, as the official zip does."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            zf.write(f, f.relative_to(folder.parent).as_posix())
    return dest


def outer_zip(inner: Path, dest: Path) -> Path:
    """The zip UCI serves today: `UCI HAR Dataset.zip` wrapped in another zip."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(inner, h.INNER_ZIP)
        zf.writestr("UCI HAR Dataset.names", "names\n")
    return dest


def cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def rewrite(path: Path, edit) -> None:
    """Replace the lines of a text file with edit(lines)."""
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(edit(lines)))


def assert_equal_arrays(got: dict, want: dict) -> None:
    for name in h.ARRAYS:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert got["x_train"].dtype == np.float32


# ---------------------------------------------------------------- sources


def _dataset_folder(src, tmp_path):
    return src / FOLDER


def _parent_folder(src, tmp_path):
    return src


def _inner_zip(src, tmp_path):
    return zip_folder(src / FOLDER, tmp_path / h.INNER_ZIP)


def _outer_zip(src, tmp_path):
    inner = zip_folder(src / FOLDER, tmp_path / h.INNER_ZIP)
    return outer_zip(inner, tmp_path / "har.zip")


def _folder_with_inner_zip(src, tmp_path):
    (tmp_path / "unzipped").mkdir()
    zip_folder(src / FOLDER, tmp_path / "unzipped" / h.INNER_ZIP)
    return tmp_path / "unzipped"


def _zip_without_top_folder(src, tmp_path):
    dest = tmp_path / "flat.zip"
    with zipfile.ZipFile(dest, "w") as zf:
        for rel, data in SMALL_FILES.items():
            zf.writestr(rel, data)
        zf.writestr("__MACOSX/UCI HAR Dataset/._README.txt", b"junk")
    return dest


@pytest.mark.parametrize(
    "make",
    [
        _dataset_folder,
        _parent_folder,
        _inner_zip,
        _outer_zip,
        _folder_with_inner_zip,
        _zip_without_top_folder,
    ],
)
def test_sources_give_the_written_values(make, src, tmp_path, cache):
    arrays, facts = h.load_arrays(make(src, tmp_path), cache_dir=cache, download_ok=False)
    assert_equal_arrays(arrays, SMALL_ARRAYS)
    assert facts["from_cache"] is False
    assert cache_files(cache) == [Path(facts["cache"]).name]


def test_task_from_small_data(src, cache):
    task = get_task("har", data=str(src), val_subjects=[3], cache_dir=str(cache), download=False)
    assert (task.name, task.output_kind, task.num_outputs) == ("har", "classification", 6)
    assert task.class_names[0] == "WALKING" and task.class_names[5] == "LAYING"
    assert task.input_shape == (128, 9)
    assert (len(task.x_train), len(task.x_val), len(task.x_test)) == (18, 6, 24)
    assert task.info["val_subjects"] == [3] and task.info["train_subjects"] == [1, 5, 6]
    assert task.info["test_subjects"] == [2, 4]
    assert task.info["channels"] == list(h.CHANNELS)
    assert task.info["source"] == str(src / FOLDER)
    x_train = SMALL_ARRAYS["x_train"][SMALL_ARRAYS["s_train"] != 3]
    np.testing.assert_allclose(task.info["mean"], x_train.mean(axis=(0, 1)), rtol=1e-5)
    np.testing.assert_allclose(task.info["std"], x_train.std(axis=(0, 1)), rtol=1e-5)
    # the splits are raw; the model standardises (its preprocessing, fitted on train)
    np.testing.assert_array_equal(task.x_test, SMALL_ARRAYS["x_test"])
    assert task.preprocessing == {
        "mean": task.info["mean"],
        "std": task.info["std"],
        "frame_steps": 1,
    }
    scaled = task.preprocessed()
    np.testing.assert_allclose(scaled.x_train.mean(axis=(0, 1)), 0, atol=1e-5)
    np.testing.assert_allclose(scaled.x_train.std(axis=(0, 1)), 1, atol=1e-5)
    for split in ("train", "val", "test"):
        x, y, _ = task.split(split)
        assert x.dtype == np.float32 and set(np.unique(y)) <= set(range(6))
    raw = h.har(src, val_subjects=[3], standardize=False, cache_dir=cache, download=False)
    assert raw.preprocessing == {"frame_steps": 1}
    np.testing.assert_array_equal(raw.preprocessed().x_test, SMALL_ARRAYS["x_test"])


def test_frame_steps_join_consecutive_steps(src, cache):
    plain = h.har(src, val_subjects=[3], cache_dir=cache, download=False).preprocessed()
    framed = h.har(src, val_subjects=[3], frame_steps=4, cache_dir=cache, download=False)
    assert framed.input_shape == (128, 9) and framed.model_steps == 32  # the model frames
    framed = framed.preprocessed()
    assert framed.input_shape == (32, 36) and framed.info["frame_steps"] == 4
    # frame t holds steps 4t..4t+3, each with its 9 channels in order
    np.testing.assert_array_equal(framed.x_test[:, 1, 9:18], plain.x_test[:, 5, :])
    np.testing.assert_array_equal(framed.x_train.reshape(plain.x_train.shape), plain.x_train)
    with pytest.raises(ValueError, match="frame_steps must divide 128"):
        h.har(src, frame_steps=3, cache_dir=cache, download=False)


def test_per_subject_standardises_every_subject_alone(src, cache):
    task = h.har(src, val_subjects=[3], per_subject=True, cache_dir=cache, download=False)
    assert task.info["per_subject"] is True
    for x, ids in ((task.x_test, SMALL_ARRAYS["s_test"]), (task.x_val, [3] * len(task.x_val))):
        for subject in np.unique(ids):
            rows = x[np.asarray(ids) == subject]
            np.testing.assert_allclose(rows.mean(axis=(0, 1)), 0, atol=1e-4)
            np.testing.assert_allclose(rows.std(axis=(0, 1)), 1, atol=1e-4)
    plain = h.har(src, val_subjects=[3], cache_dir=cache, download=False)
    assert not np.allclose(plain.x_test, task.x_test)


@pytest.mark.parametrize(
    ("val_subjects", "expected"), [(1, [5]), (2, [3, 6]), ("1,6", [1, 6]), ((6, 1), [1, 6])]
)
def test_val_subjects(val_subjects, expected, src, cache):
    task = h.har(src, val_subjects=val_subjects, cache_dir=cache, download=False)
    assert task.info["val_subjects"] == expected
    assert not set(task.info["train_subjects"]) & set(expected)
    assert set(task.info["train_subjects"]) | set(expected) == set(TRAIN_SUBJECTS)


def test_default_val_subjects_of_the_official_train_subjects():
    official = [1, 3, 5, 6, 7, 8, 11, 14, 15, 16, 17, 19, 21, 22, 23, 25, 26, 27, 28, 29, 30]
    assert h.pick_val_subjects(np.array(official), h.DEFAULT_VAL_SUBJECTS).tolist() == [
        5, 11, 17, 23, 28,
    ]  # fmt: skip


@pytest.mark.parametrize("val_subjects", [0, 4, [2], [1, 3, 5, 6], []])
def test_bad_val_subjects(val_subjects, src, cache):
    with pytest.raises(ValueError, match="val_subjects"):
        h.har(src, val_subjects=val_subjects, cache_dir=cache, download=False)


# ---------------------------------------------------------------- the cache


def test_second_load_reads_the_cache_not_the_source(src, cache):
    signal = src / FOLDER / "train" / "Inertial Signals" / "body_acc_x_train.txt"
    first, facts = h.load_arrays(src, cache_dir=cache)
    assert not facts["from_cache"] and Path(facts["cache"]).is_file()
    # Same size and mtime, new content: only a load that skips the source still sees the old.
    stat = signal.stat()
    text = signal.read_bytes()
    signal.write_bytes(text.replace(b"  ", b" -", 1))
    os.utime(signal, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second, facts = h.load_arrays(src, cache_dir=cache)
    assert facts["from_cache"]
    assert_equal_arrays(second, first)
    # A new mtime invalidates the cache; the file is replaced, not joined by a second one.
    os.utime(signal, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    third, facts = h.load_arrays(src, cache_dir=cache)
    assert not facts["from_cache"]
    assert third["x_train"][0, 0, 0] == -first["x_train"][0, 0, 0]
    assert cache_files(cache) == [Path(facts["cache"]).name]


def test_corrupt_cache_is_parsed_again(src, cache):
    _, facts = h.load_arrays(src, cache_dir=cache)
    Path(facts["cache"]).write_bytes(b"not an npz")
    arrays, facts = h.load_arrays(src, cache_dir=cache)
    assert not facts["from_cache"]
    assert_equal_arrays(arrays, SMALL_ARRAYS)
    assert h.load_arrays(src, cache_dir=cache)[1]["from_cache"]


def test_environment_variables(src, tmp_path, monkeypatch):
    monkeypatch.setenv(h.DATA_ENV, str(src))
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path / "env_cache"))
    arrays, facts = h.load_arrays(download_ok=False)
    assert_equal_arrays(arrays, SMALL_ARRAYS)
    assert Path(facts["cache"]).parent == tmp_path / "env_cache"
    assert files.cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_no_source_and_no_download(cache):
    with pytest.raises(DataError, match=f"no data.*download=False.*{h.DATA_ENV}"):
        h.har(cache_dir=cache, download=False)
    assert cache_files(cache) == []


def test_download_checks_the_pinned_sha256(src, tmp_path):
    """get_file on a file:// URL: a real download path, without the network."""
    served = zip_folder(src / FOLDER, tmp_path / "served.zip")
    url = served.as_uri()
    with pytest.raises(DataError, match=f"does not match the pinned sha256.*{h.DATA_ENV}") as err:
        h.download_zip(tmp_path / "dl" / "cache", url=url, sha256="0" * 64)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "dl").exists()  # a failed first download leaves no empty folder
    sha = hashlib.sha256(served.read_bytes()).hexdigest()
    got = h.download_zip(tmp_path / "dl", url=url, sha256=sha)
    assert got == tmp_path / "dl" / h.DOWNLOAD_NAME
    assert_equal_arrays(h.parse_source(got), SMALL_ARRAYS)


# ---------------------------------------------------------------- bad input


def _signal(src, split, channel):
    return src / FOLDER / split / "Inertial Signals" / f"{channel}_{split}.txt"


def _missing_signal(src, tmp_path):
    _signal(src, "train", "body_acc_x").unlink()
    return src


def _missing_in_zip(src, tmp_path):
    (src / FOLDER / "test" / "subject_test.txt").unlink()
    return zip_folder(src / FOLDER, tmp_path / "x.zip")


def _short_row(src, tmp_path):
    rewrite(
        _signal(src, "test", "body_gyro_y"),
        lambda lines: [*lines[:4], lines[4][:-17] + "\n", *lines[5:]],
    )
    return src


def _long_row(src, tmp_path):
    rewrite(
        _signal(src, "train", "total_acc_z"),
        lambda lines: [lines[0][:-1] + "  1.0000000e+000\n", *lines[1:]],
    )
    return src


def _not_a_number(src, tmp_path):
    rewrite(
        _signal(src, "train", "body_acc_y"),
        lambda lines: [*lines[:6], lines[6].replace("e", "x", 1), *lines[7:]],
    )
    return src


def _label_7(src, tmp_path):
    rewrite(src / FOLDER / "train" / "y_train.txt", lambda lines: [*lines[:2], "7\n", *lines[3:]])
    return src


def _label_0_in_zip(src, tmp_path):
    rewrite(src / FOLDER / "test" / "y_test.txt", lambda lines: ["0\n", *lines[1:]])
    return zip_folder(src / FOLDER, tmp_path / "x.zip")


def _fewer_rows(src, tmp_path):
    rewrite(_signal(src, "test", "total_acc_x"), lambda lines: lines[:-1])
    return src


def _fewer_subjects(src, tmp_path):
    rewrite(src / FOLDER / "train" / "subject_train.txt", lambda lines: lines[:-2])
    return src


def _test_with_other_row_length(src, tmp_path):
    for channel in h.CHANNELS:
        rewrite(_signal(src, "test", channel), lambda lines: [ln[: 64 * 16] + "\n" for ln in lines])
    return src


def _empty_labels(src, tmp_path):
    (src / FOLDER / "test" / "y_test.txt").write_bytes(b"\n")
    return src


def _no_such_path(src, tmp_path):
    return tmp_path / "nowhere" / "UCI HAR Dataset.zip"


def _truncated_zip(src, tmp_path):
    path = zip_folder(src / FOLDER, tmp_path / "x.zip")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _corrupt_zip(src, tmp_path):
    path = zip_folder(src / FOLDER, tmp_path / "x.zip")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    return path


def _corrupt_inner_zip(src, tmp_path):
    inner = zip_folder(src / FOLDER, tmp_path / h.INNER_ZIP)
    inner.write_bytes(inner.read_bytes()[:1000])
    return outer_zip(inner, tmp_path / "outer.zip")


def _not_a_zip(src, tmp_path):
    path = tmp_path / "notes.zip"
    path.write_text("hello\n")
    return path


def _zip_without_data(src, tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "hello\n")
    return path


def _folder_without_data(src, tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


BAD_INPUTS = {
    _missing_signal: ["missing 'train/Inertial Signals/body_acc_x_train.txt' in", FOLDER],
    _missing_in_zip: ["missing 'test/subject_test.txt' in", "x.zip"],
    _short_row: ["body_gyro_y_test.txt", "expected 128 values a row", "line 5 has 127"],
    _long_row: ["total_acc_z_train.txt", "expected 128 values a row", "line 1 has 129"],
    _not_a_number: ["body_acc_y_train.txt", "expected numbers", "line 7"],
    _label_7: ["y_train.txt", "integers 1..6", "line 3 has 7"],
    _label_0_in_zip: ["y_test.txt", "integers 1..6", "line 1 has 0"],
    _fewer_rows: ["total_acc_x_test.txt", "expected 24 rows", "y_test.txt", "found 23"],
    _fewer_subjects: ["subject_train.txt", "expected 24 rows", "found 22"],
    _test_with_other_row_length: ["body_acc_x_test.txt", "128 values a row", "line 1 has 64"],
    _empty_labels: ["y_test.txt", "is empty"],
    _no_such_path: ["does not exist", "nowhere"],
    _truncated_zip: ["x.zip", "is not a readable zip file"],
    _corrupt_zip: ["corrupt zip", "x.zip"],
    _corrupt_inner_zip: ["'UCI HAR Dataset.zip' inside", "outer.zip", "not a readable zip"],
    _not_a_zip: ["notes.zip", "is not a readable zip file"],
    _zip_without_data: ["no 'UCI HAR Dataset/train/...' files in", "other.zip"],
    _folder_without_data: ["holds neither", "empty"],
}


@pytest.mark.parametrize("make", BAD_INPUTS, ids=lambda f: f.__name__.strip("_"))
def test_bad_input_is_one_line_and_leaves_no_cache(make, src, tmp_path, cache):
    path = make(src, tmp_path)
    with pytest.raises(DataError) as err:
        h.har(path, val_subjects=[3], cache_dir=cache, download=False)
    message = str(err.value)
    assert message.startswith("UCI HAR: ") and "\n" not in message
    for words in BAD_INPUTS[make]:
        assert words in message
    assert cache_files(cache) == []


# ---------------------------------------------------------------- the real data


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The real task loaded twice into a fresh cache: (cold task, warm task, seconds each)."""
    if not REAL_ZIP.is_file():
        pytest.skip(f"the real UCI HAR zip is absent: {REAL_ZIP}")
    cache = tmp_path_factory.mktemp("har_cache")
    times, tasks = [], []
    for _ in range(2):
        start = time.perf_counter()
        tasks.append(h.har(REAL_ZIP, cache_dir=cache, download=False))
        times.append(time.perf_counter() - start)
    print(f"\nUCI HAR real zip: cold {times[0]:.2f} s, from cache {times[1]:.2f} s")
    return tasks[0], tasks[1], times


@pytest.mark.har
def test_real_shapes_and_subjects(real):
    task = real[1]
    assert task.input_shape == (128, 9)
    assert len(task.x_train) + len(task.x_val) == 7352 and len(task.x_test) == 2947
    assert len(task.info["train_subjects"]) + len(task.info["val_subjects"]) == 21
    assert task.info["val_subjects"] == [5, 11, 17, 23, 28]
    assert not set(task.info["train_subjects"]) & set(task.info["val_subjects"])
    assert task.info["test_subjects"] == [2, 4, 9, 10, 12, 13, 18, 20, 24]
    assert not set(task.info["test_subjects"]) & set(task.info["val_subjects"])


@pytest.mark.har
def test_real_class_counts(real):
    task = real[1]
    train = np.bincount(np.concatenate([task.y_train, task.y_val]), minlength=6)
    assert train.tolist() == [1226, 1073, 986, 1286, 1374, 1407]
    assert np.bincount(task.y_test, minlength=6).tolist() == [496, 471, 420, 491, 532, 537]


@pytest.mark.har
def test_real_standardization(real):
    cold, warm, _ = real
    for split in ("train", "val", "test"):  # the cache gives the same task as the zip
        np.testing.assert_array_equal(cold.split(split)[0], warm.split(split)[0])
    warm = warm.preprocessed()
    np.testing.assert_allclose(warm.x_train.mean(axis=(0, 1), dtype=np.float64), 0, atol=1e-4)
    np.testing.assert_allclose(warm.x_train.std(axis=(0, 1), dtype=np.float64), 1, atol=1e-4)
    assert len(warm.info["mean"]) == len(warm.info["std"]) == 9
    # total_acc_x is about 1 g (gravity along the phone's long axis when upright)
    assert 0.5 < warm.info["mean"][6] < 1.0


@pytest.mark.har
def test_real_second_load_comes_from_the_cache(real):
    cold, warm, (t_cold, t_warm) = real
    assert not cold.info["from_cache"] and warm.info["from_cache"]
    assert Path(warm.info["cache"]).is_file()
    assert warm.info["source"] == str(REAL_ZIP)
    assert t_warm < t_cold / 3


@pytest.mark.har
def test_real_first_values(real):
    """The first and last values of body_acc_x_train.txt, read off the file."""
    arrays, facts = h.load_arrays(REAL_ZIP, cache_dir=Path(real[1].info["cache"]).parent)
    assert facts["from_cache"]
    assert arrays["x_train"][0, 0, 0] == np.float32(1.8085150e-004)
    assert arrays["y_train"][0] == 4 and arrays["s_train"][0] == 1
