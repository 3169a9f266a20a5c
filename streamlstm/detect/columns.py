"""The names of the columns of a stream's row in a detector's state table, each written once.

``table.table_columns`` lays the row out under these names and every reader (the detector
step, normalisation, calibration, seasons, the alert machine, hot-swap, the baselines,
training's normaliser) indexes with them, so a column cannot be renamed in one place only.
Plain strings: a snapshot stores the same names, and a lookup costs nothing extra.
"""

from __future__ import annotations


class Col:
    # device columns: what the batched step reads and writes
    H = "h"  # (H,) LSTM hidden state
    C = "c"  # (H,) LSTM cell state
    WIN_X = "win_x"  # (W, F) the last W normalised readings
    WIN_M = "win_m"  # (W, F) their mask
    MEAN = "mean"  # (F,) normaliser level
    TREND = "trend"  # (F,) normaliser slope (with detector.trend_horizon)
    VAR = "var"  # (F,) normaliser variance (the upper side with split_scale)
    VAR_DN = "var_dn"  # (F,) downside variance (with split_scale)
    VAR_REF = "var_ref"  # (F,) long-run variance behind the std floor
    N_OBS = "n_obs"  # (F,) readings the normaliser has seen
    # Seasons (seasons.py): new names, as the layout changed (an older snapshot's float
    # profiles are left out on restore and re-learnt)
    SEASON = "season_q8"  # (F, bins) int8 seasonal profiles, in steps of season_scale
    SEASON_SCALE = "season_scale"  # (F, seasons) each season's step, raw units
    SEASON_N = "season_visits"  # (F, seasons) passes over each season learnt from
    LAST_X = "last_x"  # (F,) last raw value (stuck-sensor detection)
    QUANTUM = "quantum"  # (F,) smallest change seen between readings: the sensor's resolution
    STILL = "still"  # (F,) readings unchanged or missing so far
    MAX_RUN = "max_run"  # (F,) longest normal such run
    CAL_MU = "cal_mu"  # (F + 1,) error calibration: typical log-error
    CAL_DEV = "cal_dev"  # (F + 1,) its mean absolute deviation
    CAL_N = "cal_n"  # () readings calibration has learnt from
    IN_MU = "in_mu"  # (F,) input-deviation calibration (with score_inputs)
    IN_DEV = "in_dev"  # (F,)
    TAIL_MU = "tail_mu"  # () long-run mean of the calibrated score (score_tail_horizon)
    TAIL_DEV = "tail_dev"  # () its mean absolute deviation
    TAIL_N = "tail_n"  # () readings it has learnt from
    TAIL_SHORT = "tail_short"  # () short-window mean of the calibrated score
    HOLD_SET = "hold_set"  # (F,) uint8: the sensors a held episode is about (hold "features")
    SINCE_RESET = "since_reset"  # () readings since the last reset (warm-up, burn-in)
    # host columns: order checks and the alert state machine
    LAST_TS = "last_ts"
    LAST_OFFSET = "last_offset"
    A_STATE = "a_state"
    A_PENDING = "a_pending"
    A_BELOW = "a_below"
    A_COOLDOWN = "a_cooldown"
    A_PEAK = "a_peak"
    A_LEVEL = "a_level"
    A_SEVERITY = "a_severity"
    A_KIND = "a_kind"
    A_OPEN_OFFSET = "a_open_offset"
    A_OPEN_TS = "a_open_ts"
    A_NORMAL_TS = "a_normal_ts"  # when the stream's normal began (rebaseline_after_history)
    A_ID_HI = "a_id_hi"
    A_ID_LO = "a_id_lo"
