"""The flight recorder's file (adapters/ops/flight.py) outlives a process that dies with
``os._exit`` mid-poll, and the next process counts that poll once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamlstm.adapters.ops.flight import LEDGER_AT, FlightFile, flight_path, resume_flight
from streamlstm.records import RawRecord
from streamlstm.stream.poison import Failure, PoisonLedger, Poll

pytestmark = [pytest.mark.chaos]  # a real process death; fast, so CI runs it too

DIE_MID_POLL = """
import os, sys
from pathlib import Path
import pytest

from streamlstm.adapters.ops.flight import FlightFile
from streamlstm.records import RawRecord
from streamlstm.stream.poison import Poll
flight = FlightFile.open(Path(sys.argv[1]))
flight.took(Poll.of([RawRecord("icu", 0, 5, b"a", b"{}")]))  # a poll that lands
flight.lap("decode")
flight.landed()
flight.took(Poll.of([RawRecord("icu", 0, 7 + k, b"a", b"{}") for k in range(int(sys.argv[2]))]))
flight.lap("decode")
os._exit(77)  # no close, no flush: what a segfault leaves
"""


def _die_mid_poll(path: Path, records: int) -> None:
    done = subprocess.run([sys.executable, "-c", DIE_MID_POLL, str(path), str(records)])
    assert done.returncode == 77


def test_a_poll_a_dead_process_left_counts_once_and_the_ledger_outlives_processes(
    tmp_path: Path,
) -> None:
    path = flight_path(str(tmp_path), "group/a b", 0)
    assert path.parent == tmp_path / "_flight" and " " not in path.name
    _die_mid_poll(path, 1)
    left = FlightFile.open(path).left()
    assert left.poll == Poll(1, {("icu", 0): (7, 7)}) and left.stage == "decode"

    ledger = PoisonLedger(3)
    flight = resume_flight(path, ledger, "worker 0")  # counted: it died in the group stage
    assert ledger.failures == {(("icu", 0), 7): Failure("group", 1)}
    flight.close()
    again = PoisonLedger(3)
    resume_flight(path, again, "worker 0").close()  # no new death: nothing more counted
    assert again.failures == ledger.failures

    _die_mid_poll(path, 1)  # a second death on the same record
    third = PoisonLedger(3)
    resume_flight(path, third, "worker 0").close()
    assert third.failures == {(("icu", 0), 7): Failure("group", 2)}


def test_a_poll_of_several_records_makes_its_partitions_read_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    _die_mid_poll(path, 5)
    ledger = PoisonLedger(3)
    resume_flight(path, ledger, "worker 0").close()
    assert ledger.one_by_one == {("icu", 0): 12} and ledger.poll_size(100) == 1


def test_a_poll_a_live_process_is_in_is_not_a_death(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    writer = FlightFile.open(path)
    writer.pid = os.getppid()  # as if another live process (this one's parent) wrote it
    writer.took(Poll.of([RawRecord("icu", 0, 7, b"a", b"{}")]))
    ledger = PoisonLedger(3)
    resume_flight(path, ledger, "worker 0").close()
    assert ledger.failures == {}


def test_a_torn_ledger_reads_as_none_and_a_landed_poll_as_nothing(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    flight = FlightFile.open(path)
    flight.took(Poll.of([RawRecord("icu", 1, 3, b"a", b"{}"), RawRecord("icu", 1, 4, b"a", b"{}")]))
    flight.lap("step")
    flight.landed()
    flight.keep({"one_by_one": [["icu", 1, 5]], "failures": []})
    assert flight.left().poll is None and flight.left().ledger == {
        "one_by_one": [["icu", 1, 5]],
        "failures": [],
    }
    os.pwrite(flight.fd, b"X", LEDGER_AT + 20)  # a byte of the ledger's JSON changed
    assert flight.left().ledger is None
    flight.close()
