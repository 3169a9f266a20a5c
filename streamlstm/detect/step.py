"""The batched tensor step of ``Detector``: one reading for each of B gathered rows.

Normalise -> LSTM step -> window reconstruction -> per-feature error -> calibrated score,
then learn: the reading is scored against the stream's normal from before it and teaches
that normal (normaliser, calibration) only where ``holding.holding`` allows. Pure tensors in,
tensors out; ``Detector`` gathers and scatters the rows around it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from streamlstm.config import AlertConfig, DetectorConfig
from streamlstm.detect import holding
from streamlstm.detect.alerts import PHASE_OPEN
from streamlstm.detect.calibration import (
    calibrated_score,
    calibration_fade,
    calibration_state,
    feature_z,
    learn_calibration,
    learning_own,
    score_statistics,
    store_calibration_state,
)
from streamlstm.detect.columns import Col
from streamlstm.detect.likelihood import learn_tail, tail_score
from streamlstm.detect.model import LSTMAutoencoder, reading_error, window_error
from streamlstm.detect.normalise import forecast, learn, learn_quantum, stuck_features


@dataclass(frozen=True)
class TensorStep:
    cfg: DetectorConfig
    net: LSTMAutoencoder
    cal_horizons: Tensor  # (K,) the calibration's horizon per statistic
    alert_cfg: AlertConfig  # hold_normal, hold_from: which readings may teach the normal
    cal_prior: tuple[Tensor, Tensor]  # the group's (cal_mu, cal_dev) (K,): seeds new streams

    def __call__(
        self,
        s: dict[str, Tensor],
        x_raw: Tensor,
        gap: Tensor,
        alert_phase: Tensor,
        phase: Tensor | None = None,
        share: Tensor | None = None,
        rate: Tensor | None = None,
        any_gap: bool | None = None,
        any_open: bool | None = None,
    ) -> dict[str, Tensor]:
        """The batched tensor step on gathered rows; updates ``s`` in place (B rows).

        x_raw (B, F) with NaN for missing; gap (B,) bool; alert_phase (B,) int8
        (``alerts.alert_phase``); phase (B, P) long, each reading's bin in every season, share (B,)
        the share of a bin it stands for (with seasons only); rate (B,) each reading's weight
        in the normaliser's level (with ``norm_horizon_s`` only, ``normalise.level_rate``).
        returns score, own_score (the reading's own: ``wants_own_score``), rms_err, warming,
        held, held_off (B,) (a sensor the alert holds still off: ``holding.still_off``); z,
        feat_err, stuck (B, F); and what an alert says of how far each reading is off:
        expected (B, F), the forecast it was scored against (NaN in a feature's first
        readings, when there is none yet), and scale (B, F), the std its distance is
        measured in.

        Score first, learn after: the reading is scored against the normal from before it,
        then teaches the normaliser and the calibration only if ``holding.holding`` allows.
        The LSTM state and the window advance on every reading. ``any_gap``: whether
        ``gap`` holds a True, when the caller knows it without asking the device;
        ``any_open`` the same for ``alert_phase`` holding an open alert (with ``exit_on:
        newest`` alone, ``own_score`` is only worked out then).
        """
        cfg = self.cfg
        with torch.no_grad():
            if bool(gap.any()) if any_gap is None else any_gap:
                restart(s, gap)
            m = torch.isfinite(x_raw).float()
            x = torch.nan_to_num(x_raw, nan=0.0)
            z, seen_norm = forecast(x, m, s, cfg, phase)
            s[Col.QUANTUM] = learn_quantum(x, m, s[Col.LAST_X], s[Col.QUANTUM])
            stuck, s[Col.LAST_X], s[Col.STILL], s[Col.MAX_RUN] = stuck_features(
                x, m, s[Col.LAST_X], s[Col.STILL], s[Col.MAX_RUN], cfg.stuck_readings
            )
            recon, s[Col.H], s[Col.C] = self.net.step(z, m, s[Col.H], s[Col.C])
            s[Col.WIN_X] = torch.cat([s[Col.WIN_X][:, 1:], z.unsqueeze(1)], dim=1)
            s[Col.WIN_M] = torch.cat([s[Col.WIN_M][:, 1:], m.unsqueeze(1).to(torch.uint8)], dim=1)
            win_m = s[Col.WIN_M].float()
            feat_err = window_error(recon, s[Col.WIN_X], win_m)  # (B, F)
            # (B, K): errors per feature and in total, then input deviations if scored
            stats, seen = score_statistics(feat_err, win_m, z, m, cfg.score_inputs)
            cal = calibration_state(s)
            score, cal_z = calibrated_score(stats, seen, cal, self.cal_prior, calibration_fade(cfg))
            raw_score = score
            if cfg.score_tail_horizon:
                score, s[Col.TAIL_SHORT] = tail_score(
                    raw_score, s, cfg.score_tail_short, cfg.score_tail_shape
                )
            if any_open is None:
                any_open = bool((alert_phase == PHASE_OPEN).any())
            own_score = score  # (B,) the reading's own (alerts.exit_on / open_on: newest)
            if self.wants_own_score(any_open):
                own_score = torch.minimum(score, self.newest_score(recon, z, m, cal, s))
            warming = s[Col.SINCE_RESET] + 1.0 <= cfg.warmup_readings
            # Nothing is held back while the group prior still scores the stream, not even
            # inside an alert: what is held is decided by the score, so holding would let the
            # group shape the stream's own normal and calibration (calibration.learning_own).
            own = learning_own(cal, cfg)
            held, cal_held = holding.holding(
                self.alert_cfg.hold_normal,
                alert_phase,
                score,
                stuck.any(dim=1),
                warming | own,
                self.alert_cfg.hold_score(),
            )
            # On bools ``a > b`` is ``a & ~b`` in one operation instead of two (each costs
            # a few microseconds per sub-step whatever the batch size).
            cal_held = cal_held > own
            policy, held_set = self.alert_cfg.hold_normal, s.get(Col.HOLD_SET)
            held_f, held_set = holding.held_features(policy, held, z, stuck, held_set)  # (B, F)
            held_off = held & False  # (B,) a held sensor still off: no exit yet
            if held_set is not None:
                s[Col.HOLD_SET] = held_set
                if any_open and self.alert_cfg.exit_when_back:
                    held_off = holding.still_off(held_set, z, m)
            learn(x, torch.where(held_f, 0.0, m), s, cfg, seen_norm, share, rate)  # m * ~held_f
            cal_learns = (s[Col.SINCE_RESET] >= cfg.burn_in_readings) > cal_held
            new = learn_calibration(stats, seen, cal, cal_learns, self.cal_horizons)
            store_calibration_state(s, new)
            if cfg.score_tail_horizon:
                # as the calibration: from the burn-in on, so the distribution is the stream's
                # own by the end of the warm-up, when the first alert may open
                tail = learn_tail(
                    raw_score, s, cal_learns, cfg.score_tail_horizon, cfg.score_tail_shape
                )
                s.update(tail)
            s[Col.SINCE_RESET] = s[Col.SINCE_RESET] + 1.0
        return {
            "score": score,
            "own_score": own_score,
            "held_off": held_off,
            "rms_err": stats[:, z.shape[1]],
            "warming": warming,
            "held": held,
            "z": feature_z(cal_z, z.shape[1]),
            "feat_err": feat_err,
            "stuck": stuck,
            "expected": torch.where(seen_norm.early, torch.nan, seen_norm.forecast),
            "scale": seen_norm.std,
        }

    def wants_own_score(self, any_open: bool) -> bool:
        """Whether this step works out ``own_score``: always with ``alerts.open_on: newest``
        (every reading may count towards an opening), with ``exit_on: newest`` only while
        an alert is open (only an open alert's exit reads it). Otherwise it is ``score``."""
        cfg = self.alert_cfg
        return cfg.open_on == "newest" or (any_open and cfg.exit_on == "newest")

    def newest_score(
        self, recon: Tensor, z: Tensor, m: Tensor, cal: dict[str, Tensor], s: dict[str, Tensor]
    ) -> Tensor:
        """(B,) the newest reading's own score (``alerts.exit_on`` / ``open_on: newest``):
        the window's score with the error taken from that reading alone
        (``reading_error``), through the same statistics, calibration and tail transform (a
        short window of one).

        Why: the window's score stays high for ``window_len`` readings after an odd reading,
        while the window still holds it: an alert ended that many readings late, and one odd
        reading could meet ``min_duration`` alone. A single reading's error is noisier than a
        window's mean, so on normal data it reads high more often: taken as the lower of the
        two it can only let an exit come sooner, or an opening later, never open or hold
        anything. recon (B, W, F); z, m (B, F); cal and s as before this reading learns.
        """
        cfg = self.cfg
        err = reading_error(recon, z, m)  # (B, F)
        stats, seen = score_statistics(err, m.unsqueeze(1), z, m, cfg.score_inputs)
        newest, _ = calibrated_score(stats, seen, cal, self.cal_prior, calibration_fade(cfg))
        if cfg.score_tail_horizon:
            newest, _ = tail_score(newest, s, 1, cfg.score_tail_shape)
        return newest


def restart(s: dict[str, Tensor], rows: Tensor) -> None:
    """Rows (B,) bool start afresh: LSTM state, window and warm-up. After a gap the slope
    of the level is stale too: the stream restarts flat."""
    keep = (~rows).float()
    for name in (Col.H, Col.C, Col.SINCE_RESET, Col.TREND):
        if name in s:
            s[name] = s[name] * keep.view(-1, *([1] * (s[name].dim() - 1)))
    s[Col.WIN_X] = s[Col.WIN_X] * keep.view(-1, 1, 1)
    s[Col.WIN_M] = s[Col.WIN_M] * keep.view(-1, 1, 1).to(s[Col.WIN_M].dtype)
