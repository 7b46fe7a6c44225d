"""The one family of errors that users see as a one-line cause and a fix.

Anything raised that is not a `RecolorError` (or an `Interrupted`, Ctrl-C told in the same way)
is a bug in recolor and shows its traceback.
"""

from __future__ import annotations


class RecolorError(Exception):
    """A failure caused by input, environment or network, not by a bug.

    `cause` says what went wrong (naming the file or resource), `fix` what the user can do.
    """

    exit_code = 1

    def __init__(self, cause: str, fix: str | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.cause} ({self.fix})" if self.fix else self.cause


class UsageError(RecolorError):
    """Arguments that cannot work together or name something that does not exist."""

    exit_code = 2


class ImageReadError(RecolorError):
    """A file that is not a readable image: truncated, empty, not an image, a decompression bomb."""


class ImageWriteError(RecolorError):
    """An output that could not be written (permissions, disk, a format that cannot hold the data)."""


class DataError(RecolorError):
    """A prepared data folder that is missing, incomplete or inconsistent."""


class ModelError(RecolorError):
    """A model that cannot be found, downloaded, verified or loaded."""


class NetworkUnavailableError(RecolorError):
    """A remote resource (COCO, the Hugging Face Hub, torchvision weights) that cannot be reached."""


class TrainingError(RecolorError):
    """A training run that cannot go on: a NaN or infinite loss, a run folder that does not match."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a command cleanly: `cause` says what was done and what is left, `fix` how to go on.

    A KeyboardInterrupt still (not a RecolorError), so that whatever catches Ctrl-C on its way up
    (cleanup in `finally`, `except KeyboardInterrupt`) treats it as one; the CLI prints the two
    parts on one line and exits with 130, the shell's code for SIGINT.
    """

    exit_code = 130

    def __init__(self, cause: str, fix: str | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.fix = fix


class VideoError(RecolorError):
    """A video that cannot be read, decoded or written: truncated, no video stream, a codec that
    this FFmpeg lacks, or PyAV not installed."""
