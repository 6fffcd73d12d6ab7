"""Errors the user can fix: the CLI prints them as one line and exits non-zero."""


class VmrError(Exception):
    """A problem with input, library or environment, explained in one sentence."""


class DecodeError(VmrError):
    """A video file could not be read; the index run records it and goes on."""


class TransientError(VmrError):
    """Reading a file failed for a reason outside the file (a timeout, an I/O error, permission):
    the run reports it, records nothing against the file, and the next run tries again."""


class SkipVideo(VmrError):
    """One video cannot take part in a search (its file or vectors are gone); the search goes on."""


def first_line(exc: BaseException) -> str:
    """An exception as one line for a message: its first line, or its type when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
