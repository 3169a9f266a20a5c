"""The demo's console alert line: which sensor and how far off, never the reading (a console
is a log, and readings are patient data)."""

from __future__ import annotations

from streamlstm.adapters.dev.demo import _alert_line


def test_the_alert_line_names_the_sensor_and_its_distance_but_not_its_value() -> None:
    event = {
        "event": "open",
        "stream": "icu3-bed12",
        "severity": "warning",
        "score": 9.1,
        "kind": "anomaly",
        "top_features": [
            {"name": "spo2", "share": 0.71, "value": 84.25, "expected": 97.5, "std_off": -6.14},
            {"name": "hr", "share": 0.22, "value": None, "expected": 70.0, "std_off": None},
        ],
    }
    line = _alert_line(event)
    assert "spo2 71% (-6.1 std)" in line and "hr 22%" in line
    assert "84.25" not in line and "97.5" not in line and "hr 22% (" not in line
