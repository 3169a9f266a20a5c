"""Per-stream calibration independent of the group (issue 17): the group prior only seeds a
new stream's score and fades to nothing by the end of its warm-up, so which other streams
share a model group (and so what prior training pooled) cannot change a stream's alerts
after its warm-up. Plain tensors first, then the real detector with two priors."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from streamlstm import config as config_mod
from streamlstm.detect.calibration import (
    CAL_PRIOR,
    calibrated_score,
    learn_calibration,
    prior_weight,
)
from streamlstm.detect.columns import Col
from streamlstm.detect.detector import Detector
from streamlstm.records import Reading
from tests.helpers import series, tiny_config, tiny_model

FADE = 20
TIGHT = (torch.tensor([0.2, 0.3]), torch.tensor([0.01, 0.02]))  # a group of quiet streams
LOOSE = (torch.tensor([3.0, 4.0]), torch.tensor([2.0, 2.5]))  # a group of noisy streams


def _scores(prior: tuple[torch.Tensor, torch.Tensor], stats: torch.Tensor) -> list[float]:
    """Score then learn each (1, K) reading of ``stats`` (T, 1, K), the row starting at the
    prior as a new stream's row does (``Detector.init_rows``)."""
    state = {
        Col.CAL_MU: prior[0].unsqueeze(0).clone(),
        Col.CAL_DEV: prior[1].unsqueeze(0).clone(),
        Col.CAL_N: torch.zeros(1),
    }
    seen = torch.ones(1, stats.shape[-1])
    out = []
    for t in range(stats.shape[0]):
        score, _ = calibrated_score(stats[t], seen, state, prior, FADE)
        out.append(float(score))
        state = learn_calibration(stats[t], seen, state, torch.tensor([True]), 50.0)
    return out


def test_prior_weight_starts_as_pseudo_readings_and_ends_at_exactly_zero() -> None:
    n = torch.tensor([0.0, 1.0, FADE - 1.0, FADE, FADE + 100.0])
    w = prior_weight(n, FADE).squeeze(-1)
    assert float(w[0]) == 1.0
    assert 0.0 < float(w[2]) < float(w[1]) < CAL_PRIOR / (CAL_PRIOR + 1.0)
    assert w[3:].tolist() == [0.0, 0.0]
    assert prior_weight(n, 0).abs().sum() == 0.0  # no fade: the stream's own statistics only


def test_after_the_fade_the_score_does_not_depend_on_the_prior() -> None:
    gen = torch.Generator().manual_seed(3)
    stats = (0.8 + 0.3 * torch.randn(200, 1, 2, generator=gen)).abs()
    stats[150] += 5.0  # an anomaly after the fade
    tight, loose = _scores(TIGHT, stats), _scores(LOOSE, stats)
    # While the prior still counts, the two groups score the stream differently ...
    assert abs(tight[5] - loose[5]) > 1.0
    # ... and from FADE own readings on, identically: the prior left no trace in the state.
    assert tight[FADE:] == loose[FADE:]
    assert tight[150] > 5.0


def _detector(cal_mu: float, cal_dev: float) -> Detector:
    raw = tiny_config(enter=9.0).model_dump()  # the untrained tiny model errs near 6 at first
    raw["detector"]["calibration_fade"] = FADE
    cfg = config_mod.from_dict(raw)
    model = tiny_model(seed=4)
    prior = dataclasses.replace(model.prior, cal_mu=(cal_mu,) * 4, cal_dev=(cal_dev,) * 4)
    return Detector(dataclasses.replace(model, prior=prior), cfg.detector, cfg.alerts)


def _with_step(readings: list[Reading], at: int, by: float) -> list[Reading]:
    """The readings with every feature moved by ``by`` from reading ``at`` on."""
    return [
        r if i < at else dataclasses.replace(r, values=tuple(v + by for v in r.values))
        for i, r in enumerate(readings)
    ]


def test_a_streams_alerts_after_the_fade_do_not_depend_on_its_groups_prior() -> None:
    """The same stream, model weights and readings under the priors two different groups
    would pool: identical scores and alert events once burn-in + fade readings have taught
    the calibration. (The prior can still reach past the fade through what it holds back:
    a reading inside an alert during the fade does not teach. No alert opens in this one.)"""
    readings = _with_step(series("bed-7", 160, seed=2), at=120, by=40.0)
    runs = []
    for cal_mu, cal_dev in ((1.0, 0.2), (2.5, 0.8)):
        det = _detector(cal_mu, cal_dev)
        table = det.new_table()
        scored = [det.score(table, [r]) for r in readings]
        runs.append(
            (
                np.array([s.score[0] for s in scored]),
                [(e.event, e.alert_id, e.source[2]) for s in scored for e in s.events],
            )
        )
    (score_a, alerts_a), (score_b, alerts_b) = runs
    own = tiny_config().detector.burn_in_readings + FADE  # from here on: own readings only
    assert not np.array_equal(score_a[:own], score_b[:own])  # the seed differs ...
    np.testing.assert_array_equal(score_a[own:], score_b[own:])  # ... then it is gone
    assert alerts_a == alerts_b
    assert next(offset for event, _, offset in alerts_a if event == "open") >= 120
