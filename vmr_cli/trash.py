"""Which missing videos were moved to a trash: deleted by the user, not on a drive that is away.

A folder whose indexed files all vanish at once is kept as an unmounted drive's (scan.plan_index).
A desktop's "Move to Trash" of that folder looks the same from inside the folder, but the trash
says where what it holds came from:

- the freedesktop.org trash (GNOME, KDE, Xfce; the spec's home trash $XDG_DATA_HOME/Trash and
  each drive's $top/.Trash-$uid and $top/.Trash/$uid): ``info/NAME.trashinfo`` records the
  original path of ``files/NAME``, a file or a whole folder;
- a NAS's recycle bin (Synology's #recycle, QNAP's @Recycle, Samba's .recycle) keeps the share's
  folders under it: a deleted ``share/a/b.mp4`` is ``share/#recycle/a/b.mp4``.

A path counts as trashed only while its trashed file is still there, with the size it was indexed
with (a record says where a file of that name came from, not that it is the file indexed: another
card in the same reader, its own trash holding an older file of the same name).
"""

from __future__ import annotations

import os
import stat
from urllib.parse import unquote_to_bytes

from .paths import under

RECYCLE_BINS = ("#recycle", "@Recycle", ".recycle")  # a share's bins, the share's tree kept inside


def _home_trash() -> str:
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "Trash")


def drive_top(path: str) -> str:
    """The mount point holding path (where a drive's trash lies), judged from its nearest existing
    folder: the drive of a folder that is gone."""
    path = os.path.abspath(path)
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    while not os.path.ismount(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def _records(trash: str, top: str | None, sizes) -> dict[str, list[str]]:
    """original path -> its files in trash/files (a path trashed twice has two), from
    trash/info/*.trashinfo (paths relative to top in a drive's trash): only the records of what
    could be a file of one of ``sizes`` (those of the rows asked about: _could_hold)."""
    info = os.path.join(trash, "info")
    try:
        with os.scandir(info) as entries:
            names = [e.name for e in entries if e.name.endswith(".trashinfo") and e.is_file(follow_symlinks=False)]
    except OSError:
        return {}
    wanted = _could_hold(os.path.join(trash, "files"), sizes)
    if wanted is not None:  # (None: files/ could not be listed, every record is read)
        names = [name for name in names if name[:-len(".trashinfo")] in wanted]
    out: dict[str, list[str]] = {}
    for name in names:  # (regular files only: opening a FIFO would wait for a writer)
        try:
            with open(os.path.join(info, name), "rb") as f:
                lines = f.read(65536).splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith(b"Path="):
                original = os.fsdecode(unquote_to_bytes(line[5:].strip()))
                if not os.path.isabs(original):
                    if top is None:
                        break
                    original = os.path.join(top, original)
                out.setdefault(os.path.normpath(original), []).append(
                    os.path.join(trash, "files", name[:-len(".trashinfo")]))
                break
    return out


def _could_hold(files: str, sizes) -> set[str] | None:
    """The names in a trash's files/ that could be a trashed row's file: a folder (the file inside
    it), or a file of one of ``sizes``; the record of anything else can make no row trashed
    (trashed: _sized), so it is not read.  Reading 20,000 records took 0.35-0.45 s a run
    while a drive's entries were kept (7.9 s from a cold cache), their stats 0.1 s (1.0 s)
    (bench/noop_index.py).  None (no filter) when files/ cannot be listed."""
    out = set()
    try:
        with os.scandir(files) as entries:
            for entry in entries:
                try:
                    st = entry.stat()  # (through a link, as _sized looks)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode) or st.st_size in sizes:
                    out.add(entry.name)
    except OSError:
        return None
    return out


def trashed(rows: list[dict], passed_over: list[str] = ()) -> set[str]:
    """The paths of rows (catalog entries whose files are missing) that are in a trash now.

    passed_over: system folders the index walk did not enter (scan.SYSTEM_FOLDERS), among them a
    share's recycle bin."""
    if not rows:
        return set()
    uid = os.getuid() if hasattr(os, "getuid") else None
    sizes = {row["size"] for row in rows}
    records = _records(_home_trash(), None, sizes)
    # A file manager records where a file was by its real path, on the drive that holds it: a root
    # indexed through a link (~/Videos -> /media/usb/videos) is looked up by both names.
    # Per folder, not per file (the file itself is gone): 10,000 entries of an unplugged drive took
    # 0.8 s, every 'vmr index', where the folders alone took 0.06 s.
    real = {folder: os.path.realpath(folder) for folder in {os.path.dirname(row["path"]) for row in rows}}
    aliases = {row["path"]: list(dict.fromkeys([row["path"], os.path.join(real[os.path.dirname(row["path"])],
                                                                         os.path.basename(row["path"]))]))
               for row in rows}
    tops = {drive_top(folder) for folder in [*real, *real.values()]}
    for top in tops:
        for trash in ([os.path.join(top, f".Trash-{uid}"), os.path.join(top, ".Trash", str(uid))]
                      if uid is not None else []):
            for original, places in _records(trash, top, sizes).items():
                records.setdefault(original, []).extend(places)
    names = {name.casefold() for name in RECYCLE_BINS}
    bins = {folder for folder in passed_over if os.path.basename(folder).casefold() in names}
    bins.update(os.path.join(top, name) for top in tops for name in RECYCLE_BINS
                if os.path.isdir(os.path.join(top, name)))  # a share mounted at its top
    out = set()
    for row in rows:
        if any(_in_a_trash(name, row["size"], records, bins) for name in aliases[row["path"]]):
            out.add(row["path"])
    return out


def _in_a_trash(path: str, size: int, records: dict, bins: set) -> bool:
    """Whether a trash holds the file of ``size`` bytes that was at path."""
    places = []
    at = path
    while True:  # the path itself, or a folder above it, trashed whole
        places += [os.path.join(place, os.path.relpath(path, at)) if at != path else place
                   for place in records.get(at, ())]
        parent = os.path.dirname(at)
        if parent == at:
            break
        at = parent
    if any(_sized(place, size) for place in places):  # not another file of that name: a card swapped
        return True  # in the same reader, with an older file of the same name in its trash
    for folder in bins:
        share = os.path.dirname(folder)
        if under(path, share) and _sized(os.path.join(folder, os.path.relpath(path, share)), size):
            return True
    return False


def _sized(path: str, size: int) -> bool:
    try:
        return os.stat(path).st_size == size
    except OSError:
        return False
