"""Small builders shared by the core tests: plain lists and tensors, no I/O."""

from __future__ import annotations

import numpy as np

from streamlstm import config as config_mod
from streamlstm.config import Config, ModelConfig
from streamlstm.detect.calibration import GroupPrior
from streamlstm.detect.detector import Detector, ScoringModel
from streamlstm.detect.model import LSTMAutoencoder
from streamlstm.records import Reading

FEATURES = ["hr", "spo2", "rr"]

# The alert event fields of the data contract (DESIGN §3).
ALERT_FIELDS = {
    "alert_id",
    "event",
    "stream",
    "ts",
    "score",
    "threshold",
    "severity",
    "model_version",
    "top_features",
    "opened_ts",
    "open_s",
    "source",
}


def tiny_config(calibration_fade: int = 120, **alerts) -> Config:
    """``calibration_fade``: below the default, tests of holds inside alerts reach the end of
    the fade (before it nothing is held back) within a few readings."""
    return config_mod.from_dict(
        {
            "groups": [
                {
                    "name": "g",
                    "features": FEATURES,
                    "model": {"hidden_size": 8, "bottleneck": 3, "window_len": 4},
                }
            ],
            "detector": {
                "warmup_readings": 5,
                "burn_in_readings": 2,
                "max_gap_s": 600,
                "calibration_fade": calibration_fade,
            },
            "alerts": {
                "enter": 6.0,
                "exit": 3.0,
                "critical": 12.0,
                "min_duration": 2,
                "exit_duration": 2,
                "cooldown": 3,
                **alerts,
            },
        }
    )


def tiny_model(seed: int = 0, version: str = "g-test") -> ScoringModel:
    cfg = tiny_config()
    torch_seed(seed)
    net = LSTMAutoencoder(len(FEATURES), ModelConfig(hidden_size=8, bottleneck=3, window_len=4))
    prior = GroupPrior(
        mean=(70.0, 97.0, 16.0),
        std=(8.0, 1.5, 3.0),
        max_run=(2.0, 6.0, 3.0),
        cal_mu=(1.0,) * 4,
        cal_dev=(0.2,) * 4,
    )
    assert cfg.groups[0].features == FEATURES
    return ScoringModel("g", version, FEATURES, net.eval(), prior)


def torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def tiny_detector(seed: int = 0, calibration_fade: int = 120, **alerts) -> Detector:
    cfg = tiny_config(calibration_fade, **alerts)
    return Detector(tiny_model(seed), cfg.detector, cfg.alerts)


def series(
    stream: str, n: int, seed: int = 0, start_offset: int = 0, t0: float = 1.767e9
) -> list[Reading]:
    rng = np.random.default_rng(seed)
    base = np.array([70.0, 97.0, 16.0]) + rng.normal(0, [5, 1, 2])
    out = []
    for i in range(n):
        v = base + rng.normal(0, [2, 0.5, 1])
        out.append(
            Reading(
                stream, t0 + 60.0 * i, tuple(float(x) for x in v), "g", "t", 0, start_offset + i
            )
        )
    return out


def interleave(*streams: list[Reading]) -> list[Reading]:
    return sorted((r for s in streams for r in s), key=lambda r: (r.ts, r.stream))


def assert_same_state(got: dict, want: dict, atol: float = 1e-4) -> None:
    """Two ``table_rows`` results hold the same streams and (to float noise) the same rows."""
    import numpy as np

    assert got.keys() == want.keys()
    for stream, cols in want.items():
        assert got[stream].keys() == cols.keys(), stream
        for name, value in cols.items():
            other = got[stream][name]
            if np.issubdtype(value.dtype, np.floating):
                np.testing.assert_allclose(other, value, rtol=1e-4, atol=atol, err_msg=name)
            else:
                np.testing.assert_array_equal(other, value, err_msg=f"{stream} {name}")


def normalise(x, m, s, det, phase=None, share=None):
    """One reading through the normaliser as training runs it: forecast, then learn."""
    from streamlstm.detect.normalise import forecast, learn

    z, seen = forecast(x, m, s, det, phase)
    learn(x, m, s, det, seen, share)
    return z


def calibrate(stats, seen, state, learn, horizon):
    """Score then learn, as serving does outside alerts: (score, z, new state)."""
    from streamlstm.detect.calibration import calibrated_score, learn_calibration

    score, z = calibrated_score(stats, seen, state)
    return score, z, learn_calibration(stats, seen, state, learn, horizon)
