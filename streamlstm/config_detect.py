"""The config sections for how readings are scored and alerted: the detector's per-stream
statistics (``DetectorConfig``) and the alert state machine (``AlertConfig``). ``config.py``
imports them into ``Config``."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from streamlstm.config_runtime import Section as _Section


class DetectorConfig(_Section):
    warmup_readings: int = Field(60, ge=0)  # no alerts for the first N readings of a stream
    burn_in_readings: int = Field(10, ge=0)  # errors not fed to calibration after a reset
    max_gap_s: float = Field(3600.0, gt=0)  # a longer gap resets (h, c) and re-warms
    # Horizons of the per-stream EMAs, in readings. A short normalisation horizon lets slow
    # rhythms (circadian, load cycles) pass as normal; the detector looks at faster changes.
    norm_horizon: int = Field(60, gt=1)  # input normalisation (mean, variance)
    # The same horizon in seconds of stream time instead (normalise.level_rate): each reading
    # weighs its gap since the stream's previous one, so "follow over an hour" holds for a
    # 1 Hz gateway and a once-a-minute historian alike. Replaces norm_horizon when set.
    norm_horizon_s: float | None = Field(None, gt=0)
    norm_scale_horizon: int | None = Field(None, gt=1)  # variance only; None = norm_horizon
    # The level's slope is smoothed over norm_horizon x trend_horizon readings (Holt); None:
    # no slope, the level lags a ramp (calibration.normalise).
    trend_horizon: float | None = Field(None, gt=0)
    # The slope learns only once the level has a horizon of history (normalise.slope_rate):
    # during the count-based start a slope turns steps and start-up transients into ramps.
    trend_after_start: bool = False
    # Seasonal profiles in the forecast (Holt-Winters' additive seasons; two of them, a day
    # and a week, are Taylor's double-seasonal method): each period is cut into bins of
    # season_bin_s by timestamp; each bin learns how far readings there sit from the level,
    # over its last season_horizon visits (seasons.season_share). Empty: no profile.
    season_periods_s: list[float] = Field(default_factory=list, max_length=3)
    season_bin_s: float = Field(1800.0, gt=0)
    season_horizon: float = Field(5.0, gt=1)

    @model_validator(mode="after")
    def _seasons(self) -> DetectorConfig:
        periods = self.season_periods_s
        if periods != sorted(periods) or len(set(periods)) != len(periods):
            raise ValueError("season_periods_s: list each period once, shortest first")
        if any(p < 2 * self.season_bin_s or p / self.season_bin_s > 10_080 for p in periods):
            raise ValueError("season_periods_s: each period must hold 2 to 10080 bins")
        return self

    def season_bins(self) -> list[int]:
        """Bins per period, shortest period first."""
        return [math.ceil(p / self.season_bin_s) for p in self.season_periods_s]

    calibration_horizon: int = Field(300, gt=1)  # error statistics behind the score
    # Own readings over which the group's calibration prior fades out of a new stream's
    # score (detect/calibration.py prior_weight): past burn-in + this many readings, a
    # stream's score does not depend on which other streams share its group. Shorter makes
    # the first scored readings lean on too few of the stream's own errors.
    calibration_fade: int = Field(120, ge=0)
    # Also score each reading's distance from the normaliser's forecast (level, plus slope
    # with trend_horizon), per feature, calibrated like the errors but over the inputs' own
    # scale horizon. For univariate series: the autoencoder has no cross-feature structure
    # to check there, and a spike it reconstructs is still a spike (docs/quality.md).
    score_inputs: bool = False
    # Two-piece scale: readings below the forecast get their own std, learnt from them
    # alone. For skewed series (CPU, latency, counts spike up, seldom drop): one shared
    # std, inflated by the spikes, hides a drop the series never makes (docs/quality.md).
    split_scale: bool = False
    # Score as "how rare": -log10 of the tail probability of the calibrated score against
    # the stream's own distribution of it over this many readings (detect/likelihood.py);
    # the alert thresholds are then in those units (5: once in 100,000 readings). None:
    # the calibrated score itself (a robust z).
    score_tail_horizon: int | None = Field(None, gt=1)
    score_tail_short: int = Field(1, ge=1)  # readings in the score's short-window mean
    # The tail's shape (detect/likelihood.py): "gaussian", or "power", a tail that falls as
    # a power of the score (a Laplace on log(1 + score)), as bursty streams' scores do.
    score_tail_shape: Literal["gaussian", "power"] = "gaussian"
    stuck_readings: int = Field(15, gt=1)  # a feature unchanged or missing this long = stuck
    clip_sigma: float = Field(20.0, gt=0)  # normalised inputs are clipped to ±clip_sigma


class AlertConfig(_Section):
    enter: float = Field(7.0, gt=0)  # calibrated score that starts an alert
    exit: float = Field(3.0, ge=0)  # score below which an alert starts resolving
    critical: float = Field(12.0, gt=0)  # score at which severity becomes critical
    min_duration: int = Field(3, gt=0)  # readings >= enter before an alert opens
    # A reading at or above `critical` opens an alert at once, without the `min_duration`
    # wait. The wait is there so that noise around `enter` does not page; a reading past
    # `critical` is not noise around `enter`, and waiting only makes the alert late (NAB dev
    # pooled 57.0 -> 59.9, docs/quality.md). false: every alert waits `min_duration`.
    open_on_critical: bool = True
    exit_duration: int = Field(5, gt=0)  # readings < exit before it resolves
    cooldown: int = Field(30, ge=0)  # readings after a resolve in which none opens
    update_ratio: float = Field(1.5, gt=1.0)  # re-announce when the peak grows by this factor
    # Which readings may not teach the stream's normal (normaliser and calibration):
    # pending: inside an open or pending alert and any reading at or above `enter`;
    # open: only inside an open alert; off: the normaliser learns from every reading (the
    # calibration still skips open alerts); features: as pending, but only the sensors that
    # were off (3 std from their forecast) when the episode began keep their frozen normal;
    # the others go on learning, so a slow drift of a sensor the fault does not touch is
    # still followed. See detect/alerts.py `holding` and `held_features`.
    hold_normal: Literal["pending", "features", "open", "off"] = "pending"
    # An alert open this long ends in a `rebaseline` event and the stream re-learns its
    # normal from then on; null: never (the alert stays open while the readings stay off).
    rebaseline_after_s: float | None = Field(None, gt=0)
    # An alert also ends in `rebaseline` once it has been open this many times as long as
    # the history its normal was learnt from (the stream's first reading, or its last
    # rebaseline, to the alert's opening). A normal learnt from ten minutes of a pump is
    # no evidence that the next hour is abnormal: once the stream has been in the new state
    # as long as in the old, the old one is no better a normal than the new. null: off;
    # rebaseline_after_s still caps long histories.
    rebaseline_after_history: float | None = Field(None, gt=0)
    # An open alert also resolves once its score stays below this share of the episode's
    # typical score (detect/alerts.py `exit_limit`): the readings came most of the way back.
    # null: only `exit` ends an alert.
    exit_share: float | None = Field(None, gt=0, lt=1)
    # What an open alert's exit is judged on. newest: the lower of the window's score and
    # the newest reading's own (its reconstruction error and input deviation alone, against
    # the same calibration); window: the window's score alone. The window's score stays
    # high for `window_len` readings after a fault's last reading, as the window still
    # holds it, so an alert ended that many readings late; the newest reading says at once
    # that the readings are back, and a fault whose readings stay off keeps both high
    # (detect/step.py `newest_score`; docs/quality.md, "Changes").
    exit_on: Literal["newest", "window"] = "newest"
    # What counts towards opening (the `min_duration` readings at or above `enter`, and a
    # reading at or above `critical` with `open_on_critical`). window: the window's score.
    # newest: the reading's own score, the lower of the window's and the newest reading's
    # (as `exit_on: newest`). Why: the window's score stays high for up to `window_len`
    # readings after a single odd reading, so one blip met `min_duration` on its own, which
    # is what the wait is there to stop (NAB: a CPU metric at 0.07 paging 3 readings after
    # one reading of 0.2, the reading itself back to normal; docs/quality.md, "Changes").
    open_on: Literal["window", "newest"] = "window"
    # The score from which a reading no longer teaches the stream's normal (with
    # `hold_normal` pending or features); null: `enter`. Learning from a fault's reading
    # costs more than skipping a normal one: a slow onset that scores between this and
    # `enter` is otherwise learnt as it builds, and never reaches `enter` (holding.holding).
    hold_from: float | None = Field(None, gt=0)
    # With `hold_normal: features`: an open alert does not count towards resolving while a
    # sensor it holds is still 3 std or more off its frozen normal (holding.still_off): the
    # score can fall while the readings stay off, as the LSTM state adapts.
    exit_when_back: bool = False

    def hold_score(self) -> float:
        """The score from which a reading is held back from the normal (``hold_from``)."""
        return self.enter if self.hold_from is None else self.hold_from

    @model_validator(mode="after")
    def _ordered(self) -> AlertConfig:
        if self.exit > self.enter:
            raise ValueError("exit: must be <= alerts.enter")
        if self.critical < self.enter:
            raise ValueError("critical: must be >= alerts.enter")
        if self.hold_from is not None and self.hold_from > self.enter:
            raise ValueError("hold_from: must be <= alerts.enter")
        return self
