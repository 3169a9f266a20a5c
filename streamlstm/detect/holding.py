"""Which readings may teach a stream's normal (``AlertConfig.hold_normal``): by default none
inside an open or pending alert, nor any that would start one (``holding``);
``held_features`` narrows that to the sensors that are off. Pure: numpy arrays or tensors in,
masks out; the alert phase comes from ``alerts.alert_phase``."""

from __future__ import annotations

import torch
from torch import Tensor

from streamlstm.detect.alerts import PHASE_IDLE, PHASE_OPEN


def holding(policy: str, phase, score, quality, warming, hold_from: float):
    """Which readings must not teach the stream's normal: (normal_held, calibration_held),
    numpy arrays or tensors alike, (B,) bool each. ``phase`` (B,) from ``alert_phase``;
    ``score`` this reading's; ``quality`` a stuck feature; ``warming``; ``hold_from``
    (``AlertConfig.hold_score``) ``enter`` unless configured lower.

    ``pending`` (``AlertConfig.hold_normal``): inside an open alert, while one is pending
    (``min_duration`` not reached yet), and on a reading at or above ``hold_from`` (or with
    a stuck feature). A fault that lasts is then measured against the normal from before it
    for as long as it lasts, instead of becoming the normal within the normaliser's
    horizon. ``open``: only once an alert is open, so short excursions that never open one
    still widen the scale. ``off``: the normaliser learns from every reading. Never while
    warming up: a stream must learn its normal first. The calibration never learns inside
    an open alert. Whether a state is the new normal is the rebaseline policy's call
    (``AlertConfig.rebaseline_after_s``), not a slow leak.
    """
    is_open = phase == PHASE_OPEN
    if policy == "off":
        return is_open & False, is_open
    if policy == "open":
        held = is_open & ~warming
    else:
        held = ((phase != PHASE_IDLE) | (score >= hold_from) | quality) & ~warming
    return held, held | is_open


HOLD_SIGMA = 3.0  # a feature this many std from its forecast is part of what is off


def held_features(
    policy: str, held: Tensor, z: Tensor, stuck: Tensor, held_set: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """Which features of each row must not teach the normaliser: ((B, F) bool, new
    ``held_set``).

    ``held`` (B,) from ``holding``; ``z`` (B, F) each reading's distance from its forecast
    in its own std (``normalise.forecast``); ``stuck`` (B, F) a flat-lined feature;
    ``held_set`` (B, F) uint8, the state column ``Col.HOLD_SET`` (policy ``features`` only).

    ``features``: the sensors a held episode is about are decided once, at its first held
    reading on which any sensor is off (``HOLD_SIGMA`` std or more from its forecast, or
    stuck), and kept in ``held_set`` until the episode ends; only they (and any stuck
    sensor) keep the frozen normal, the others go on learning. Until a sensor is off the
    whole row is held. Why: a plant's water temperature rises slowly through a run;
    frozen through a ten-minute vibration fault, it sits many std from its frozen level
    when the fault ends, and the alert stays open long after. Why once per episode and not
    per reading: a fault that sets in slowly moves its sensors less than 3 std a reading,
    so a per-reading rule let the level (and its slope) learn the fault, and the alert
    ended while it lasted (measured: README, "Detection quality"). Every other policy
    holds whole rows.
    """
    rows = held.unsqueeze(1)  # (B, 1)
    if policy != "features" or held_set is None:
        return rows.expand_as(z), held_set
    off = (z.abs() >= HOLD_SIGMA) | stuck  # (B, F)
    before = held_set.bool()
    latched = torch.where(before.any(1, keepdim=True), before, off) & rows
    whole = rows & ~latched.any(1, keepdim=True)  # nothing off yet: hold the row
    return latched | whole | (rows & stuck), latched.to(torch.uint8)


def still_off(held_set: Tensor, z: Tensor, m: Tensor) -> Tensor:
    """(B,) bool: a sensor a held episode is about (``held_set`` (B, F), from
    ``held_features``) is still ``HOLD_SIGMA`` std or more off its frozen forecast on this
    reading; ``z`` (B, F) as in ``held_features``, ``m`` (B, F) 1 where the sensor read.

    What ``AlertConfig.exit_when_back`` waits for before an alert may resolve: the score
    is the autoencoder's error, and the LSTM state adapts to a state that lasts, so the
    score of a sustained hypotension fell below ``exit`` with the diastolic pressure still
    4.5 std below the frozen normal (synthetic vitals, icu1-bed022)."""
    return (held_set.bool() & (z.abs() >= HOLD_SIGMA) & (m > 0)).any(1)
