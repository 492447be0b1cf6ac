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
