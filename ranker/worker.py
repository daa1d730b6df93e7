"""A background Python process for slow optional work, at the idle CPU priority.

``train`` starts one when it writes reports: the child imports Evidently (about 3 s) and runs the
canvas pages' Evidently computations while the models fit, on the CPU they leave idle, instead of
after them. It is a plain ``python -m ranker.worker`` child that reads calls from its stdin and
writes results to its stdout (pickled), so it never re-runs the caller's own script (what
``multiprocessing``'s spawn does to a script without a ``__main__`` guard) and holds no state: it
is killed once the results are in.

:class:`Worker` is a ``concurrent.futures.Executor``: ``submit`` returns a ``Future`` at once (a
thread feeds the child, which may still be importing), and a call that fails in the child, or a
child that dies, fails its ``Future`` with the reason.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import IO, Any


class WorkerError(RuntimeError):
    """The worker process died or could not be started."""


class Call(Future[Any]):
    """A call submitted to a :class:`Worker`: its Future, plus the call itself, so that
    :func:`gather` can run it here instead."""

    def __init__(
        self, worker: Worker, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        super().__init__()
        self.worker, self.fn, self.args, self.kwargs = worker, fn, args, kwargs


def gather(future: Future[Any], stall_seconds: float = 0.5) -> Any:
    """The result of ``future``. For a :class:`Call`: waited for while the worker gets at least
    half a core; run here, at normal priority, when it gets less (a busy machine starves an
    idle-priority process: waiting would take as long as the machine stays busy) or has died.
    An exception the call itself raised is raised here."""
    if not isinstance(future, Call):
        return future.result()
    while True:
        before = future.worker.cpu_seconds()
        try:
            return future.result(timeout=stall_seconds)
        except TimeoutError:
            pass
        except WorkerError:
            break
        after = future.worker.cpu_seconds()
        # less than half a core: starved, as on a busy machine (an idle one gives it a whole core)
        if before is None or after is None or after - before < 0.5 * stall_seconds:
            break
    future.cancel()
    return future.fn(*future.args, **future.kwargs)


class Worker(Executor):
    """One child process that runs the submitted calls in order (see the module docstring)."""

    def __init__(self, preload: Sequence[str] = ()) -> None:
        command = [sys.executable, "-m", "ranker.worker", *preload]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self._pending: deque[Future[Any]] = deque()
        self._lock = threading.Lock()
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        self._closed = False
        threading.Thread(target=self._write, name="worker-writer", daemon=True).start()
        threading.Thread(target=self._read, name="worker-reader", daemon=True).start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Call:
        future = Call(self, fn, args, kwargs)
        payload = pickle.dumps((fn, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            if self._closed:
                raise WorkerError("the worker is shut down")
            self._pending.append(future)
            self._outbox.put(payload)
        return future

    def cpu_seconds(self) -> float | None:
        """CPU time the child has used so far (Linux /proc), or None where it cannot be read."""
        try:
            stat = open(f"/proc/{self._process.pid}/stat").read()  # noqa: SIM115
            fields = stat[stat.rindex(")") + 2 :].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the child: after the calls already submitted (``wait``), or at once."""
        with self._lock:
            self._closed = True
            self._outbox.put(None)
        if wait:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=600)
        with contextlib.suppress(OSError):
            self._process.kill()  # it keeps nothing: no need to let it tear down
        self._process.wait()
        self._fail_pending("the worker was shut down")

    def _write(self) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        while (payload := self._outbox.get()) is not None:
            try:
                stdin.write(len(payload).to_bytes(8, "big") + payload)
                stdin.flush()
            except OSError:
                return
        with contextlib.suppress(OSError):
            stdin.close()

    def _read(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        while True:
            message = _receive(stdout)
            if message is None:
                code = self._process.poll()
                self._fail_pending(f"the worker process ended (exit code {code})")
                return
            ok, value = pickle.loads(message)
            with self._lock:
                future = self._pending.popleft() if self._pending else None
            if future is None or future.done():
                continue  # run here meanwhile (gather)
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _fail_pending(self, reason: str) -> None:
        with self._lock:
            pending, self._pending = list(self._pending), deque()
        for future in pending:
            if not future.done():
                future.set_exception(WorkerError(reason))


def _receive(stream: IO[bytes]) -> bytes | None:
    header = stream.read(8)
    if len(header) < 8:
        return None
    size = int.from_bytes(header, "big")
    data = stream.read(size)
    return data if len(data) == size else None


def _serve(modules: Sequence[str]) -> None:
    """The child: lowest CPU priority, the modules imported, then one call per message."""
    import importlib

    try:  # Linux: run only on CPU nothing else wants
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)
    # The protocol owns the real stdout; whatever the calls print goes to stderr.
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    for module in modules:
        with contextlib.suppress(Exception):  # the call that needs it will say why
            importlib.import_module(module)
    source = sys.stdin.buffer
    while (message := _receive(source)) is not None:
        try:
            fn, args, kwargs = pickle.loads(message)
            reply = (True, fn(*args, **kwargs))
        except Exception as exc:  # handed back to the caller's Future
            reply = (False, exc)
        try:
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an unpicklable result or exception
            data = pickle.dumps((False, WorkerError(f"cannot send the result back: {exc!r}")))
        channel.write(len(data).to_bytes(8, "big") + data)
        channel.flush()


if __name__ == "__main__":
    _serve(sys.argv[1:])
