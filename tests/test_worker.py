"""ranker.worker: the background process that runs the report's Evidently work beside training."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ranker.worker import Worker, WorkerError, gather


def test_calls_run_in_the_child_in_order_and_errors_come_back() -> None:
    worker = Worker()
    try:
        first = worker.submit(math.factorial, 10)
        pid = worker.submit(os.getpid)
        failing = worker.submit(math.sqrt, -1)
        assert first.result(timeout=60) == 3_628_800
        assert pid.result(timeout=60) not in (os.getpid(), None)
        with pytest.raises(ValueError, match="math domain error"):
            failing.result(timeout=60)
    finally:
        worker.shutdown()


def test_the_child_runs_at_the_idle_priority() -> None:
    if not hasattr(os, "sched_getscheduler"):
        pytest.skip("no scheduling policies on this platform")
    worker = Worker()
    try:
        child = worker.submit(os.getpid).result(timeout=60)
        assert os.sched_getscheduler(child) == os.SCHED_IDLE
    finally:
        worker.shutdown()


def test_a_dead_child_fails_what_is_pending() -> None:
    worker = Worker()
    child = worker.submit(os.getpid).result(timeout=60)
    pending = worker.submit(__import__("time").sleep, 30)
    os.kill(child, 9)
    with pytest.raises(WorkerError, match="ended"):
        pending.result(timeout=60)
    worker.shutdown()
    with pytest.raises(WorkerError, match="shut down"):
        worker.submit(math.factorial, 3)


def test_the_callers_script_is_not_run_again(tmp_path: Path) -> None:
    """A user's script without a `__main__` guard that trains with reports: the worker must not
    execute it a second time (what multiprocessing's spawn start method would do)."""
    script = tmp_path / "user_script.py"
    marker = tmp_path / "runs.txt"
    script.write_text(
        textwrap.dedent(
            f"""
            import math
            from ranker.worker import Worker
            with open({str(marker)!r}, "a") as runs:
                runs.write("run\\n")
            worker = Worker()
            print(worker.submit(math.factorial, 5).result(timeout=60))
            worker.shutdown()
            """
        )
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "120"
    assert marker.read_text() == "run\n"


def test_gather_takes_the_workers_answer_while_it_runs() -> None:
    worker = Worker()
    try:
        call = worker.submit(os.getpid)
        assert gather(call) != os.getpid()  # answered by the child
        assert not call.cancelled()
    finally:
        worker.shutdown()


def test_gather_runs_the_call_here_when_the_worker_gets_no_cpu() -> None:
    """A busy machine starves an idle-priority process; a stopped child stands for it. Waiting
    would last as long as the machine stays busy: the call runs here instead."""
    worker = Worker()
    child = worker.submit(os.getpid).result(timeout=60)
    os.kill(child, signal.SIGSTOP)
    try:
        call = worker.submit(os.getpid)
        assert gather(call) == os.getpid()  # run here
        assert call.cancelled()
        with pytest.raises(ValueError):  # the call's own error is raised, not swallowed
            gather(worker.submit(math.sqrt, -1))
    finally:
        os.kill(child, signal.SIGCONT)
        worker.shutdown()
