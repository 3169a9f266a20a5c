"""The synthetic generator: determinism, labels, placement, ranges, output formats, bad records."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import re
from functools import cache

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlstm import config as config_mod
from streamlstm.commands import simulate as simulate_cmd
from streamlstm.record_parser import RecordParser
from streamlstm.records import REASONS, RawRecord, Reading, format_ts
from streamlstm.simulate.generate import (
    FEATURES,
    KINDS,
    SUSTAINED_KINDS,
    VITAL_RANGES,
    bad_records,
    generate,
    to_records,
    write_csv,
    write_truth_json,
)


@cache
def data(kind: str, rate: float = 1.0):
    """60 streams x 1500 readings, and the same seed without anomalies (the clean twin)."""
    return generate(kind, 60, 1500, seed=11, anomaly_rate=rate)


def parser_for(kind: str) -> RecordParser:
    cfg = config_mod.from_dict({"groups": [{"name": kind, "features": FEATURES[kind]}]})
    return RecordParser(cfg.input, cfg.groups)


def test_same_seed_same_data_other_seed_differs() -> None:
    a, b = generate("vitals", 5, 400, seed=3), generate("vitals", 5, 400, seed=3)
    np.testing.assert_array_equal(a.values, b.values)  # NaN == NaN here
    np.testing.assert_array_equal(a.label, b.label)
    assert a.events == b.events and a.streams == b.streams
    c = generate("vitals", 5, 400, seed=4)
    assert not np.allclose(np.nan_to_num(a.values), np.nan_to_num(c.values))


def test_a_stream_does_not_depend_on_how_many_are_generated() -> None:
    few, many = generate("sensors", 3, 500, seed=5), generate("sensors", 8, 500, seed=5)
    np.testing.assert_array_equal(few.values, many.values[:3])
    assert few.events == [e for e in many.events if e.stream in few.streams]


@pytest.mark.parametrize("kind", ["vitals", "sensors"])
def test_every_kind_appears_and_about_a_fifth_of_streams_are_clean(kind: str) -> None:
    d = data(kind)
    assert {e.kind for e in d.events} == set(KINDS[kind]) | set(SUSTAINED_KINDS[kind])
    # Short events only: the sustained faults come on top (tests/test_simulate_sustained.py).
    short = [e for e in d.events if e.kind in KINDS[kind]]
    per_stream = [sum(e.stream == s for e in short) for s in d.streams]
    assert 0.05 <= per_stream.count(0) / len(per_stream) <= 0.45
    assert max(per_stream) <= 3  # Poisson capped at twice the mean (1.125 here)


@pytest.mark.parametrize("kind", ["vitals", "sensors"])
def test_labels_cover_exactly_the_event_segments(kind: str) -> None:
    d = data(kind)
    expected = np.full(d.label.shape, "", dtype=object)
    for e in d.events:
        i = d.streams.index(e.stream)
        expected[i, e.start_idx : e.end_idx + 1] = e.kind
        assert (e.start_ts, e.end_ts) == (d.ts[i, e.start_idx], d.ts[i, e.end_idx])
        assert set(e.features) <= set(d.features) and e.features
    np.testing.assert_array_equal(d.anomaly_kind, expected)
    np.testing.assert_array_equal(d.label, (expected != "").astype(np.int8))


def check_placement(d) -> None:
    length = d.ts.shape[1]
    for s in d.streams:
        events = [e for e in d.events if e.stream == s]
        assert all(e.start_idx >= math.ceil(0.25 * length) for e in events)
        assert all(e.start_idx <= e.end_idx < length for e in events)
        for a, b in itertools.pairwise(events):
            assert b.start_idx - a.end_idx - 1 >= 100  # in order, apart, never overlapping


@pytest.mark.parametrize("kind", ["vitals", "sensors"])
def test_no_event_in_the_first_quarter_and_none_overlap(kind: str) -> None:
    check_placement(data(kind))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 700), st.floats(0, 8), st.integers(0, 2**32))
def test_placement_holds_for_any_length_and_rate(length: int, rate: float, seed: int) -> None:
    check_placement(generate("vitals", 2, length, seed, anomaly_rate=rate))


def test_vitals_stay_physiological_and_rounded_like_a_monitor() -> None:
    d = data("vitals")
    for j, name in enumerate(d.features):
        col = d.values[..., j][~np.isnan(d.values[..., j])]
        low, high = VITAL_RANGES[name]
        assert low <= col.min() and col.max() <= high, name
        step = 10.0 if name == "temp" else 1.0
        np.testing.assert_allclose(col * step, np.round(col * step), atol=1e-9)
    sbp, dbp = d.values[..., 3], d.values[..., 4]
    ok = ~np.isnan(sbp) & ~np.isnan(dbp)
    assert (dbp[ok] <= sbp[ok] - 10).all()
    assert np.nanmin(data("sensors").values) >= 0


def test_normal_data_has_the_structure_a_model_must_learn() -> None:
    v, s = data("vitals", 0.0), data("sensors", 0.0)
    assert not v.events and not v.label.any()
    assert 0.001 < np.isnan(v.values).mean() < 0.004  # rare missing cells
    baselines = np.nanmean(v.values, axis=1)
    assert np.ptp(baselines[:, 0]) > 20  # patients differ
    corr = np.mean([np.corrcoef(np.nan_to_num(np.diff(x, axis=0)).T) for x in v.values], axis=0)
    assert corr[3, 4] > 0.4 and corr[0, 2] > 0.1  # sbp/dbp co-move, hr/rr weakly
    for flow, power in zip(s.values[..., 2], s.values[..., 4], strict=True):
        ok = ~np.isnan(flow) & ~np.isnan(power)
        assert np.corrcoef(flow[ok], power[ok])[0, 1] > 0.8  # power follows flow


def changed(
    kind: str, feats: list[int], anom: np.ndarray, clean: np.ndarray, sd: np.ndarray, detail: str
) -> bool:
    """Does the segment differ from its clean twin the way this kind should?"""
    diff = anom[:, feats] - clean[:, feats]
    if np.isnan(diff).all() and kind == "spike":
        return True  # the clean twin lost that one cell to normal missingness: nothing to see
    if kind == "flatline":
        col, ref = anom[:, feats[0]], clean[:, feats[0]]
        if detail == "dropout":
            return bool(np.isnan(col).all())
        return np.ptp(col) == 0 and np.nanmax(ref) != np.nanmin(ref)
    if kind == "variance_burst":
        return bool((np.nanstd(diff, axis=0) >= 2 * sd[feats]).all())
    if kind == "desaturation":  # spo2 falls by 6+ points, hr and rr rise with it
        return np.nanmin(diff[:, 0]) <= -5 and bool((np.nanmean(diff[:, 1:], axis=0) > 0).all())
    if kind == "correlation_break":
        mean = np.nanmean(diff, axis=0) / sd[feats]
        return bool(mean[0] * mean[1] < 0 and (np.abs(mean) >= 2).all())
    return bool((np.nanmax(np.abs(diff), axis=0) >= 3 * sd[feats]).all())


@pytest.mark.parametrize("kind", ["vitals", "sensors"])
def test_each_anomaly_changes_its_segment_and_nothing_else(kind: str) -> None:
    d, clean = data(kind), data(kind, 0.0)
    outside = d.label == 0
    np.testing.assert_array_equal(d.values[outside], clean.values[outside])
    for e in d.events:
        i = d.streams.index(e.stream)
        seg = slice(e.start_idx, e.end_idx + 1)
        feats = [d.features.index(f) for f in e.features]
        assert changed(
            e.kind, feats, d.values[i, seg], clean.values[i, seg], d.noise_sd[i], e.detail
        ), e


def test_csv_round_trip(tmp_path) -> None:
    d = generate("vitals", 4, 300, seed=2, anomaly_rate=4.0)
    path = tmp_path / "v.csv"
    write_csv(d, path)
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["stream", "timestamp", *FEATURES["vitals"], "label", "anomaly_kind"]
    body = rows[1:]
    assert len(body) == 4 * 300
    assert [(r[1], r[0]) for r in body] == sorted((r[1], r[0]) for r in body)
    assert body[0][1] == "2026-01-01T00:00:00.000Z" == format_ts(d.ts[0, 0])
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r[1]) for r in body)
    assert sum(c == "" for r in body for c in r[2:8]) == np.isnan(d.values).sum() > 0
    assert sum(int(r[8]) for r in body) == d.label.sum() > 0
    assert {r[9] for r in body if r[8] == "1"} == {e.kind for e in d.events}
    i, t = d.streams.index(body[-1][0]), 299
    assert [float(c) if c else math.nan for c in body[-1][2:8]] == pytest.approx(
        d.values[i, t].tolist(), nan_ok=True
    )


@pytest.mark.parametrize("kind", ["vitals", "sensors"])
def test_the_project_file_reader_accepts_the_csv(kind: str, tmp_path) -> None:
    pytest.importorskip("torch")  # datafiles reaches training
    from streamlstm.datafiles import read_file

    d = generate(kind, 5, 400, seed=8)
    write_csv(d, tmp_path / "d.csv")
    shipped = config_mod.from_dict(yaml.safe_load(config_mod.default_config_text(kind)))
    got = read_file(tmp_path / "d.csv", shipped)  # its feature_ranges included
    assert not got.rejected and len(got.readings) == 5 * 400
    assert sum(got.labels) == d.label.sum()
    assert set(got.kinds) == set(d.anomaly_kind.ravel())


def test_truth_json_lists_the_events(tmp_path) -> None:
    d = generate("sensors", 5, 800, seed=1, anomaly_rate=3.0)
    write_truth_json(d, tmp_path / "t.json")
    doc = json.loads((tmp_path / "t.json").read_text())
    assert len(doc["events"]) == len(d.events) > 0
    first, e = doc["events"][0], d.events[0]
    assert first["start_ts"] == format_ts(e.start_ts) and first["end_idx"] == e.end_idx
    assert first["features"] == list(e.features) and first["kind"] == e.kind


@pytest.mark.parametrize("kind", ["vitals", "sensors"])
def test_records_follow_the_input_contract(kind: str) -> None:
    d = generate(kind, 3, 200, seed=9)
    parser, got = parser_for(kind), []
    for key, value in to_records(d):
        reading = parser.parse(RawRecord("t", 0, 0, key, value))
        assert isinstance(reading, Reading), reading
        got.append(reading)
    assert len(got) == 600 and b":null" in b"".join(v for _, v in to_records(d))
    i = d.streams.index(got[-1].stream)
    np.testing.assert_array_equal(np.array(got[-1].values), d.values[i, -1])
    assert got[0].ts == d.ts[0, 0]


@pytest.mark.parametrize("kind", ["vitals", "sensors"])
def test_bad_records_carry_their_rejection_reason(kind: str) -> None:
    bad = bad_records(np.random.default_rng(0), 40, kind)
    wanted = {
        "not_json",
        "bad_unicode",
        "not_object",
        "no_stream",
        "key_mismatch",
        "no_timestamp",
        "bad_timestamp",
        "absurd_timestamp",
        "no_features",
        "bad_value",
        "non_finite",
        "oversized",
    }
    assert {reason for _, _, reason in bad} == wanted and len(bad) == 40
    rng = np.random.default_rng(1)  # one at a time, as a producer mixes them in
    assert {bad_records(rng, 1, kind)[0][2] for _ in range(200)} == wanted
    parser = parser_for(kind)
    for key, value, reason in bad:
        got = parser.parse(RawRecord("t", 0, 0, key, value))
        assert not isinstance(got, Reading) and got.reason == reason, (reason, value[:80])
        assert got.stage == REASONS[reason]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        generate("weather", 1, 10, 0)
    with pytest.raises(ValueError):
        generate("vitals", 0, 10, 0)


def test_cli_writes_the_files_and_a_summary(tmp_path, capsys) -> None:
    top = argparse.ArgumentParser()
    simulate_cmd.add_parser(top.add_subparsers())
    out, truth = tmp_path / "sub" / "s.csv", tmp_path / "t.json"
    args = top.parse_args(
        [
            "simulate",
            "--kind",
            "sensors",
            "--streams",
            "3",
            "--length",
            "500",
            "--out",
            str(out),
            "--truth",
            str(truth),
        ]
    )
    assert args.func(args) == 0
    assert len(out.read_text().splitlines()) == 1 + 3 * 500 and truth.exists()
    text = capsys.readouterr().out
    assert "1,500 readings of 3 sensors streams" in text and str(out) in text
