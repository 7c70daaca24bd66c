"""After a stop signal the worker exits within its grace, whatever the clean stop waits on."""

from __future__ import annotations

import threading

from trackflow.streams.faust_worker import StopDeadline


def test_the_deadline_exits_once_after_the_grace() -> None:
    exited: list[int] = []
    done = threading.Event()

    def fake_exit(code: int) -> None:
        exited.append(code)
        done.set()

    deadline = StopDeadline(0.05, exit=fake_exit)
    deadline.arm()
    deadline.arm()  # a second signal does not restart the countdown
    assert done.wait(2), "the deadline must fire"
    assert exited == [0]


def test_a_cancelled_deadline_does_not_exit() -> None:
    exited: list[int] = []
    deadline = StopDeadline(0.05, exit=exited.append)
    deadline.arm()
    deadline.cancel()
    threading.Event().wait(0.2)
    assert exited == []
