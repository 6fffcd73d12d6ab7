"""File paths as the catalog stores them.

Names on disk are bytes: they can hold newlines, start with '-', or not be
UTF-8 at all.  The catalog keeps the exact bytes (BLOB) and everything else
works on ``str`` paths from ``os.fsdecode`` (surrogate escapes), which
round-trip to the same bytes.  Paths are always absolute, so no external tool
can read a name as an option.
"""

from __future__ import annotations

import os

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .m2ts .mts .ts .wmv .flv .3gp .ogv .ogg .mxf .vob".split()
)


def absolute(path) -> str:
    """Absolute, normalised, symlinks kept (a link is the user's name for a file)."""
    return os.path.abspath(os.fsdecode(path))


def to_key(path: str) -> bytes:
    """The catalog's key for a path: its exact bytes."""
    return os.fsencode(path)


def from_key(key) -> str:
    return os.fsdecode(bytes(key))


def printable(path: str) -> str:
    """A one-line, valid-UTF-8 rendering of a path (or a whole message naming paths) for
    tables and messages: control characters, terminal escapes included, are shown escaped."""
    try:
        text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to
        text = path.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def is_video_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def under(path: str, root: str) -> bool:
    """True when path is root itself or lies inside it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
