"""Torch threads sized to the process's CPU share (``streamlstm.threads``)."""

from __future__ import annotations

import os

import pytest
import torch

from streamlstm.threads import available_cpus, set_threads


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_available_cpus_is_the_affinity_mask_or_less() -> None:
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


def test_a_request_or_a_share_sets_the_pool_never_above_the_cpus() -> None:
    assert set_threads(1) == 1 and torch.get_num_threads() == 1
    assert set_threads(share=0.5) == 1  # a Ray actor with half a CPU still gets a thread
    assert set_threads(10**6) == available_cpus() == torch.get_num_threads()
    torch.set_num_threads(1)
    assert set_threads() == available_cpus() == torch.get_num_threads()
