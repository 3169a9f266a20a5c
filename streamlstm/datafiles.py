"""Readings from files: CSV (``timestamp``/``ts``/``datetime``, optional ``stream``, one column
per feature, optional ``label`` or ``anomaly`` and ``anomaly_kind``) or JSONL in the record
contract. A CSV may be comma- or semicolon-separated (the pump testbed's files use ``;``): the
header line decides.

Every row goes through the same ``RecordParser`` checks as a Kafka record, so a file replay
rejects exactly what the live worker would.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamlstm.config import Config, GroupConfig
from streamlstm.records import RawRecord, Reading, RecordParser, Rejection


class InputFileError(ValueError):
    """A data file that cannot be read as readings; the message says which file and why."""


@dataclass
class FileData:
    readings: list[Reading]  # sorted by (ts, row); offset = position in that order
    labels: list[int] = field(default_factory=list)  # aligned with readings ([] if none)
    kinds: list[str] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count

    def by_stream(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i, r in enumerate(self.readings):
            out.setdefault(r.stream, []).append(i)
        return out


def _cell(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        return math.inf  # not a number: the parser rejects it as non-finite


def read_file(path: str | Path, config: Config) -> FileData:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    parser = RecordParser(config.input, config.groups)
    if path.suffix in (".jsonl", ".ndjson", ".json"):
        rows = _jsonl_rows(path, parser)
    else:
        rows = _csv_rows(path, parser, config)
    # (ts, row number) order: the order a live worker would see a time-ordered topic in.
    rows.sort(key=lambda item: (item[0].ts if isinstance(item[0], Reading) else math.inf, item[3]))
    readings, labels, kinds, rejected = [], [], [], {}
    for offset, (got, label, kind, _) in enumerate(rows):
        if isinstance(got, Rejection):
            rejected[got.reason] = rejected.get(got.reason, 0) + 1
            continue
        readings.append(Reading(got.stream, got.ts, got.values, got.group, "file", 0, offset))
        labels.append(label)
        kinds.append(kind)
    has_labels = any(lbl >= 0 for lbl in labels)
    return FileData(readings, labels if has_labels else [], kinds if has_labels else [], rejected)


Row = tuple[Reading | Rejection, int, str, int]  # result, label (-1 = none), kind, row number


def _csv_rows(path: Path, parser: RecordParser, config: Config) -> list[Row]:
    rows: list[Row] = []
    with path.open(newline="", encoding="utf-8") as fh:
        delimiter = _delimiter(fh.readline())
        fh.seek(0)
        reader = csv.DictReader(fh, delimiter=delimiter)
        header = reader.fieldnames or []
        ts_col = next((c for c in TS_COLUMNS if c in header), None)
        if ts_col is None:
            raise InputFileError(
                f"{path}: no {' or '.join(map(repr, TS_COLUMNS))} column (columns: {header}; "
                "read as separated by " + repr(delimiter) + ": the header line decides)"
            )
        label_col = next((c for c in LABEL_COLUMNS if c in header), "")
        group = _csv_group(path, header, config)
        for n, row in enumerate(reader):
            stream = row.get("stream") or path.stem
            values = {f: _cell(row.get(f)) for f in group.features}
            label = _label(row.get(label_col))
            rows.append(
                (
                    parser.build(stream, row[ts_col], values, group),
                    label,
                    row.get("anomaly_kind") or "",
                    n,
                )
            )
    return rows


TS_COLUMNS = ("timestamp", "ts", "datetime")
LABEL_COLUMNS = ("label", "anomaly")  # 1 on anomalous readings; the first one present counts


def csv_columns(path: str | Path) -> list[str]:
    """The header of a comma- or semicolon-separated file, as ``read_file`` splits it."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        line = fh.readline()
    return next(csv.reader([line], delimiter=_delimiter(line)), [])


def _delimiter(header_line: str) -> str:
    """';' when the header holds more semicolons than commas (a European-style CSV)."""
    return ";" if header_line.count(";") > header_line.count(",") else ","


def _label(text: str | None) -> int:
    """-1 when the row has no label; labels may be written as floats ("1.0")."""
    return int(float(text)) if text not in (None, "") else -1


def _csv_group(path: Path, header: list[str], config: Config) -> GroupConfig:
    for group in config.groups:
        if all(f in header for f in group.features):
            return group
    wanted = {g.name: g.features for g in config.groups}
    raise InputFileError(
        f"{path}: no model group's features are all columns of the file "
        f"(columns: {header}; groups: {wanted}). For a single 'value' column use "
        f"configs/univariate.yaml."
    )


def _jsonl_rows(path: Path, parser: RecordParser) -> list[Row]:
    rows: list[Row] = []
    with path.open("rb") as fh:
        for n, line in enumerate(fh):
            if line.strip():
                rows.append(
                    (parser.parse(RawRecord("file", 0, n, None, line.rstrip(b"\n"))), -1, "", n)
                )
    return rows


def to_series(data: FileData, indices: dict[str, list[int]] | None = None) -> list[Series]:
    """Per-stream arrays for training (``indices`` restricts each stream's rows)."""
    out = []
    for stream, idx in (indices or data.by_stream()).items():
        if not idx:
            continue
        ts = np.array([data.readings[i].ts for i in idx])
        values = np.array([data.readings[i].values for i in idx], dtype=np.float64)
        out.append(Series(stream, ts, values))
    return out


@dataclass
class Series:
    """One stream's readings in time order: ts (T,) epoch seconds, values (T, F), NaN = missing."""

    stream: str
    ts: np.ndarray
    values: np.ndarray
