"""One writer per library: an advisory lock on ``write.lock`` in the library folder.

The kernel drops the lock when the process dies, so a killed ``vmr index``
never leaves the library locked.  Readers (search, status) never take it.
"""

from __future__ import annotations

import errno
import fcntl
import os
from contextlib import contextmanager

from .errors import VmrError

LOCK_NAME = "write.lock"


@contextmanager
def writer_lock(directory: str, what: str, busy: str | None = None):
    """Hold the lock of directory (``busy``: the error when another process holds it)."""
    path = os.path.join(directory, LOCK_NAME)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise VmrError(busy or f"another vmr process is writing to {directory}; wait for it to "
                                   "finish and try again") from None
        raise
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {what}\n")
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def is_locked(directory: str) -> bool:
    """True while some process holds the writer lock."""
    path = os.path.join(directory, LOCK_NAME)
    if not os.path.exists(path):
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


@contextmanager
def folder_lock(folder: str, waiting=None):
    """Hold an advisory lock on the folder itself (no file is made in it: it is the user's), waiting
    for another holder; ``waiting()`` is called first when there is one.  Two exports of a search
    into one folder at once each cut every result (the second as '_2'): the second now waits, then
    finds the first one's cuts.  Where the file system cannot lock, nothing is held."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                yield  # (no locks on this file system)
                return
            if waiting is not None:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
