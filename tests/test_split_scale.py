"""The two-piece scale (``detector.split_scale``) on plain tensors: a series that spikes up
often measures a drop against its drops, symmetric noise gets the same std on both sides,
and a row without a learnt downside (new, or from an older snapshot) starts from the
shared std."""

from __future__ import annotations

import math
import random

import pytest
import torch

from streamlstm.config import DetectorConfig
from tests.helpers import normalise


def _state(split: bool) -> dict[str, torch.Tensor]:
    state = {k: torch.zeros(1, 1) for k in ("mean", "var", "var_ref", "n_obs")}
    if split:
        state["var_dn"] = torch.full((1, 1), float("nan"))
    return state


def _feed(values: list[float], state: dict[str, torch.Tensor], det: DetectorConfig) -> list[float]:
    m = torch.ones(1, 1)
    return [float(normalise(torch.tensor([[v]]), m, state, det)) for v in values]


def _spiky(n: int, seed: int = 0) -> list[float]:
    """CPU-like: 30 ± 1, and every 20th reading a spike to about 70."""
    rng = random.Random(seed)
    return [30.0 + rng.gauss(0, 1) + (40.0 if t % 20 == 10 else 0.0) for t in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_drop_is_measured_against_drops_and_routine_spikes_shrink(seed: int) -> None:
    history, drop, spike = _spiky(2000, seed), [25.0], [36.0]
    z = {}
    for split in (False, True):
        det = DetectorConfig(split_scale=split, norm_scale_horizon=1000)
        state = _state(split)
        _feed(history, state, det)
        snapshot = {k: v.clone() for k, v in state.items()}
        z[split] = (_feed(drop, state, det)[0], _feed(spike, snapshot, det)[0])
    (drop_one, spike_one), (drop_two, spike_two) = z[False], z[True]
    # the shared std carries the spikes' share, the downside one only the noise below
    assert drop_two < 1.2 * drop_one < 0  # a 5-unit drop: more std below than with one scale
    assert 0 < spike_two < 0.9 * spike_one  # and a routine-sized spike counts for less


def test_symmetric_noise_learns_the_same_std_on_both_sides() -> None:
    rng = random.Random(1)
    values = [rng.gauss(5.0, 2.0) for _ in range(4000)]
    det = DetectorConfig(split_scale=True, norm_scale_horizon=500)
    state = _state(True)
    _feed(values, state, det)
    up, down = math.sqrt(float(state["var"])), math.sqrt(float(state["var_dn"]))
    assert abs(up - down) < 0.2 * up
    assert 1.5 < up < 2.5 and 1.5 < down < 2.5


def test_an_unlearnt_downside_starts_from_the_shared_std() -> None:
    """A row restored from a snapshot taken without the split (var_dn NaN) scores its next
    reading exactly like the shared-std normaliser, then learns its own downside."""
    rng = random.Random(2)
    history = [rng.gauss(0.0, 1.0) for _ in range(200)]
    plain_det, split_det = DetectorConfig(), DetectorConfig(split_scale=True)
    plain = _state(False)
    _feed(history, plain, plain_det)
    restored = {k: v.clone() for k, v in plain.items()}
    restored["var_dn"] = torch.full((1, 1), float("nan"))  # the column's default
    low = float(plain["mean"]) - 2.5
    assert _feed([low], restored, split_det) == _feed([low], plain, plain_det)
    assert torch.isfinite(restored["var_dn"]).all()
