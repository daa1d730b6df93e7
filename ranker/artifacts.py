"""The model store: ``artifacts/models/<version>/`` folders and the ``CURRENT`` pointer.

A version folder is written aside (``.partial-<version>``) and renamed into place when complete;
an existing version is never overwritten. While its run writes it, it holds an ``OWNER`` file
(the run's pid): a failed run removes it, and the next train sweeps it (and its reports) if its
run died. ``CURRENT`` names the version scoring uses; it moves (atomically, by ``os.replace``)
only after a run fully succeeded and the promotion gate let it (``ranker.promotion``), so a
failed or interrupted run leaves the previous model current and usable; a model the gate
stopped stays as a candidate. ``HISTORY`` records every move of CURRENT (time, version, why),
which ``rollback`` walks back. Folders and files are readable by the group (and others, as the
umask allows): a service running as another user can read the model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ranker.errors import UnirankError
from ranker.processes import alive

MODEL_FILE = "model.cbm"
REFERENCE_FILE = "reference.parquet"  # training rows per canvas (drift columns)
# the build's serving candidates per canvas when the model was trained: what `monitor` compares
# today's candidates with (a change since training, which a retrain resets)
SERVING_REFERENCE_FILE = "serving_reference.parquet"
METADATA_FILE = "metadata.json"
POINTER_FILE = "CURRENT"
HISTORY_FILE = "HISTORY"  # one line per move of CURRENT: UTC time, version, reason (tab-separated)
# In a version folder until it is promoted: the pid of the run writing it. A version whose run
# died (a killed train) is removed by the next train (sweep_unpromoted).
OWNER_FILE = "OWNER"


class ArtifactError(UnirankError, RuntimeError):
    """A model version is missing, incomplete or would be overwritten."""


@dataclass(frozen=True)
class ModelVersion:
    version: str
    path: Path
    metadata: dict[str, Any]

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE


def models_dir(artifacts_dir: Path) -> Path:
    return artifacts_dir / "models"


# What new_version names a version: the reports of one are reports/<version>/.
_VERSION_NAME = re.compile(r"^\d{8}T\d{12}Z-")


def new_version(data_fingerprint: str, now: datetime | None = None) -> str:
    """``<UTC time>-<data fingerprint>``: sortable, and says which data trained it."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{data_fingerprint[:8]}"


def write_version(
    root: Path,
    version: str,
    metadata: dict[str, Any],
    write_model: Callable[[Path], None],
    extras: Mapping[str, Callable[[Path], None]] | None = None,
) -> ModelVersion:
    """Write ``<root>/<version>/`` (model via ``write_model(path)``, metadata.json and each of
    ``extras``: file name -> its writer), all or nothing."""
    final = root / version
    if final.exists():
        raise ArtifactError(
            f"model version {version} already exists at {final}; refusing to overwrite it"
        )
    root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".partial-{version}-", dir=root))
    os.chmod(partial, _shared_mode(0o777))  # mkdtemp makes it private (0700)
    try:
        write_model(partial / MODEL_FILE)
        for name, write in (extras or {}).items():
            write(partial / name)
        (partial / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str) + "\n")
        (partial / OWNER_FILE).write_text(f"{os.getpid()}\n")
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return ModelVersion(version, final, metadata)


def update_metadata(model: ModelVersion, extra: dict[str, Any]) -> ModelVersion:
    """Add keys to a version's metadata.json (atomic replace of the file)."""
    metadata = {**model.metadata, **extra}
    write_text_atomic(
        model.path / METADATA_FILE, json.dumps(metadata, indent=2, default=str) + "\n"
    )
    return ModelVersion(model.version, model.path, metadata)


def promote(root: Path, version: str, reason: str = "trained") -> None:
    """Make ``version`` the current model (atomic pointer move), recorded in HISTORY."""
    if not (root / version / MODEL_FILE).is_file():
        raise ArtifactError(f"cannot promote {version}: {root / version / MODEL_FILE} is missing")
    before = current_name(root)
    if before is not None and not (root / HISTORY_FILE).exists():
        # A store from before HISTORY: its CURRENT is where a rollback goes back to.
        since = datetime.fromtimestamp((root / POINTER_FILE).stat().st_mtime, timezone.utc)
        _record(root, since, before, "current when the history began")
    write_text_atomic(root / POINTER_FILE, version + "\n")
    release(root, version)
    _record(root, datetime.now(timezone.utc), version, reason)


def _record(root: Path, at: datetime, version: str, reason: str) -> None:
    line = f"{at.isoformat(timespec='seconds')}\t{version}\t{' '.join(reason.split())}\n"
    fd = os.open(root / HISTORY_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _shared_mode(0o666))
    try:
        os.write(fd, line.encode())  # one write of one line: appends never interleave
    finally:
        os.close(fd)


def release(root: Path, version: str) -> None:
    """The run that wrote ``version`` is done with it: it stays (CURRENT or a candidate)."""
    (root / version / OWNER_FILE).unlink(missing_ok=True)


