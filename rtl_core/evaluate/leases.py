"""Claim files: a worker claims a run before it starts it, so many workers (processes, GPUs, SLURM array tasks)
can share one results folder and every run is done exactly once.

A claim is ``<record>.claim.json`` beside the run's record, created with ``O_CREAT | O_EXCL`` (atomic on a local
and on an NFS v3+ file system), holding host, pid, a random token, start time and a heartbeat that a thread
refreshes while the run trains. A claim whose heartbeat is older than ``stale_seconds``, or whose process is gone
on this host, is stale: one worker wins the atomic rename that removes it and claims the run anew (the run is
then *redone*). A finished run's record makes every later claim attempt a skip.

Example::

    claim = acquire(record_path, stale_seconds=300)
    if claim is not None:
        with claim.beating(30):
            ...  # train, write the record
        claim.release()
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SUFFIX = ".claim.json"
log = logging.getLogger(__name__)


def claim_path(record: Path) -> Path:
    return record.with_name(record.name + SUFFIX)


def _owner(token: str) -> dict:
    now = time.time()
    return {"host": socket.gethostname(), "pid": os.getpid(), "token": token, "started": now, "heartbeat": now}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_claim(path: Path) -> dict | None:
    """The owner recorded in a claim file (``None`` if it is gone or still being written)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def is_stale(path: Path, stale_seconds: float) -> bool:
    """Whether the claim at ``path`` belongs to no live worker: its heartbeat (or, while unreadable, the file's
    mtime) is older than ``stale_seconds``, or its process is gone on this host."""
    owner = read_claim(path)
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return True
    beat = max(float(owner.get("heartbeat", 0)), mtime) if owner else mtime
    if time.time() - beat > stale_seconds:
        return True
    return bool(owner and owner.get("host") == socket.gethostname() and not _alive(int(owner.get("pid", -1))))


@dataclass
class Claim:
    """A run this worker holds."""

    path: Path
    token: str
    taken_over: bool = False  # the run had a stale claim of a worker that died
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def beat(self) -> None:
        """Refresh the heartbeat (only while the claim is still ours)."""
        owner = read_claim(self.path)
        if owner is None or owner.get("token") != self.token:
            return
        owner["heartbeat"] = time.time()
        tmp = self.path.with_name(f".{self.path.name}.{self.token}.beat")
        tmp.write_text(json.dumps(owner))
        current = read_claim(self.path)
        if current is None or current.get("token") != self.token:  # taken over meanwhile: leave the new claim
            tmp.unlink(missing_ok=True)
            return
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def beating(self, interval: float):
        """Refresh the heartbeat every ``interval`` seconds in a daemon thread while the block runs."""
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.beat()
                except OSError as exc:  # a hiccup of the file system must not end the heartbeat
                    log.warning("heartbeat of %s failed (%s); retrying in %.0f s", self.path, exc, interval)

        thread = threading.Thread(target=loop, name=f"heartbeat {self.path.name}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=interval + 1)

    def release(self) -> None:
        """Remove the claim if it is still ours."""
        owner = read_claim(self.path)
        if owner is not None and owner.get("token") == self.token:
            self.path.unlink(missing_ok=True)


def acquire(record: Path, stale_seconds: float = 300.0) -> Claim | None:
    """Claim the run whose record is ``record``; ``None`` when a live worker holds it."""
    path = claim_path(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    taken_over = False
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                judged = path.stat().st_ino
            except FileNotFoundError:
                continue
            if taken_over or not is_stale(path, stale_seconds):
                return None
            tomb = path.with_name(f".{path.name}.stale.{token}")
            try:
                os.rename(path, tomb)  # atomic: of the workers that found it stale, one wins
            except FileNotFoundError:
                return None
            if tomb.stat().st_ino != judged:
                # Another worker replaced the stale claim with its own between our check and our rename: put it
                # back (link fails if a claim exists again, which is then that worker's) and step aside.
                with contextlib.suppress(FileExistsError):
                    os.link(tomb, path)
                tomb.unlink(missing_ok=True)
                return None
            tomb.unlink(missing_ok=True)
            taken_over = True
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(_owner(token)))
        return Claim(path, token, taken_over)
    return None
