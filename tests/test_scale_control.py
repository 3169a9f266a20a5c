"""The operator's worker count: ``streamlstm scale`` writes it to the checkpoint storage,
the supervisor's ``ScaleWatch`` reads it (a new request once, a cleared one back to the
config's ``ray.workers``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamlstm.adapters.ops.scale_control import ScaleControl
from streamlstm.adapters.ray.supervise import ScaleWatch
from streamlstm.cli import main
from streamlstm.config import load


def config_in(tmp_path: Path):
    return load(None, {"checkpoint.dir": str(tmp_path / "snap"), "ray.workers": 2}, environ={})


def test_the_command_writes_the_request_and_the_supervisor_sees_it_once(
    tmp_path: Path, capsys
) -> None:
    cfg = config_in(tmp_path)
    watch = ScaleWatch(cfg)
    assert watch.wanted() == 2 and not watch.changed()
    args = ["scale", "--set", f"checkpoint.dir={tmp_path / 'snap'}", "--workers", "3"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["workers"] == 3 and printed["by"] and printed["at"] > 0
    assert Path(printed["file"]).exists()
    assert watch.changed() and watch.wanted() == 3
    assert not watch.changed()  # the same request is acted on once
    assert ScaleWatch(cfg).wanted() == 3  # a restarted supervisor keeps the operator's count
    assert main(["scale", "--set", f"checkpoint.dir={tmp_path / 'snap'}", "--clear"]) == 0
    assert watch.changed() and watch.wanted() == 2


def test_zero_workers_is_refused(tmp_path: Path, capsys) -> None:
    args = ["scale", "--set", f"checkpoint.dir={tmp_path}", "--workers", "0"]
    assert main(args) == 2
    assert "--workers must be >= 1" in capsys.readouterr().out
    with pytest.raises(ValueError, match="must be >= 1"):
        ScaleControl(str(tmp_path), "g").request(0, "me")
    assert ScaleControl(str(tmp_path), "g").requested() is None


def test_a_request_of_another_consumer_group_is_not_ours(tmp_path: Path) -> None:
    ScaleControl(str(tmp_path), "other").request(5, "me")
    assert ScaleControl(str(tmp_path), "g").requested() is None
    (tmp_path / ".streamlstm" / "scale-g.json").write_text("{half")  # torn: ignored
    assert ScaleControl(str(tmp_path), "g").requested() is None
