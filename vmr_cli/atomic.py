"""Replace a file so readers see the old or the new version, never a torn one."""

from __future__ import annotations

import os
import tempfile


def atomic_write(path: str, write, shared: bool = False) -> None:
    """Call write(tmp_path) on a temp file beside path, fsync it, then rename it over path.

    ``shared`` gives the file the usual mode for the user's umask (a page or a
    predictions file the user keeps); otherwise it keeps mkstemp's 0600.
    """
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if shared:
            usual_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def usual_mode(path: str) -> None:
    """mkstemp creates 0600; a file the user keeps gets 0666 less the umask, like any other."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
