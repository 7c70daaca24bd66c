"""The local stack's readiness wait: a process whose command line is unreadable for an instant
(Redis retitling itself) is not taken for one that exited."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trackflow.streams.stack import StackError, processes


def test_a_command_line_that_matches_no_marker_for_an_instant_is_not_an_exit(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    alive = iter([False, True, True])
    monkeypatch.setattr(processes, "pid_alive", lambda pid, marker=(): next(alive))
    answers = iter([False, False, True])
    processes.wait_ready("Redis", lambda: next(answers), os.getpid(), ("redis-server",),
                         [tmp_path / "redis.log"], timeout_s=10.0)


def test_a_process_that_stays_gone_is_an_exit_naming_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(processes, "pid_alive", lambda pid, marker=(): False)
    log = tmp_path / "redis.log"
    log.write_text("bind failed\n")
    with pytest.raises(StackError, match=r"(?s)Redis exited during start-up.*bind failed"):
        processes.wait_ready("Redis", lambda: False, os.getpid(), ("redis-server",), [log],
                             timeout_s=10.0)
