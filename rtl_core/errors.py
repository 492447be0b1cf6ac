"""Errors raised for bad input. Every message names the file or key and says what to do."""

from __future__ import annotations


class RtlError(Exception):
    """Base class of every error rtl_core raises on purpose."""


class DataError(RtlError):
    """A data file is missing, corrupt, mis-shaped or inconsistent."""


class ConfigError(RtlError):
    """A study config has an unknown key, a wrong type or an impossible value."""


class CheckpointError(RtlError):
    """A checkpoint or its sidecar does not match what is asked of it."""


class OutputError(RtlError):
    """The output folder (``RTL_OUTPUT_DIR``) or a file in it cannot be written."""


class BusyError(RtlError):
    """Another live process holds the lease on this work (:mod:`rtl_core.leases`)."""


class Interrupted(BaseException):
    """The command was stopped by a signal (SIGTERM, SIGINT); ``rtl`` exits with ``128 + signum`` (143, 130).

    A ``BaseException``, as ``KeyboardInterrupt``, so that the ``except Exception`` of a worker that records a
    failed run does not take it for one. ``kept`` says what the stopped work left for a rerun to resume from,
    ``where`` which stage of a longer command it stopped in (both filled in on the way up)."""

    def __init__(self, signum: int, kept: str = "", where: str = "") -> None:
        super().__init__(signum)
        self.signum, self.kept, self.where = int(signum), kept, where

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        import signal

        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"
