"""One writer per library: an advisory lock on ``write.lock`` in the library folder.

The kernel drops the lock when the process dies, so a killed ``vmr index``
never leaves the library locked.  Readers (search, status) never take it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from contextlib import contextmanager

from .errors import VmrError

LOCK_NAME = "write.lock"
# How long a writer waits before it calls the lock taken: is_locked() (vmr status) holds it for a
# few microseconds to look, and a 'vmr index' starting then was refused as if another wrote.
GRACE = 0.2


@contextmanager
def writer_lock(directory: str, what: str, busy: str | None = None, wait: float = 0.0,
                wait_while: str | None = None, unless=None):
    """Hold the lock of directory (``busy``: the error when another process holds it); yields True.
    ``wait``: seconds to wait for another holder first; ``wait_while``: words in what the holder
    said it is doing (``what``, written in the lock file) for which to wait as long as it holds
    it; ``unless()``: asked while waiting, and when true the wait ends without the lock, which
    yields False (what the lock was wanted for was done meanwhile by the holder)."""
    path = os.path.join(directory, LOCK_NAME)
    handle = open(path, "a+")
    deadline = time.monotonic() + max(wait, GRACE)
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                handle.close()
                raise
        if unless is not None and unless():
            handle.close()
            yield False
            return
        if time.monotonic() >= deadline and not (wait_while and wait_while in _holder(path)):
            handle.close()
            raise VmrError(busy or f"another vmr process is writing to {directory}; wait for it to "
                                   "finish and try again") from None
        time.sleep(0.05)
    try:
        try:  # who holds it, for a reader of the file; a full disk may refuse the few bytes
            os.ftruncate(handle.fileno(), 0)
            os.write(handle.fileno(), f"{os.getpid()} {what}\n".encode(errors="replace"))  # (appended: at 0)
        except OSError:
            pass
        yield True
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _holder(path: str) -> str:
    """What the lock's holder wrote in it ('' when it cannot be read)."""
    try:
        with open(path, errors="replace") as handle:
            return handle.read(200)
    except OSError:
        return ""


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
