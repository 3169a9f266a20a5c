"""``streamlstm snapshots skip``: an operator moves a partition's snapshot position past an
offset; a restarted worker starts there with the state it had, and the history says who did
it, when, from where to where. A real snapshot store and worker loop; the CLI's own main."""

from __future__ import annotations

import json
from pathlib import Path

from streamlstm.adapters.ops.storage import SnapshotStore
from streamlstm.cli import main
from streamlstm.stream.ledger import LEDGER_BLOB, Ledger
from tests.test_worker_loop import _records, _run, _worker

TP = ("icu", 0)


def _cli(tmp: Path, *args: str) -> int:
    common = ["--set", f"checkpoint.dir={tmp}", "--topic", "icu", "--partition", "0"]
    return main(["snapshots", args[0], *common, *args[1:]])


def test_skip_moves_the_position_keeps_the_state_and_is_recorded(tmp_path: Path, capsys) -> None:
    records = _records()
    w = _worker(tmp_path, records, [])
    w.assign([TP])
    _run(w, 3, 16)
    w.checkpoint()
    blobs_before, position = SnapshotStore(str(tmp_path)).load(TP)
    assert position == 48
    generation_before = SnapshotStore(str(tmp_path)).generation(TP)

    assert _cli(tmp_path, "skip", "--offset", "59", "--reason", "crashes the decoder") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["from_offset"] == 48 and printed["to_offset"] == 60

    store = SnapshotStore(str(tmp_path))
    blobs_after, position = store.load(TP)
    assert position == 60  # new position, same state; the ledger counts the skipped records
    assert blobs_after.keys() == blobs_before.keys() and blobs_after["g"] == blobs_before["g"]
    assert store.generation(TP) > generation_before  # any worker still on it is fenced
    (entry,) = store.history(TP)
    assert entry["action"] == "skip" and entry["skipped_records"] == 12
    assert entry["reason"] == "crashes the decoder" and entry["by"]

    restarted = _worker(tmp_path, records, [])
    assert restarted.assign([TP]) == {TP: 60}
    _run(restarted, 10, 16)
    counted = restarted.totals().outcomes()
    assert counted.records == len(records) - 12 and counted.skipped == 12

    # Backwards is refused and leaves nothing behind; the history prints as JSON lines.
    assert _cli(tmp_path, "skip", "--offset", "10") == 2
    assert SnapshotStore(str(tmp_path)).load(TP)[1] == 60
    capsys.readouterr()
    assert _cli(tmp_path, "history") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["to_offset"] for line in lines] == [60]


def test_skip_on_a_partition_without_a_snapshot_starts_it_cold_there(tmp_path: Path) -> None:
    assert _cli(tmp_path, "skip", "--offset", "99") == 0
    store = SnapshotStore(str(tmp_path))
    blobs, position = store.load(TP)
    assert position == 100 and list(blobs) == [LEDGER_BLOB]  # no state; 100 records skipped
    assert Ledger.from_blob(blobs[LEDGER_BLOB]).outcomes().skipped == 100
    assert store.history(TP)[0]["had_snapshot"] is False
    w = _worker(tmp_path, _records(), [])
    assert w.assign([TP]) == {TP: 100}
