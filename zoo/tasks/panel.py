"""Series files read as forecasters keep them: dates, names, one or many series (a panel).

`read_panel(path)` reads a CSV (a date/time column, header names, wide or long format) or a
one-array `.npz`, checks it (missing values, duplicate, unordered or skipped dates, text among
the numbers: one-line `DataError`s) and infers the frequency from the dates with pandas, from
which follow the season length and the M4 forecast horizon.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.tasks.base import DataError
from zoo.tasks.files import load_npz

# pandas period code -> (name, season length, forecast horizon of the M4 competition)
FREQUENCIES = {
    "Y": ("yearly", 1, 6),
    "Q": ("quarterly", 4, 8),
    "M": ("monthly", 12, 18),
    "W": ("weekly", 52, 13),
    "D": ("daily", 7, 14),
    "B": ("business daily", 5, 14),
    "h": ("hourly", 24, 48),
    "min": ("minutely", 60, 60),
    "s": ("secondly", 60, 60),
}
# the pandas frequency strings (pd.infer_freq) of each period code, by their leading letters
_PREFIXES = [
    (("Y", "A", "BY", "BA"), "Y"),
    (("Q", "BQ"), "Q"),
    (("ME", "MS", "M", "BM", "BMS", "CBM", "CBMS"), "M"),
    (("W",), "W"),
    (("D",), "D"),
    (("B", "C"), "B"),
    (("h", "H", "bh", "cbh"), "h"),
    (("min", "T"), "min"),
    (("s", "S"), "s"),
]
TIME_NAMES = ("date", "time", "timestamp", "datetime", "ds", "period", "month", "year", "quarter")
TIME_NAMES += ("week", "day", "hour", "minute")
SERIES_NAMES = ("series", "unique_id", "series_id", "series_name", "item_id", "id")
MISSING = ("", "nan", "na", "n/a", "null", "none", "-")
FILLS = ("interpolate", "ffill")


@dataclass(frozen=True)
class Panel:
    """Series read from one file: their names, values and, where the file has dates, dates.

    `values[i]` is series i (float64, in time order), `dates[i]` its steps' dates
    (`numpy.datetime64`, or None without a time column), `positions[i]` each step's place in
    the season (0..season-1: the month of a monthly series, the hour of an hourly one; the
    step's index modulo the season without dates). `frequency` is the pandas frequency string
    (e.g. "MS") and `period` its period code ("M"), both None without dates; `season` the
    season length (1: none).
    """

    source: str
    names: list[str]
    values: list[np.ndarray]
    dates: list[np.ndarray | None]
    positions: list[np.ndarray]
    frequency: str | None
    period: str | None
    season: int
    fill: str | None = None
    filled: int = 0

    @property
    def kind(self) -> str | None:
        """ "monthly", "quarterly", ...: the frequency in words (None without dates)."""
        return FREQUENCIES[self.period][0] if self.period in FREQUENCIES else self.frequency

    @property
    def default_horizon(self) -> int:
        """The M4 competition's horizon for this frequency (yearly 6, quarterly 8, monthly 18,
        weekly 13, daily 14, hourly 48); 1 without dates."""
        return FREQUENCIES[self.period][2] if self.period in FREQUENCIES else 1


def period_code(frequency: str) -> tuple[str | None, int]:
    """(period code, multiple) of a pandas frequency string: "MS" -> ("M", 1), "2h" -> ("h", 2);
    (None, 1) for one outside FREQUENCIES."""
    digits = len(frequency) - len(frequency.lstrip("0123456789"))
    multiple = int(frequency[:digits]) if digits else 1
    base = frequency[digits:].split("-")[0]
    for prefixes, code in _PREFIXES:
        if base in prefixes:
            return code, multiple
    return None, multiple


def season_of(code: str | None, multiple: int = 1) -> int:
    """The season length of a frequency: 12 for monthly, 24 for hourly, 12 for every 2 hours;
    1 where none is known."""
    if code not in FREQUENCIES:
        return 1
    season = FREQUENCIES[code][1]
    return season // multiple if multiple > 1 and season % multiple == 0 else max(1, season)


def read_panel(
    path: str | os.PathLike,
    *,
    target=None,
    time_column=None,
    series_column=None,
    season: int | None = None,
    fill: str | None = None,
) -> Panel:
    """The series of a CSV or `.npz` file as a `Panel`.

    A CSV is wide (a time column and one column a series) or long (a series column naming each
    row's series, a time column and one value column); see `zoo.tasks.series.series`. `target`
    picks the series columns of a wide file (names or indices among the value columns, one or
    several, or a comma-separated string) or the value column of a long one. `season` overrides
    the season length inferred from the dates; `fill` ("interpolate" or "ffill") fills missing
    values and skipped dates instead of refusing them.
    """
    if fill is not None and fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}. Received: fill={fill!r}")
    if season is not None and (
        not isinstance(season, (int, np.integer)) or isinstance(season, bool) or season < 1
    ):
        raise ValueError(f"season must be a positive integer. Received: season={season!r}")
    path = Path(path).expanduser()
    if path.suffix.lower() == ".npz":
        if time_column is not None or series_column is not None:
            raise DataError(f"series: {path} is an .npz array: it has no time or series column")
        names, columns = _npz_columns(path)
        names, columns = _pick(names, columns, target, path)
        return _build(path, names, columns, [None] * len(names), None, season, fill)
    if not path.is_file():
        raise DataError(f"series: no such file: {path}")
    header, rows = _csv_rows(path)
    return _from_table(path, header, rows, target, time_column, series_column, season, fill)


def _npz_columns(path: Path) -> tuple[list[str], list[list]]:
    arrays = load_npz(path, "series")
    if len(arrays) != 1:
        raise DataError(
            f"series: {path} must hold one array, (time,) or (time, channels). "
            f"Received: {', '.join(sorted(arrays)) or 'no arrays'}"
        )
    values = next(iter(arrays.values()))
    if values.ndim not in (1, 2) or not np.issubdtype(values.dtype, np.number):
        raise DataError(
            f"series: the array in {path} must be numbers shaped (time,) or (time, channels). "
            f"Received: shape={values.shape}, dtype={values.dtype}"
        )
    values = values.reshape(len(values), -1).astype(np.float64)
    return [str(i) for i in range(values.shape[1])], [values[:, i] for i in range(values.shape[1])]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _csv_rows(path: Path) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """(header or None, [(line number, cells)]) of a CSV; rows of the wrong length refused."""
    try:
        with open(path, newline="") as f:
            rows = [
                (number, [cell.strip() for cell in cells])
                for number, cells in enumerate(csv.reader(f), start=1)
                if any(cell.strip() for cell in cells)
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"series: cannot read {path} as CSV text ({err})") from None
    if not rows:
        raise DataError(f"series: {path} is empty")
    first = rows[0][1]
    # a header has a cell that is empty (pandas' unnamed index) or neither a number nor a date
    header = None
    if any(not cell or not (_is_number(cell) or _is_date(cell)) for cell in first):
        header, rows = first, rows[1:]
    width = len(header or first)
    for number, cells in rows:
        if len(cells) != width:
            raise DataError(
                f"series: {path} line {number} has {len(cells)} values, expected {width}"
            )
    if not rows:
        raise DataError(f"series: {path} has a header and no rows")
    return header, rows


def _is_date(cell: str) -> bool:
    return _all_dates([cell])


def _all_dates(cells: list[str]) -> bool:
    import pandas as pd  # pandas when a file is read: keeps `zoo.train --help` fast

    try:
        pd.to_datetime(pd.Series(cells), format="mixed")
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _column_index(names: list[str], key, what: str, path: Path) -> int:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if 0 <= key < len(names):
            return int(key)
    elif str(key) in names:
        return names.index(str(key))
    raise DataError(
        f"series: {what} must be a column name or index 0..{len(names) - 1} of {path}. "
        f"Received: {key!r}; columns: {', '.join(repr(n) for n in names)}"
    )


def _from_table(path, header, rows, target, time_column, series_column, season, fill) -> Panel:
    import pandas as pd  # pandas when a file is read: keeps `zoo.train --help` fast

    width = len(rows[0][1])
    names = header or [str(i) for i in range(width)]
    lines = [number for number, _ in rows]
    cells = [list(col) for col in zip(*(cells for _, cells in rows), strict=True)]
    lowered = [n.lower() for n in names]
    if time_column is not None:
        t = _column_index(names, time_column, "time_column", path)
    else:
        t = next((i for i, n in enumerate(lowered) if n in TIME_NAMES), None)
        if t is None:  # a column of dates that are not numbers, or pandas' unnamed index
            for i, col in enumerate(cells):
                if not all(_is_number(c) for c in col if c) and _all_dates(col):
                    t = i
                    break
        if t is None and header and names[0] == "":
            t = 0
    if series_column is not None:
        s = _column_index(names, series_column, "series_column", path)
    else:
        s = next((i for i, n in enumerate(lowered) if n in SERIES_NAMES and i != t), None)
    if s is not None and s == t:
        raise DataError(f"series: the series and time columns of {path} are one column")
    value_idx = [i for i in range(width) if i not in (t, s)]
    if not value_idx:
        raise DataError(f"series: {path} has no value column")
    value_names = [names[i] for i in value_idx]
    stamps = None
    if t is not None:
        stamps = _parse_times(cells[t], names[t], lines, path)
        if stamps is None:  # an unnamed integer index: steps, no dates
            t = None
    if s is None:  # wide: every value column (or the targets) a series, one time axis
        chosen = _targets(value_names, target, path)
        columns = [_numbers(cells[value_idx[i]], value_names[i], lines, path) for i in chosen]
        series_names = [value_names[i] for i in chosen]
        dates = [stamps] * len(columns)
        line_sets = [lines] * len(columns)
    else:  # long: rows grouped by the series column, each group in the file's order
        if target is None and len(value_idx) > 1:
            raise DataError(
                f"series: {path} is in long format (series column {names[s]!r}) with several "
                f"value columns ({', '.join(value_names)}); name one with target=NAME"
            )
        chosen = _targets(value_names, target if target is not None else 0, path)
        if len(chosen) != 1:
            raise DataError(
                f"series: a long-format file takes one target column. Received: {target!r}"
            )
        values = _numbers(cells[value_idx[chosen[0]]], value_names[chosen[0]], lines, path)
        ids = pd.Series(cells[s])
        series_names = list(dict.fromkeys(cells[s]))
        groups = [np.flatnonzero(ids.to_numpy() == name) for name in series_names]
        columns = [values[g] for g in groups]
        dates = [stamps[g] if stamps is not None else None for g in groups]
        line_sets = [[lines[i] for i in g] for g in groups]
    return _build(path, series_names, columns, dates, line_sets, season, fill)


def _targets(value_names: list[str], target, path: Path) -> list[int]:
    """Indices among the value columns that `target` names: all of them when None."""
    if target is None:
        return list(range(len(value_names)))
    keys = target
    if isinstance(target, str):
        keys = [k.strip() for k in target.split(",")] if target not in value_names else [target]
    elif not isinstance(target, (list, tuple)):
        keys = [target]
    picked = [_column_index(value_names, k, "target", path) for k in keys]
    if len(set(picked)) != len(picked):
        raise DataError(f"series: target names a column twice. Received: {target!r}")
    return picked


def _pick(names: list[str], columns: list, target, path: Path):
    chosen = _targets(names, target, path)
    return [names[i] for i in chosen], [columns[i] for i in chosen]


def _parse_times(col: list[str], name: str, lines: list[int], path: Path):
    """The column as datetime64 values; None for an unnamed column of integers (an index)."""
    import pandas as pd  # pandas when a file is read: keeps `zoo.train --help` fast

    missing = [i for i, c in enumerate(col) if c.lower() in MISSING]
    if missing:
        raise DataError(f"series: {path} line {lines[missing[0]]} has no time in column {name!r}")
    if all(c.lstrip("-").isdigit() for c in col):
        if name.lower() != "year":
            if name:
                raise DataError(
                    f"series: time column {name!r} of {path} holds integers; name it 'year' for "
                    "years, or drop it (the rows are then the steps)"
                )
            return None
        col = [f"{c}-01-01" for c in col]
    try:
        stamps = pd.to_datetime(pd.Series(col), format="mixed")
    except (ValueError, TypeError, OverflowError):
        bad = next(i for i, c in enumerate(col) if not _is_date(c))
        raise DataError(
            f"series: {path} line {lines[bad]}: {col[bad]!r} in time column {name!r} is not a date"
        ) from None
    return stamps.to_numpy(dtype="datetime64[ns]")


def _numbers(col: list[str], name: str, lines: list[int], path: Path) -> np.ndarray:
    """The column as float64, missing cells NaN; text or inf refused."""
    values = np.full(len(col), np.nan)
    for i, cell in enumerate(col):
        if cell.lower() in MISSING:
            continue
        try:
            values[i] = float(cell)
        except ValueError:
            raise DataError(
                f"series: {path} line {lines[i]}: {cell!r} in value column {name!r} is not a "
                "number (value columns hold numbers only)"
            ) from None
        if not math.isfinite(values[i]):
            raise DataError(
                f"series: {path} line {lines[i]}: {cell!r} in column {name!r} is not finite"
            )
    return values


def _frequency(dates: np.ndarray, name: str, path: Path):
    """(frequency string, period code, multiple, period ordinals) of one series' sorted dates;
    the ordinals may skip (missing steps)."""
    import pandas as pd  # pandas when a file is read: keeps `zoo.train --help` fast

    index = pd.DatetimeIndex(dates)
    frequency = pd.infer_freq(index) if len(index) >= 3 else None
    if frequency is not None:
        code, multiple = period_code(frequency)
        if code is not None:
            ordinals = index.to_period(code).asi8
            return frequency, code, multiple, ordinals
    for code in ("Y", "Q", "M", "W", "D", "h", "min", "s"):  # the coarsest that tells steps apart
        ordinals = index.to_period(code).asi8
        if len(np.unique(ordinals)) == len(ordinals):
            steps = np.diff(ordinals)
            multiple = int(np.gcd.reduce(steps)) if len(steps) else 1
            return (f"{multiple if multiple > 1 else ''}{code}", code, multiple, ordinals)
    raise DataError(f"series: the dates of series {name!r} in {path} do not fall on one grid")


def _build(path, names, columns, dates, line_sets, season, fill) -> Panel:
    """Check each series (order, duplicates, gaps, missing values), fill if asked, and infer
    one frequency and season for all."""
    import pandas as pd  # pandas when a file is read: keeps `zoo.train --help` fast

    where = f" of series {{!r}} in {path}" if len(names) > 1 else f" in {path}"
    values, stamps, positions = [], [], []
    frequency = code = None
    multiple, filled = 1, 0
    for i, (name, column, when) in enumerate(zip(names, columns, dates, strict=True)):
        at = where.format(name) if len(names) > 1 else where
        column = np.asarray(column, dtype=np.float64)
        ordinals = None
        if when is not None:
            order = np.diff(when.astype("datetime64[ns]").astype(np.int64))
            line = line_sets[i] if line_sets else list(range(1, len(when) + 1))
            if (order < 0).any():
                k = int(np.argmax(order < 0)) + 1
                raise DataError(
                    f"series: dates are not in order{at}: line {line[k]} ({day_text(when[k])}) comes "
                    f"after line {line[k - 1]} ({day_text(when[k - 1])}); sort the file by date"
                )
            if (order == 0).any():
                k = int(np.argmax(order == 0)) + 1
                raise DataError(
                    f"series: duplicate date {day_text(when[k])}{at} (lines {line[k - 1]} and "
                    f"{line[k]}); keep one row a date"
                )
            f, c, m, ordinals = _frequency(when, name, path)
            if frequency is None:
                frequency, code, multiple = f, c, m
            elif (c, m) != (code, multiple):
                raise DataError(
                    f"series: series {names[0]!r} is {frequency} and {name!r} is {f}{at}; "
                    "one frequency a file"
                )
            gaps = np.flatnonzero(np.diff(ordinals) != multiple)
            if len(gaps):
                if fill is None:
                    k = int(gaps[0])
                    raise DataError(
                        f"series: dates skip steps{at}: after {day_text(when[k])} (line "
                        f"{line[k]}) comes {day_text(when[k + 1])}; add the missing rows, or "
                        "--task-option fill=interpolate (or ffill) to fill them"
                    )
                full = np.arange(ordinals[0], ordinals[-1] + 1, multiple)
                column = pd.Series(column, index=ordinals).reindex(full).to_numpy()
                ordinals = full
                when = pd.PeriodIndex.from_ordinals(full, freq=code).to_timestamp().to_numpy()
        nan = np.flatnonzero(np.isnan(column))
        if len(nan):
            if fill is None:
                k = int(nan[0])
                step = f"the value of {day_text(when[k])}" if when is not None else f"step {k}"
                raise DataError(
                    f"series: {len(nan)} missing values{at} (first: {step}); fill them, or "
                    "--task-option fill=interpolate (or ffill)"
                )
            filled += len(nan)
            series = pd.Series(column)
            column = (
                series.interpolate(limit_direction="both")
                if fill == "interpolate"
                else series.ffill().bfill()
            ).to_numpy()
        if not len(column):
            raise DataError(f"series: series {name!r} in {path} has no values")
        values.append(column)
        stamps.append(when)
        positions.append(ordinals // multiple if ordinals is not None else None)
    known = season_of(code, multiple)
    season = season or known
    positions = [
        (p if p is not None else np.arange(len(v))) % season
        for p, v in zip(positions, values, strict=True)
    ]
    return Panel(
        source=str(path),
        names=[str(n) for n in names],
        values=values,
        dates=stamps,
        positions=positions,
        frequency=frequency,
        period=code,
        season=int(season),
        fill=fill,
        filled=int(filled),
    )


def day_text(stamp) -> str:
    """A date as text without a midnight time."""
    text = str(np.datetime64(stamp, "s")).replace("T", " ")
    return text[:-9] if text.endswith(" 00:00:00") else text
