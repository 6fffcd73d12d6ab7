"""Replace a file so readers see the old or the new version, never a torn one.

The one atomic write of the project: the application's vector shards, FAISS
cache, pages and predictions, and this package's checkpoints all go through
it.  Standard library only, so the network package can use it too.
"""

from __future__ import annotations

import os
import tempfile


def atomic_write(path: str, write, prefix: str = ".tmp-", like: str | None = None) -> None:
    """Call write(tmp_path) on a temp file beside path (named ``prefix``...), fsync it, then
    rename it over path (``like``: the file whose mode it takes, instead of path's).

    The file gets the mode of the file it replaces, else 0666 less the umask,
    as SQLite gives the catalog: the library's vectors were mkstemp's 0600
    beside a 0644 catalog, so another account could open a shared library and
    read none of its videos (and a ``chmod -R a+r`` was undone by the next
    rewrite).
    """
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        usual_mode(tmp, like=like or path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(os.path.dirname(os.path.abspath(path)))


def usual_mode(path: str, like: str | None = None) -> None:
    """mkstemp creates 0600; a file the user keeps gets the mode of the file it replaces
    (``like``), else 0666 less the umask, like any other new file."""
    try:
        mode = os.stat(like).st_mode & 0o7777 if like else None
    except OSError:
        mode = None
    if mode is None:
        mode = 0o666 & ~_umask()
    os.chmod(path, mode)


def _umask() -> int:
    """The process's umask, read where Linux shows it: setting it to read it back leaves a
    moment in which a file made by another thread (an index decodes and probes in threads
    while shards are written) would get no mask at all."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable; not every file system lets a folder be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
