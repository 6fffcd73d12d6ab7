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
