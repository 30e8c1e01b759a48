"""One lock file per run folder, so that two workers never train the same run at once.

``RUN_DIR/lock`` holds the holder's host, pid and start time as JSON. It appears atomically with its
content: a complete temporary file is hard-linked to the lock name, which fails when the name exists (like
O_CREAT|O_EXCL, and safe on NFS). While a run trains, a heartbeat thread touches the lock every
``HEARTBEAT_S`` seconds. A lock is stale when its pid no longer runs on this host, or when its heartbeat is
older than ``STALE_AFTER_S`` (a job killed on another node); a stale lock is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

LOCK_FILE = "lock"
HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0
#: how often a waiting process (``--wait``) looks at a held lock
WAIT_POLL_S = 1.0


@dataclass(frozen=True)
class LockInfo:
    """Who holds a lock."""

    host: str
    pid: int
    time: float

    @classmethod
    def mine(cls) -> LockInfo:
        return cls(socket.gethostname(), os.getpid(), time.time())

    def pid_gone(self) -> bool:
        """True when the holder ran on this host and its process no longer exists."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # it exists, owned by another user
            pass
        return False

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.time).isoformat(timespec="seconds")
        return f"pid {self.pid} on {self.host} since {since}"


class LockHeld(Exception):
    """The run is locked by a live worker."""

    def __init__(self, path: Path, holder: LockInfo | None):
        super().__init__(f"locked by {holder.describe()}" if holder else
                         f"locked: {path} is unreadable; delete it if no worker trains this run")
        self.holder = holder


def read_lock(path: Path) -> LockInfo | None:
    """The lock's holder, or None when there is no (readable) lock file."""
    try:
        return LockInfo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def is_stale(path: Path, holder: LockInfo) -> bool:
    """A dead pid on this host, or no heartbeat for ``STALE_AFTER_S`` seconds."""
    try:
        silent = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return holder.pid_gone() or silent > STALE_AFTER_S


def _create(path: Path, info: LockInfo) -> bool:
    """Create the lock holding ``info`` unless it exists."""
    tmp = path.with_name(f".{path.name}.{info.host}.{info.pid}.tmp")
    tmp.write_text(json.dumps(asdict(info)))
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _remove_stale(path: Path, stale: LockInfo) -> bool:
    """Remove the lock if it still is ``stale``; a lock that changed in between is put back."""
    moved = path.with_name(f".{path.name}.stale.{os.getpid()}")
    try:
        os.rename(path, moved)
    except FileNotFoundError:  # another worker removed it first
        return False
    try:
        if read_lock(moved) == stale:
            return True
        try:
            os.link(moved, path)
        except FileExistsError:
            pass
        return False
    finally:
        moved.unlink(missing_ok=True)


def acquire(run_dir: Path, log: Callable[[str], None]) -> LockInfo:
    """Take ``run_dir``'s lock, taking over (and logging) a stale one; raises LockHeld when it is live."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    me = LockInfo.mine()
    for _ in range(3):  # retries after a stale lock was removed, by us or by a racing worker
        if _create(path, me):
            return me
        holder = read_lock(path)
        if holder is None:
            continue  # released in between, or unreadable (then the last line raises)
        if not is_stale(path, holder):
            raise LockHeld(path, holder)
        if _remove_stale(path, holder):
            log(f"{run_dir.name}: took over the stale lock of {holder.describe()}")
    raise LockHeld(path, read_lock(path))


def release(run_dir: Path, me: LockInfo) -> None:
    """Remove the lock if it is still ours."""
    path = run_dir / LOCK_FILE
    if read_lock(path) == me:
        path.unlink(missing_ok=True)


def _heartbeat(path: Path, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            os.utime(path)
        except FileNotFoundError:
            return


def acquire_waiting(run_dir: Path, log: Callable[[str], None]) -> LockInfo:
    """Take ``run_dir``'s lock, waiting while a live process holds it."""
    said = False
    while True:
        try:
            return acquire(run_dir, log)
        except LockHeld as held:
            if not said:
                log(f"{run_dir.name}: waiting, {held}")
                said = True
            time.sleep(WAIT_POLL_S)


@contextmanager
def run_lock(run_dir: Path, log: Callable[[str], None], wait: bool = False) -> Iterator[LockInfo]:
    """Hold ``run_dir``'s lock for the block (raises LockHeld when a live worker holds it, unless ``wait``)."""
    me = acquire_waiting(run_dir, log) if wait else acquire(run_dir, log)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(run_dir / LOCK_FILE, stop), daemon=True)
    beat.start()
    try:
        yield me
    finally:
        stop.set()
        beat.join()
        release(run_dir, me)
