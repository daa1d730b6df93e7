"""Whether a process still runs: how a run tells its own leftovers from those of a run that died
(model versions, cache partial files)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True if a process with this pid exists (including one another user owns)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
