"""Offline replay through the live scoring path: a file's readings, in file order, through
the same ``Engine`` a worker runs.

The scores file has one row per input row, in input order: a row the parser or the detector
rejected (e.g. a repeated timestamp) is kept with its reason in the ``rejected`` column and
no score."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from streamlstm.config import Config
from streamlstm.datafiles import FileData, read_file
from streamlstm.records import Reading, Rejection, format_ts
from streamlstm.stream.engine import Engine, GroupResult
from streamlstm.train.checkpoint import load_model_set
from streamlstm.train.models import train_models


@dataclass
class ReplayRow:
    stream: str
    ts: float
    score: float
    threshold: float
    is_anomaly: bool
    warming: bool
    rms_error: float
    alert_event: str = ""
    alert_id: str = ""
    top_feature: str = ""
    # how far off that feature's reading was, in the stream's own std (None: not known)
    top_std_off: float | None = None
    offset: int = 0
    # The kind of the alert the reading is in: "anomaly", or "signal_quality" (a stuck or
    # missing sensor, opened whatever the score); "" outside alerts.
    alert_kind: str = ""


def rows_by_stream(rows: list[ReplayRow]) -> dict[str, list[ReplayRow]]:
    """Replay rows grouped per stream, each stream's rows in replay (time) order."""
    out: dict[str, list[ReplayRow]] = {}
    for r in rows:
        out.setdefault(r.stream, []).append(r)
    return out


def replay(
    engine: Engine,
    readings: list[Reading],
    batch_size: int = 4096,
    on_batch: Callable[[int], None] | None = None,
    on_results: Callable[[dict[str, GroupResult]], None] | None = None,
) -> tuple[list[ReplayRow], list]:
    """Score time-ordered ``readings`` in batches through the live scoring path.

    Returns one row per scored reading (in input order) and the rejections
    ``(index into readings, Rejection)``. ``on_results`` sees each batch's results (its alert
    events included) once the batch is scored, as a live worker's sink would.
    """
    rows: list[ReplayRow | None] = [None] * len(readings)
    rejected: list = []
    for start in range(0, len(readings), batch_size):
        batch = readings[start : start + batch_size]
        position = {id(r): start + k for k, r in enumerate(batch)}
        results = engine.process(batch)
        for group, res in results.items():
            threshold = engine.detectors[group].alerts.cfg.enter
            _fill_rows(rows, position, res, threshold)
            rejected.extend((position[id(res.readings[i])], rej) for i, rej in res.scored.rejected)
        if on_results:
            on_results(results)
        if on_batch:
            on_batch(len(batch))
    kept = [r for r in rows if r is not None]
    _carry_alert_kinds(kept)
    return kept, rejected


def _carry_alert_kinds(rows: list[ReplayRow]) -> None:
    """Each row inside an alert gets its alert's kind: the kind of the stream's last alert
    event (an update may turn a signal-quality alert into an anomaly). Rows are in each
    stream's time order."""
    kind: dict[str, str] = {}
    for r in rows:
        if r.alert_kind:  # set by this reading's event
            kind[r.stream] = r.alert_kind
        r.alert_kind = kind.get(r.stream, "anomaly") if r.is_anomaly else ""


def _fill_rows(rows: list, position: dict[int, int], res: GroupResult, threshold: float) -> None:
    sc = res.scored
    by_source: dict[tuple[str, int], int] = {}
    for j, i in enumerate(sc.index):
        r = res.readings[i]
        pos = position[id(r)]
        rows[pos] = ReplayRow(
            r.stream,
            r.ts,
            sc.score[j],
            threshold,
            sc.in_alert[j],
            sc.warming[j],
            sc.raw_error[j],
            offset=r.offset,
        )
        by_source[(r.stream, r.offset)] = pos
    for event in sc.events:
        row = rows[by_source[(event.stream, event.source[2])]]
        if row.alert_event != "open":  # an open outranks an update on the same reading
            row.alert_event, row.alert_id = event.event, event.alert_id
            row.alert_kind = event.kind
        if event.top_features and not row.top_feature:
            row.top_feature = event.top_features[0].name
            row.top_std_off = event.top_features[0].std_off


COLUMNS = [
    "row",  # the input's data row (0 = the first after a CSV header)
    "stream",
    "ts",
    "score",
    "threshold",
    "is_anomaly",
    "alert_event",
    "alert_id",
    "top_feature",
    "top_feature_std_off",  # its reading's distance from the stream's normal, in std
    "alert_kind",  # anomaly | signal_quality inside an alert, "" outside
    "warming",
    "error",
    "rejected",  # why the row has no score ("" when it has one)
]

