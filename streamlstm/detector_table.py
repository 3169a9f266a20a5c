"""The layout of a detector's state table: the columns of one stream's row.

Device columns hold what the batched step reads and writes (LSTM state, window, normaliser
and calibration statistics); host columns what the Python side needs per reading (order
checks, the alert state machine). ``state.StateTable`` stores them; ``detector.Detector``
steps them.
"""

from __future__ import annotations

from streamlstm import alerts
from streamlstm.calibration import INPUT_PRIOR
from streamlstm.config import DetectorConfig
from streamlstm.state import Column


def table_columns(
    n_features: int, hidden: int, window: int, det: DetectorConfig
) -> tuple[dict[str, Column], dict[str, Column]]:
    """(device columns, host columns) of a detector's table: what one stream's row holds.
    Optional state (a trend, seasons, a split scale, input calibration) has its own columns
    with defaults, so a snapshot taken before an option was set still restores."""
    F, H, W = n_features, hidden, window
    season_bins = sum(det.season_bins())  # all seasons' bins together
    device_cols = {
        "h": Column((H,), "float32"),
        "c": Column((H,), "float32"),
        "win_x": Column((W, F), "float32"),
        "win_m": Column((W, F), "uint8"),  # a mask: 1 byte, not 4, per cell
        "mean": Column((F,), "float32"),
        "var": Column((F,), "float32"),
        "var_ref": Column((F,), "float32"),  # long-run variance behind the std floor
        "n_obs": Column((F,), "float32"),
        "last_x": Column((F,), "float32", float("nan")),
        "still": Column((F,), "float32"),
        "max_run": Column((F,), "float32"),
        "cal_mu": Column((F + 1,), "float32"),
        "cal_dev": Column((F + 1,), "float32"),
        "cal_n": Column((), "float32"),
        "since_reset": Column((), "float32"),
    }
    if det.trend_horizon:
        device_cols["trend"] = Column((F,), "float32")
    if season_bins:  # the seasonal profiles and how many readings each bin has learnt
        device_cols["season"] = Column((F, season_bins), "float32")
        device_cols["season_n"] = Column((F, season_bins), "float32")
    if det.split_scale:  # the downside variance; NaN until learnt (an older snapshot's rows)
        device_cols["var_dn"] = Column((F,), "float32", float("nan"))
    if det.score_inputs:  # calibration of the input deviations: own columns, so a snapshot taken
        # without them restores (they start from a Gaussian input's statistics)
        device_cols["in_mu"] = Column((F,), "float32", INPUT_PRIOR[0])
        device_cols["in_dev"] = Column((F,), "float32", INPUT_PRIOR[1])
    host_cols = {
        "last_ts": Column((), "float64", float("-inf")),
        "last_offset": Column((), "int64", -1),
        **alerts.HOST_COLUMNS,
    }
    return device_cols, host_cols
