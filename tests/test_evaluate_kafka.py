"""``streamlstm evaluate --through-kafka``: the same labelled file through a real broker and
the ``streamlstm run`` workers (real local Ray) gives the offline path's alerts and report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from streamlstm import config as config_mod
from streamlstm.adapters.dev.kafka_eval import score_through_kafka
from streamlstm.datafiles import read_file
from streamlstm.evaluation.metrics import event_metrics, events_from_labels, report_to_dict
from streamlstm.evaluation.nab import NabSeries, nab_report
from streamlstm.evaluation.replay import score_file
from streamlstm.evaluation.summary import stream_evals, windows_for
from streamlstm.records import format_ts
from streamlstm.simulate.generate import generate, write_csv
from streamlstm.train.checkpoint import save_model
from streamlstm.train.models import train_models
from tests.cli_helpers import ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.ray]

CONFIG = ROOT / "configs" / "test.yaml"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A labelled file (8 streams x 400, dense episodes) with one duplicate reading (the
    detector rejects it: DLQ live, no row offline) and one unusable row (rejected when the
    file is read, so never produced); a model trained once; NAB windows."""
    tmp = tmp_path_factory.mktemp("evalkafka")
    data = generate("vitals", 8, 400, 3, anomaly_rate=5.0)
    csv = tmp / "vitals.csv"
    write_csv(data, csv)
    lines = csv.read_text().splitlines()
    bad = lines[900].split(",")
    bad[2] = "n/a"  # hr
    csv.write_text("\n".join([*lines, lines[1200], ",".join(bad)]) + "\n")
    config = config_mod.load(CONFIG, {}, environ={})
    file_data = read_file(csv, config)
    models, metrics = train_models(config, file_data, 0.25, CPU, quiet=True)
    save_model(tmp / "model" / "vitals", models["vitals"], metrics["vitals"])
    # NAB windows: the labelled episodes of the stream with the most of them
    busiest = max(range(8), key=lambda i: len(events_from_labels(data.label[i].tolist())))
    spans = events_from_labels(data.label[busiest].tolist())
    stamps = data.ts[busiest]
    windows = {
        csv.name: [[format_ts(stamps[e.start_idx]), format_ts(stamps[e.end_idx])] for e in spans]
    }
    (tmp / "windows.json").write_text(json.dumps(windows))
    return {"csv": csv, "model": tmp / "model", "windows": tmp / "windows.json"}


def _opens(rows) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in rows:
        if r.alert_event == "open":
            out.setdefault(r.stream, []).append(r.ts)
    return out


def test_through_kafka_gives_the_offline_alerts_and_report(
    case, kafka_bootstrap: str, ray_local
) -> None:
    config = config_mod.load(CONFIG, {}, environ={})
    csv, model = str(case["csv"]), str(case["model"])
    data, offline, _ = score_file(config, csv, model, 0.25, CPU, quiet=True)
    live = score_through_kafka(config, csv, model, 0.25, CPU, quiet=True, bootstrap=kafka_bootstrap)

    s = live.summary
    assert data.rejected == {"non_finite": 1}  # the unusable row: never produced
    assert s["produced"] == s["processed"] == len(data.readings) == 8 * 400 + 1
    assert s["dlq"] == 1  # the duplicate, rejected by the detector in the worker
    # the same readings scored, in the same order, with the same alerts on the same readings
    assert [(r.stream, r.ts) for r in live.rows] == [(r.stream, r.ts) for r in offline]
    assert len(offline) == 8 * 400
    opens = _opens(offline)
    assert sum(map(len, opens.values())) >= 5  # not a vacuous comparison
    assert _opens(live.rows) == opens
    assert [r.alert_event for r in live.rows] == [r.alert_event for r in offline]
    assert [r.is_anomaly for r in live.rows] == [r.is_anomaly for r in offline]
    assert [r.top_feature for r in live.rows] == [r.top_feature for r in offline]
    # and how far off it was (events carry it rounded to 2 decimals)
    offs = [(k.top_std_off, o.top_std_off) for k, o in zip(live.rows, offline, strict=True)]
    assert sum(o is not None for _, o in offs) >= 5
    assert all(k == (None if o is None else round(o, 2)) for k, o in offs), offs
    for k, o in zip(live.rows, offline, strict=True):
        if k.alert_event:  # events carry the score rounded to 4 decimals
            assert abs(k.score - o.score) <= 1e-4, (k, o)

    reports = [
        report_to_dict(event_metrics(stream_evals(rows, data), 10)) for rows in (offline, live.rows)
    ]
    assert reports[0] == reports[1]
    assert reports[0]["tp"] > 0 and reports[0]["per_kind"]
    windows = windows_for(str(case["windows"]), csv)
    nabs = [
        nab_report([NabSeries(e.ts, e.alert_open, windows, e.stream_id) for e in per_stream])
        for per_stream in (stream_evals(rows, data, windows) for rows in (offline, live.rows))
    ]
    assert nabs[0] == nabs[1]
    _assert_deleted(kafka_bootstrap, s["topics"])


def _assert_deleted(bootstrap: str, topic: str) -> None:
    """On a broker it did not start, the run deletes the topics it made."""
    import time

    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        deadline = time.monotonic() + 15
        while topic in admin.list_topics() and time.monotonic() < deadline:
            time.sleep(0.3)
        assert topic not in admin.list_topics()
    finally:
        admin.close()


def _evaluate(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [sys.executable, "-m", "streamlstm", "evaluate", "-c", str(CONFIG), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "RAY_ADDRESS": ""},  # its own local Ray, not the tests' one
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def test_evaluate_command_through_kafka_prints_the_offline_report(case) -> None:
    common = ["--input", str(case["csv"]), "--model", str(case["model"])]
    offline = _evaluate(*common).stdout.splitlines()
    live = _evaluate(*common, "--through-kafka")
    lines = live.stdout.splitlines()
    assert lines[0].startswith("through Kafka: 3201 readings -> icu.vitals.eval-")
    assert "processed 3201/3201; DLQ 1;" in lines[0]
    assert lines[1:] == offline and any("recall" in line for line in offline)
    if not os.environ.get("KAFKA_BOOTSTRAP"):
        assert "kafka: starting a local broker" in live.stderr
    assert "workers: the `streamlstm run` supervisor" in live.stderr