NOT_SCORED = "not_scored"  # a reading the engine neither scored nor rejected (never expected)


def score_file(
    config: Config,
    path: str,
    model_dir: str | None,
    train_fraction: float,
    device: torch.device,
    quiet: bool = False,
    train_rows: int | None = None,
) -> tuple[FileData, list[ReplayRow], list[tuple[int, Rejection]]]:
    """Read, (train,) and replay a file through the streaming path: the data, a row per
    scored reading and the detector's rejections (reading index, why)."""
    data = read_usable(path, config)
    engine = engine_for(config, data, model_dir, train_fraction, device, quiet, train_rows)
    with replay_bar(len(data.readings), quiet) as bar:
        rows, rejected = replay(engine, data.readings, on_batch=bar.update)
    return data, rows, rejected


def read_usable(path: str, config: Config) -> FileData:
    """The file's readings; a file without one usable reading is an error that says why."""
    data = read_file(path, config)
    if not data.readings:
        raise SystemExit(f"streamlstm: no usable readings in {path} (rejected: {data.rejected})")
    return data


def engine_for(
    config: Config,
    data: FileData,
    model_dir: str | None,
    train_fraction: float,
    device: torch.device,
    quiet: bool = False,
    train_rows: int | None = None,
) -> Engine:
    """An engine with the models of ``model_dir``, or trained on the first
    ``train_fraction`` of each stream of ``data`` (its first ``train_rows`` when given)."""
    if model_dir:
        models = load_model_set(model_dir)
    else:
        models = train_models(config, data, train_fraction, device, quiet, first=train_rows)[0]
    return Engine.build(config, models, device)


def replay_bar(total: int, quiet: bool):
    """The progress bar of a file replay (on stderr, so stdout stays the report)."""
    from tqdm import tqdm

    return tqdm(total=total, desc="replay", unit="reading", disable=quiet, file=sys.stderr)


def write_scores(
    path: str,
    rows: list[ReplayRow],
    data: FileData,
    rejected: Sequence[tuple[int, Rejection]] = (),
) -> None:
    """One line per input row, in input order (``output_lines``)."""
    labelled = bool(data.labels)
    out_path = Path(path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(COLUMNS + (["label", "anomaly_kind"] if labelled else []))
        out.writerows(output_lines(rows, data, rejected))


def output_lines(
    rows: list[ReplayRow], data: FileData, rejected: Sequence[tuple[int, Rejection]] = ()
) -> list[list]:
    """The scores file's lines: every reading (scored, or rejected by the detector) and every
    row the parser rejected, ordered by input row."""
    labelled = bool(data.labels)
    scored = {r.offset: r for r in rows}
    refused = {i: rej.reason for i, rej in rejected}
    lines: list[tuple[int, list]] = []
    for i, reading in enumerate(data.readings):
        row = data.source_rows[i] if data.source_rows else i
        got = scored.get(i)
        if got is None:
            line = _rejected_line(row, reading.stream, refused.get(i, NOT_SCORED), reading.ts)
        else:
            line = _scored_line(row, got)
        if labelled:
            line += [data.labels[i], data.kinds[i]]
        lines.append((row, line))
    for rej in data.rejected_rows:
        line = _rejected_line(rej.row, rej.stream, rej.reason, None)
        lines.append((rej.row, line + (["", ""] if labelled else [])))
    lines.sort(key=lambda item: item[0])  # stable: one input row never yields two lines
    return [line for _, line in lines]


def _scored_line(row: int, r: ReplayRow) -> list:
    return [
        row,
        r.stream,
        format_ts(r.ts),
        f"{r.score:.4f}",
        r.threshold,
        int(r.is_anomaly),
        r.alert_event,
        r.alert_id,
        r.top_feature,
        "" if r.top_std_off is None else f"{r.top_std_off:.2f}",
        r.alert_kind,
        int(r.warming),
        f"{r.rms_error:.5f}",
        "",
    ]


def _rejected_line(row: int, stream: str, reason: str, ts: float | None) -> list:
    """No score: the ts only when it parsed (a parser rejection may be about the ts)."""
    blank = [""] * (len(COLUMNS) - 4)
    return [row, stream, "" if ts is None else format_ts(ts), *blank, reason]
