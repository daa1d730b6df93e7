"""Run one command and report its wall time, CPU seconds (user + system, all its processes) and
peak memory (max RSS of the process tree's largest process) as JSON on the last line of stdout.
Used by the benchmarks, never by tests."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main() -> int:
    command = sys.argv[1:]
    if not command:
        print("usage: measure.py COMMAND [ARG ...]", file=sys.stderr)
        return 2
    started = time.perf_counter()
    completed = subprocess.run(
        command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "returncode": completed.returncode,
                "wall_seconds": round(wall, 2),
                "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
                "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
                "stderr_tail": completed.stderr[-2000:] if completed.returncode else "",
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