def history(root: Path) -> list[tuple[str, str, str]]:
    """Every move of CURRENT, oldest first: (UTC time, version, reason)."""
    try:
        text = (root / HISTORY_FILE).read_text()
    except FileNotFoundError:
        return []
    moves = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            moves.append((parts[0], parts[1], parts[2]))
    return moves


def rollback(root: Path) -> str:
    """Make the model that was CURRENT before the current one CURRENT again; its name."""
    current = current_name(root)
    if current is None:
        raise ArtifactError(f"no CURRENT model under {root}: nothing to roll back")
    earlier = [v for _, v, _ in history(root)]
    while earlier and earlier[-1] == current:
        earlier.pop()
    for version in reversed(earlier):
        if version != current and (root / version / MODEL_FILE).is_file():
            promote(root, version, f"rollback from {current}")
            return version
    raise ArtifactError(
        f"no earlier CURRENT model recorded in {root / HISTORY_FILE} that still exists; "
        "pick one with `unirank-cli models list` and `unirank-cli models promote VERSION`"
    )


def versions(root: Path) -> list[ModelVersion]:
    """Every complete version (CURRENT, earlier ones and candidates), oldest first."""
    found = []
    for name in list_versions(root):
        try:
            found.append(load_version(root, name))
        except ArtifactError:
            continue  # an unreadable metadata.json: not a version to list
    return found


def _shared_mode(mode: int) -> int:
    """``mode`` less what the process umask removes (read without changing it for long)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mode & ~mask


def discard(root: Path, version: str, reports_dir: Path | None = None) -> None:
    """Remove a version that will never be promoted (its run failed), and its reports."""
    shutil.rmtree(root / version, ignore_errors=True)
    if reports_dir is not None:
        shutil.rmtree(reports_dir / version, ignore_errors=True)


def sweep_unpromoted(root: Path, reports_dir: Path | None = None) -> list[str]:
    """Remove what killed runs left: versions never promoted whose run is gone (with their
    reports), partial version folders older than an hour, and unfinished report folders (no
    index.html) of versions that do not exist. Returns what it removed. Runs still going (their
    pid alive) are left alone."""
    removed: list[str] = []
    stale = time.time() - 3600
    if root.is_dir():
        for path in sorted(root.iterdir()):
            if not path.is_dir():
                continue
            if path.name.startswith(".partial-"):
                if path.stat().st_mtime < stale:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path.name)
            elif (path / OWNER_FILE).is_file() and not _owner_alive(path):
                discard(root, path.name, reports_dir)
                removed.append(path.name)
    if reports_dir is not None and reports_dir.is_dir():
        for path in sorted(reports_dir.iterdir()):
            if not _VERSION_NAME.match(path.name):
                continue  # not a version's reports (e.g. reports/monitor/): not train's to sweep
            unfinished = path.is_dir() and not (path / "index.html").is_file()
            if unfinished and not (root / path.name).is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(f"reports/{path.name}")
    return removed


def _owner_alive(path: Path) -> bool:
    try:
        return alive(int((path / OWNER_FILE).read_text().strip()))
    except (OSError, ValueError):
        return False


def current_version(root: Path) -> ModelVersion:
    """The current model, or a clear error saying to train one."""
    pointer = root / POINTER_FILE
    if not pointer.is_file():
        raise ArtifactError(f"no trained model under {root}; run `unirank-cli train` first")
    return load_version(root, pointer.read_text().strip())


def current_name(root: Path, max_age: float = 0.0) -> str | None:
    """The CURRENT version's name without loading it (None when there is none): what a
    request-time check needs. ``max_age`` > 0 reuses a name read less than that many seconds
    ago (a service answering thousands of requests a second reads the file ten times a second,
    and sees a promotion within ``max_age``)."""
    now = time.monotonic()
    if max_age > 0:
        seen = _names_read.get(root)
        if seen is not None and now - seen[1] < max_age:
            return seen[0]
    try:
        name = (root / POINTER_FILE).read_text().strip() or None
    except OSError:
        name = None
    _names_read[root] = (name, now)
    return name


_names_read: dict[Path, tuple[str | None, float]] = {}


def load_version(root: Path, version: str) -> ModelVersion:
    path = root / version
    metadata_file = path / METADATA_FILE
    if not (path / MODEL_FILE).is_file() or not metadata_file.is_file():
        raise ArtifactError(f"model version {version} at {path} is incomplete or missing")
    try:
        metadata = json.loads(metadata_file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(
            f"model version {version}: {metadata_file} is not valid JSON ({exc})"
        ) from None
    if not isinstance(metadata, dict):
        raise ArtifactError(f"model version {version}: {metadata_file} does not hold an object")
    return ModelVersion(version, path, metadata)


def list_versions(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and (p / MODEL_FILE).is_file()
        and not (p / OWNER_FILE).exists()  # its run is still writing it (or died)
    )


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: a temporary file beside it, flushed to
    disk, then moved into place (``os.replace``); readable by the group as the umask allows.
    A reader sees the previous file or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.chmod(tmp, _shared_mode(0o666))  # mkstemp makes it private (0600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
