"""Third-party lines a user cannot act on are configured away (issue 18 item 12); our own
loggers, and every line with ``-v``, still show."""

from __future__ import annotations

import logging

import pytest

from streamlstm.adapters.ops.logs import QUIET, quiet_third_party


@pytest.fixture
def restore_levels():
    names = [*QUIET, "streamlstm.probe"]
    before = {n: logging.getLogger(n).level for n in names}
    yield
    for name, level in before.items():
        logging.getLogger(name).setLevel(level)


def test_noise_is_dropped_and_our_warnings_and_their_errors_kept(
    restore_levels, caplog: pytest.LogCaptureFixture
) -> None:
    quiet_third_party(False)
    with caplog.at_level(logging.INFO):  # root at INFO, as the command line sets it
        logging.getLogger("kafka.net.selector").warning("Task ran for 0.2s: blocking the loop")
        logging.getLogger("kafka.producer.kafka").info("connected")
        logging.getLogger("matplotlib.font_manager").warning("building the font cache")
        logging.getLogger("ray._private.authentication.authentication_token_setup").warning(
            "Token authentication is enabled"
        )
        logging.getLogger("kafka.net.selector").error("a real failure")
        logging.getLogger("streamlstm.probe").warning("ours")
    assert [r.getMessage() for r in caplog.records] == ["a real failure", "ours"]


def test_verbose_shows_everything(restore_levels, caplog: pytest.LogCaptureFixture) -> None:
    quiet_third_party(True)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("kafka.net.selector").warning("blocking the loop")
        logging.getLogger("kafka").debug("connect")
    assert [r.getMessage() for r in caplog.records] == ["blocking the loop", "connect"]


def test_a_ray_worker_process_reads_verbose_from_its_environment(
    restore_levels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMLSTM_VERBOSE_LOGS", "1")
    quiet_third_party()  # as Ray's worker_process_setup_hook calls it: no arguments
    assert logging.getLogger("kafka.net.selector").level == logging.DEBUG
    monkeypatch.delenv("STREAMLSTM_VERBOSE_LOGS")
    quiet_third_party()
    assert logging.getLogger("kafka.net.selector").level == logging.ERROR
