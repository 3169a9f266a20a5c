"""The layout of a detector's state table: the columns of one stream's row.

Device columns hold what the batched step reads and writes (LSTM state, window, normaliser
and calibration statistics); host columns what the Python side needs per reading (order
checks, the alert state machine). ``state.StateTable`` stores them; ``detector.Detector``
steps them.
"""

from __future__ import annotations

from streamlstm.config import DetectorConfig
from streamlstm.detect import alerts
from streamlstm.detect.calibration import INPUT_PRIOR
from streamlstm.detect.columns import Col
from streamlstm.detect.likelihood import tail_start
from streamlstm.detect.state import Column


def table_columns(
    n_features: int, hidden: int, window: int, det: DetectorConfig, hold_set: bool = False
) -> tuple[dict[str, Column], dict[str, Column]]:
    """(device columns, host columns) of a detector's table: what one stream's row holds.
    Optional state (a trend, seasons, a split scale, input calibration) has its own columns
    with defaults, so a snapshot taken before an option was set still restores.
    ``hold_set``: the column of ``alerts.hold_normal: features`` (``holding.held_features``)."""
    F, H, W = n_features, hidden, window
    season_bins = sum(det.season_bins())  # all seasons' bins together
    device_cols = {
        Col.H: Column((H,), "float32"),
        Col.C: Column((H,), "float32"),
        Col.WIN_X: Column((W, F), "float32"),
        Col.WIN_M: Column((W, F), "uint8"),  # a mask: 1 byte, not 4, per cell
        Col.MEAN: Column((F,), "float32"),
        Col.VAR: Column((F,), "float32"),
        Col.VAR_REF: Column((F,), "float32"),  # long-run variance behind the std floor
        Col.N_OBS: Column((F,), "float32"),
        Col.LAST_X: Column((F,), "float32", float("nan")),
        Col.QUANTUM: Column((F,), "float32", float("inf")),  # none seen yet: no floor
        Col.STILL: Column((F,), "float32"),
        Col.MAX_RUN: Column((F,), "float32"),
        Col.CAL_MU: Column((F + 1,), "float32"),
        Col.CAL_DEV: Column((F + 1,), "float32"),
        Col.CAL_N: Column((), "float32"),
        Col.SINCE_RESET: Column((), "float32"),
    }
    if det.trend_horizon:
        device_cols[Col.TREND] = Column((F,), "float32")
    if season_bins:  # int8 profiles, a step and a visit count per season (seasons.py)
        seasons = len(det.season_periods_s)
        device_cols[Col.SEASON] = Column((F, season_bins), "int8")
        device_cols[Col.SEASON_SCALE] = Column((F, seasons), "float32")
        device_cols[Col.SEASON_N] = Column((F, seasons), "float32")
    if det.split_scale:  # the downside variance; NaN until learnt (an older snapshot's rows)
        device_cols[Col.VAR_DN] = Column((F,), "float32", float("nan"))
    if det.score_inputs:  # calibration of the input deviations: own columns, so a snapshot taken
        # without them restores (they start from a Gaussian input's statistics)
        device_cols[Col.IN_MU] = Column((F,), "float32", INPUT_PRIOR[0])
        device_cols[Col.IN_DEV] = Column((F,), "float32", INPUT_PRIOR[1])
    if det.score_tail_horizon:  # the score's own distribution (likelihood.tail_score)
        start = tail_start(det.score_tail_shape)
        device_cols |= {name: Column((), "float32", fill) for name, fill in start.items()}
    if hold_set:  # one byte per feature: which sensors the stream's held episode is about
        device_cols[Col.HOLD_SET] = Column((F,), "uint8")
    host_cols = {
        Col.LAST_TS: Column((), "float64", float("-inf")),
        Col.LAST_OFFSET: Column((), "int64", -1),
        **alerts.HOST_COLUMNS,
    }
    return device_cols, host_cols
