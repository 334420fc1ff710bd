"""The engine's expected failures, each carrying the CLI exit status of DESIGN.md.

0 done, 2 bad usage or bad input, 3 weights missing, 1 anything else. The message of
every error names the file (or option) and the problem, so that the CLI can print it as
one line, and Blender can show it in `self.report({'ERROR'}, ...)` unchanged.
"""

from __future__ import annotations


class Depth360Error(Exception):
    """Base of the engine's expected errors; `exit_status` is what the CLI exits with."""

    exit_status = 1


class BadInputError(Depth360Error, ValueError):
    """Bad usage or bad input: an unknown model, an unreadable image, a bad option (exit 2)."""

    exit_status = 2


class WeightsInvalidError(BadInputError):
    """A checkpoint that is truncated, unsafe, or of another model (exit 2)."""


class WeightsMissingError(Depth360Error, FileNotFoundError):
    """A model's checkpoint is not in the models folder (exit 3)."""

    exit_status = 3


class DownloadError(Depth360Error):
    """A download that could not be completed or verified (exit 1)."""

    exit_status = 1


class BrokenEnvironmentError(Depth360Error):
    """The engine's Python environment lacks a module the work needs (exit 1)."""

    exit_status = 1
