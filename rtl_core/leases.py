"""Leases: a process leases a piece of work before it starts it, so many processes (workers, GPUs, SLURM array
tasks, two ``rtl`` commands) can share one output folder and every piece is done once, by one of them.

The evaluation grid leases each run (:mod:`rtl_core.evaluate.runner`), pretraining each encoder
(:func:`rtl_core.pretrain.train.pretrain`). A lease is ``<target>.lease.json`` beside what it guards, created with
``O_CREAT | O_EXCL`` (atomic on a local and on an NFS v3+ file system), holding host, pid, a random token, start
time and a heartbeat that a thread refreshes while the work goes on. A lease whose heartbeat is older than
``stale_seconds``, or whose process is gone on this host, is stale: one process wins the atomic rename that
removes it and takes the work over (the work is then *redone*).

Example::

    lease = acquire(record_path, stale_seconds=300)
    if lease is not None:
        with lease.beating(30):
            ...  # train, write the record
        lease.release()
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

SUFFIX = ".lease.json"
log = logging.getLogger(__name__)


def lease_path(target: Path) -> Path:
    """The lease file of ``target`` (``<target>.lease.json``, beside it)."""
    return target.with_name(target.name + SUFFIX)


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


def read_lease(path: Path) -> dict | None:
    """The holder recorded in a lease file (``None`` if it is gone or still being written)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def is_stale(path: Path, stale_seconds: float) -> bool:
    """Whether the lease at ``path`` belongs to no live process: its heartbeat (or, while unreadable, the file's
    mtime) is older than ``stale_seconds``, or its process is gone on this host."""
    owner = read_lease(path)
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return True
    beat = max(float(owner.get("heartbeat", 0)), mtime) if owner else mtime
    if time.time() - beat > stale_seconds:
        return True
    return bool(owner and owner.get("host") == socket.gethostname() and not _alive(int(owner.get("pid", -1))))


def describe_holder(target: Path) -> str:
    """Who holds the lease on ``target``, in words: host, pid, since when, last heartbeat, and the lease file."""
    path = lease_path(target)
    owner = read_lease(path)
    if owner is None:
        return f"a process that is still writing its lease file {path}"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(owner.get("started", 0))))
    beat = time.time() - float(owner.get("heartbeat", owner.get("started", 0)))
    return (
        f"host {owner.get('host')}, pid {owner.get('pid')}, since {started} "
        f"(last heartbeat {beat:.0f} s ago; lease file {path})"
    )


@dataclass
class Lease:
    """A piece of work this process holds."""

    path: Path
    token: str
    taken_over: bool = False  # the work had a stale lease of a process that died
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def beat(self) -> None:
        """Refresh the heartbeat (only while the lease is still ours)."""
        owner = read_lease(self.path)
        if owner is None or owner.get("token") != self.token:
            return
        owner["heartbeat"] = time.time()
        tmp = self.path.with_name(f".{self.path.name}.{self.token}.beat")
        tmp.write_text(json.dumps(owner))
        current = read_lease(self.path)
        if current is None or current.get("token") != self.token:  # taken over meanwhile: leave the new lease
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
        """Remove the lease if it is still ours."""
        owner = read_lease(self.path)
        if owner is not None and owner.get("token") == self.token:
            self.path.unlink(missing_ok=True)


def acquire(target: Path, stale_seconds: float = 300.0) -> Lease | None:
    """Lease the work whose output is ``target``; ``None`` when a live process holds it."""
    path = lease_path(target)
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
                os.rename(path, tomb)  # atomic: of the processes that found it stale, one wins
            except FileNotFoundError:
                return None
            if tomb.stat().st_ino != judged:
                # Another process replaced the stale lease with its own between our check and our rename: put it
                # back (link fails if a lease exists again, which is then that process's) and step aside.
                with contextlib.suppress(FileExistsError):
                    os.link(tomb, path)
                tomb.unlink(missing_ok=True)
                return None
            tomb.unlink(missing_ok=True)
            taken_over = True
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(_owner(token)))
        return Lease(path, token, taken_over)
    return None
