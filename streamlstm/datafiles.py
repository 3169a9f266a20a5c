"""Readings from files: CSV (``timestamp``/``ts``/``datetime``, optional ``stream``, one column
per feature, optional ``label`` or ``anomaly`` and ``anomaly_kind``) or JSONL in the record
contract. A CSV may be separated by ``,``, ``;`` (the pump testbed's files) or a tab: the
header line decides (the candidate it holds most of).

Every row goes through the same ``RecordParser`` checks as a Kafka record, so a file replay
rejects exactly what the live worker would. Readings keep the file's row order (a live worker
sees a topic in the order it was written): a row older than its stream's last one is rejected
by the detector, as live, not moved.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamlstm.config import Config, GroupConfig
from streamlstm.record_parser import RecordParser
from streamlstm.records import RawRecord, Reading, Rejection


class InputFileError(ValueError):
    """A data file that cannot be read as readings; the message says which file and why."""


@dataclass(frozen=True)
class RejectedRow:
    """A data row the parser rejected: its number, its stream ("" if unknown), the reason."""

    row: int
    stream: str
    reason: str


@dataclass
class FileData:
    readings: list[Reading]  # in file order; offset = position in this list
    labels: list[int] = field(default_factory=list)  # aligned with readings ([] if none)
    kinds: list[str] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count
    # The file's data rows (0 = the first after a CSV header) a reading or rejection came
    # from, so a replay can write one output row per input row, in input order.
    source_rows: list[int] = field(default_factory=list)  # aligned with readings
    rejected_rows: list[RejectedRow] = field(default_factory=list)

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
    data = FileData([])
    labels, kinds = [], []
    for got, label, kind, n, stream in rows:
        if isinstance(got, Rejection):
            data.rejected[got.reason] = data.rejected.get(got.reason, 0) + 1
            data.rejected_rows.append(RejectedRow(n, stream, got.reason))
            continue
        offset = len(data.readings)
        data.readings.append(Reading(got.stream, got.ts, got.values, got.group, "file", 0, offset))
        data.source_rows.append(n)
        labels.append(label)
        kinds.append(kind)
    if any(lbl >= 0 for lbl in labels):
        data.labels, data.kinds = labels, kinds
    return data


# result, label (-1 = none), kind, row number, stream id as written ("" if unknown)
Row = tuple[Reading | Rejection, int, str, int, str]


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
                f"read as separated by {_delimiter_name(delimiter)}, the character the header "
                f"line holds most of among {', '.join(map(_delimiter_name, DELIMITERS))})"
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
                    stream,
                )
            )
    return rows


TS_COLUMNS = ("timestamp", "ts", "datetime")
LABEL_COLUMNS = ("label", "anomaly")  # 1 on anomalous readings; the first one present counts


def csv_columns(path: str | Path) -> list[str]:
    """The header of a delimited file, as ``read_file`` splits it."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        line = fh.readline()
    return next(csv.reader([line], delimiter=_delimiter(line)), [])


DELIMITERS = (",", ";", "\t")  # ties go to the first: a header with none is one column


def _delimiter(header_line: str) -> str:
    """The candidate the header line holds most of (';' in a European-style CSV)."""
    return max(DELIMITERS, key=header_line.count)


def _delimiter_name(delimiter: str) -> str:
    return "a tab" if delimiter == "\t" else repr(delimiter)


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
                got = parser.parse(RawRecord("file", 0, n, None, line.rstrip(b"\n")))
                stream = got.stream if isinstance(got, Reading) else ""
                rows.append((got, -1, "", n, stream))
    return rows


def to_series(data: FileData, indices: dict[str, list[int]] | None = None) -> list[Series]:
    """Per-stream arrays for training (``indices`` restricts each stream's rows); a reading
    not later than its stream's previous one is left out, as the detector rejects it."""
    out = []
    for stream, given in (indices or data.by_stream()).items():
        idx = in_time_order(data, given)
        if not idx:
            continue
        ts = np.array([data.readings[i].ts for i in idx])
        values = np.array([data.readings[i].values for i in idx], dtype=np.float64)
        out.append(Series(stream, ts, values))
    return out


def in_time_order(data: FileData, idx: list[int]) -> list[int]:
    """``idx`` without the readings the detector rejects as duplicate or out of order (a
    timestamp not after the latest one kept), e.g. a repeated daylight-saving hour."""
    kept: list[int] = []
    for i in idx:
        if not kept or data.readings[i].ts > data.readings[kept[-1]].ts:
            kept.append(i)
    return kept


@dataclass
class Series:
    """One stream's readings in time order: ts (T,) epoch seconds, values (T, F), NaN = missing."""

    stream: str
    ts: np.ndarray
    values: np.ndarray
