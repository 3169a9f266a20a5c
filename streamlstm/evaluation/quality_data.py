"""The data sets ``streamlstm quality`` measures on: the synthetic suites and NAB series
(the pump runs are in ``quality_pump``).

Each loader returns a ``FileData`` (readings in the order a worker would see them) and an
``EventsFor`` that builds a stream's labelled events after scoring.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from streamlstm.config import Config
from streamlstm.datafiles import FileData, read_file
from streamlstm.evaluation.metrics import events_from_labels, events_from_windows
from streamlstm.evaluation.quality import EventsFor
from streamlstm.records import Reading, parse_ts
from streamlstm.simulate.generate import generate, write_csv


def synthetic(
    config: Config, kind: str, streams: int, length: int, seed: int, anomaly_rate: float = 1.0
) -> tuple[FileData, EventsFor]:
    """``streamlstm simulate`` output, read back through the same CSV reader as the CLI
    (``anomaly_rate=0``: the same normal data without any anomaly)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{kind}.csv"
        write_csv(generate(kind, streams, length, seed, anomaly_rate=anomaly_rate), path)
        data = read_file(path, config)

    def events_for(_stream: str, _ts: np.ndarray, offsets: list[int]):
        return events_from_labels(
            [data.labels[i] for i in offsets], [data.kinds[i] or None for i in offsets]
        )

    return data, events_for


def nab_windows(windows_json: str | Path) -> dict[str, list[tuple[float, float]]]:
    """{series name (file stem): [(start, end) epoch s]} from a NAB windows file."""
    table = json.loads(Path(windows_json).read_text())
    return {
        Path(key).stem: [(parse_ts(a), parse_ts(b)) for a, b in spans]
        for key, spans in table.items()
    }


def nab_series(
    config: Config, files: list[Path], windows: dict[str, list[tuple[float, float]]]
) -> tuple[FileData, EventsFor]:
    """NAB CSVs as one stream each (named by file stem) in one model group.

    Readings are interleaved by position (the k-th reading of every series together), so a
    replay advances all series in one batched step; each stream still sees only its own
    readings in time order, which is all the streaming detector depends on.
    """
    data = interleave([(f.stem, read_file(f, config)) for f in files])

    def events_for(stream: str, ts: np.ndarray, _offsets: list[int]):
        return events_from_windows(ts, windows.get(stream, []))

    return FileData(data.readings), events_for


def interleave(per_file: list[tuple[str, FileData]]) -> FileData:
    """Files as one stream each (named by the given name), the k-th reading of every file
    together; labels and kinds follow their readings (-1 / "" where a file has none)."""
    longest = max(len(d.readings) for _, d in per_file)
    merged: list[Reading] = []
    labels: list[int] = []
    kinds: list[str] = []
    for k in range(longest):
        for name, d in per_file:
            if k < len(d.readings):
                r = d.readings[k]
                merged.append(Reading(name, r.ts, r.values, r.group, r.topic, 0, len(merged)))
                labels.append(d.labels[k] if d.labels else -1)
                kinds.append(d.kinds[k] if d.kinds else "")
    labelled = any(lbl >= 0 for lbl in labels)
    return FileData(merged, labels if labelled else [], kinds if labelled else [])
