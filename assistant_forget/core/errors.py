"""Errors the library raises on purpose, each with the CLI exit code it maps to.

Every message says what was wrong and what to do; the CLI prints it and exits with `exit_code`.
"""

from __future__ import annotations


class ForgetError(Exception):
    """Base class: a failure the user can act on. Exit code 2."""

    exit_code = 2


class BadInput(ForgetError):
    """An argument, date, selector or input line is malformed. Nothing was changed."""

    exit_code = 2


class DeviceNotFound(ForgetError):
    """The device directory does not exist or is not a device directory."""

    exit_code = 3


class CorruptFile(ForgetError):
    """A file on disk failed its checksum, is truncated, missing or unreadable. The message names the file."""

    exit_code = 4


class NothingToForget(ForgetError):
    """A selector matched no utterance. Nothing was changed."""

    exit_code = 5


class DeviceBusy(ForgetError):
    """Another process holds the device lock."""

    exit_code = 6
