"""Find video files under the given roots and compare them with the catalog.

Incremental like rclip: a file whose (size, mtime) is unchanged is skipped; a
new path whose size and head+tail fingerprint match a vanished catalog entry
is a move and keeps its vectors; a changed file is re-indexed; catalog
entries under a scanned root that are no longer there are removed, except
where that would lose a library by accident: under a folder that could not
be read, or a folder that lost all its indexed files at once (an unmounted
drive, a dropped share), entries are kept until ``--prune`` or ``vmr forget``.
Symlinked folders are not followed (no loops); a symlinked file is indexed by
its link name.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field

from .catalog import CATALOG_FILE
from .errors import VmrError
from .export import MARKER, without_own_outputs
from .paths import absolute, extension, is_video_name, printable, quoted_tilde, under

FINGERPRINT_BYTES = 256 * 1024


@dataclass
class Found:
    path: str
    size: int
    mtime_ns: int
    fingerprint: str | None = None  # computed only where a move must be told from a new file


@dataclass
class Plan:
    """What an index run has to do."""

    add: list = field(default_factory=list)        # (Found, None)
    update: list = field(default_factory=list)     # (Found, catalog row)
    move: list = field(default_factory=list)       # (Found, catalog row it moved from)
    touched: list = field(default_factory=list)    # (Found, catalog row): new mtime, same size and print
    replaced: list = field(default_factory=list)   # (Found, row there before, vanished row whose file it is)
    own_outputs: int = 0                           # files vmr made (cuts, previews): passed over
    remove: list = field(default_factory=list)     # catalog rows
    unchanged: int = 0
    colour_unknown: list = field(default_factory=list)  # (Found, row): unchanged, indexed before schema 5
    failed_before: int = 0                         # files recorded as failed, unchanged: not tried again
    failed: list = field(default_factory=list)     # {"path", "error"}
    kept: list = field(default_factory=list)       # {"path", "videos", "reason"}: entries not removed
    skipped: dict = field(default_factory=dict)    # extension -> files not looked at
    same_file: list = field(default_factory=list)  # {"path", "indexed_as"}: another name of an indexed file
    copies: list = field(default_factory=list)     # (Found, None or its row): new or changed, with the
    #                                                size and print of an indexed file or an earlier new one
    held: dict | None = None                       # KEPT_META to record before any change (None: as it is)
    reroot: list = field(default_factory=list)     # (row, root): unchanged entries whose recorded root's
    #                                                walk no longer reaches them (a system folder named since)
    system_folders: list = field(default_factory=list)  # folders passed over (SYSTEM_FOLDERS) that hold videos


@dataclass
class Walk:
    """What a walk over the roots found."""

    found: list = field(default_factory=list)       # Found, sorted by path bytes
    failed: list = field(default_factory=list)      # {"path", "error"}
    unreadable: dict = field(default_factory=dict)  # folder -> why it could not be listed
    skipped: Counter = field(default_factory=Counter)  # extension -> files not looked at
    system_folders: list = field(default_factory=list)  # folders not entered (SYSTEM_FOLDERS)


APPLEDOUBLE = "._"  # macOS writes '._NAME' beside files it copies to non-Mac disks
# A vmr library's own files and folders (a folder holding catalog.db and shards/ is one): a library
# kept inside an indexed folder listed them as the user's skipped files on every run.
LIBRARY_FILES = (CATALOG_FILE, "frames.db", "appearance.faiss", "write.lock", ".vmr-")
LIBRARY_FOLDERS = ("shards", "previews", "partial")
# Folders a system keeps on a disk, never the user's videos as such: trash (the desktop's on a
# drive, macOS, Windows, Synology, QNAP, Samba), a NAS's previews (Synology's @eaDir holds an MP4
# transcode of every video: each indexed twice), snapshots (a copy of the whole share).  A walk
# does not enter them; a folder named to 'vmr index' is indexed all the same.  (The desktop's
# own trash, ~/.local/share/Trash, is named Trash: matched by its place, TRASH_PLACE.)
SYSTEM_FOLDERS = frozenset(name.casefold() for name in (
    ".Trash", ".Trashes", "$RECYCLE.BIN", "#recycle", "@Recycle", ".recycle",
    "@eaDir", ".@__thumb", "@__thumb", "#snapshot", "@Recently-Snapshot", ".snapshot", ".snapshots",
    "System Volume Information"))
# Windows 98's and NT's trash, always in capitals: a user's own 'Recycled' folder is not one.
SYSTEM_FOLDERS_EXACT = frozenset(("RECYCLER", "RECYCLED"))
TRASH_PLACE = os.path.join(".local", "share", "Trash")


def is_system_folder(path: str) -> bool:
    """Whether the folder at path is one of SYSTEM_FOLDERS (a drive's trash: .Trash-1000 too)."""
    base = os.path.basename(path)
    name = base.casefold()
    return name in SYSTEM_FOLDERS or base in SYSTEM_FOLDERS_EXACT or re.fullmatch(r"\.trash-\d+", name) is not None \
        or path.endswith(os.sep + TRASH_PLACE)


def _in_system_folder(path: str, top: str = os.sep) -> bool:
    """Whether path, or a folder between it and top (top not included), is a system folder."""
    return any(is_system_folder(folder) for folder in _folders_up(path, top))


def _print_of(item: Found) -> str | None:
    """item's fingerprint, computed once (set on item), or None when the file cannot be read."""
    try:
        item.fingerprint = item.fingerprint or fingerprint(item.path, item.size)
    except OSError:
        return None
    return item.fingerprint


def _same_print(item: Found, row: dict) -> bool:
    """Whether the file still has the row's fingerprint."""
    return bool(row.get("fingerprint")) and _print_of(item) == row["fingerprint"]


def fingerprint(path: str, size: int) -> str:
    """sha256 of the size, the first and the last 256 KiB: cheap, and survives a rename."""
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(FINGERPRINT_BYTES))
        if size > FINGERPRINT_BYTES:
            handle.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
            digest.update(handle.read(FINGERPRINT_BYTES))
    return digest.hexdigest()


def find_videos(roots: list[str], indexed=frozenset()) -> Walk:
    """Video files under roots (by extension; a file named directly is always taken, and so is
    one in ``indexed``, the catalog's paths: named once, it stays taken when its folder is).

    A folder that cannot be listed (permissions, a dropped network share) is
    recorded as unreadable, so that its entries are kept; a root that does not
    exist is simply empty (the caller decides whether that is allowed).
    """
    walk = Walk()
    found: dict[str, Found] = {}
    indexed = set(indexed) | {root for root in roots if not os.path.isdir(root)}  # named with its folder

    def consider(path: str, named: bool) -> None:
        if os.path.basename(path) == MARKER:
            return  # vmr's own note in its export folder: not a file the user would index
        taken = named or path in indexed
        if not taken and not is_video_name(path):
            walk.skipped[extension(path) or "(none)"] += 1
            return
        if not taken and os.path.basename(path).startswith(APPLEDOUBLE):
            walk.skipped[APPLEDOUBLE + "*"] += 1  # a Mac's metadata beside a copied file, never a video
            return
        try:
            st = os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                reason = "symbolic link loop"
            elif os.path.islink(path):
                reason = "broken symbolic link"
            else:
                reason = exc.strerror or str(exc)
            walk.failed.append({"path": path, "error": reason})
            return
        if stat.S_ISREG(st.st_mode):
            found[path] = Found(path, st.st_size, st.st_mtime_ns)
        elif named:
            walk.failed.append({"path": path, "error": "not a regular file"})

    def unreadable(path: str, exc: OSError) -> None:
        reason = exc.strerror or str(exc)
        walk.unreadable[path] = reason
        walk.failed.append({"path": path, "error": f"cannot read folder: {reason}"})

    for root in roots:
        try:
            st = os.stat(root)
        except FileNotFoundError:
            if os.path.islink(root):
                consider(root, named=True)  # a broken link: recorded as such
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                consider(root, named=True)
            else:  # EACCES on a parent, EIO, a stale or disconnected share: keep what is under it
                unreadable(root, exc)
            continue
        if not stat.S_ISDIR(st.st_mode):
            consider(root, named=True)
            continue
        for base, dirs, files in os.walk(root, onerror=lambda exc, root=root: unreadable(
                absolute(exc.filename or root), exc), followlinks=False):
            dirs.sort()
            for name in [name for name in dirs if is_system_folder(os.path.join(base, name))]:
                dirs.remove(name)
                walk.system_folders.append(os.path.join(base, name))
            if CATALOG_FILE in files and "shards" in dirs:  # a vmr library: none of its files is the user's
                dirs[:] = [name for name in dirs if name not in LIBRARY_FOLDERS]
                files = [name for name in files if not name.startswith(LIBRARY_FILES)]
            for name in sorted(files):
                consider(os.path.join(base, name), named=False)
            for name in dirs:  # symlinked folders are listed as dirs but never entered
                full = os.path.join(base, name)
                if os.path.islink(full) and is_video_name(full):
                    consider(full, named=False)
    walk.found = sorted(found.values(), key=lambda f: os.fsencode(f.path))
    return walk


def collapse(roots: list[str]) -> list[str]:
    """Roots without those the walk of another root reaches, each once, in order.  A root inside
    another through a symlinked folder stays a root: the walk does not follow links, and its
    entries were removed (or held as an unmounted drive's) by every 'vmr index' with no PATH."""
    kept = Roots([])
    for root in sorted(set(roots), key=len):
        if kept.walked_root(root, of_folder=True) is None:
            kept.add(root)
    return sorted(kept.all)


class Roots:
    """The roots of an index run, found for a path among its ancestors (set lookups), not by
    comparing it with every root: 'vmr index ~/Downloads/*.mp4' makes every file a root, and a
    plan that compared each entry with each root took 14 s at 6,000 files (quadratic)."""

    def __init__(self, roots):
        self.all = set(roots)
        self._linked: dict = {}  # (folder, root) -> reached only through a symlinked folder
        self._above: dict = {}  # folder -> holding(folder)
        self._walked: dict = {}  # folder -> walked_root of a file in it (not a root itself)

    def add(self, root: str) -> None:
        self.all.add(root)
        self._above.clear()
        self._walked.clear()

    def holding(self, path: str) -> list[str]:
        """The roots path lies under (or is), the nearest first.  Those above its folder are
        looked up once per folder: a plan asks for every entry several times, and a no-op index
        of 5,000 videos spent half its plan in os.path.dirname (bench/noop_index.py)."""
        if not self.all:
            return []
        folder = os.path.dirname(path)
        if folder == path:
            return self._up(path)
        if folder not in self._above:
            self._above[folder] = self._up(folder)
        return ([path] if path in self.all else []) + self._above[folder]

    def _up(self, path: str) -> list[str]:
        out = []
        while True:
            if path in self.all:
                out.append(path)
            parent = os.path.dirname(path)
            if parent == path:
                return out
            path = parent

    def walked_root(self, path: str, of_folder: bool = False) -> str | None:
        """The nearest root whose walk reaches path (not through a symlinked folder), or None.
        ``of_folder``: path is a folder, itself checked for being a link, else a file's."""
        if of_folder:
            return next((root for root in self.holding(path) if self.reaches(root, path, True)), None)
        if path in self.all:
            return path  # (a root's walk reaches the root)
        folder = os.path.dirname(path)  # the rest depends on the file's folder only: looked up once
        if folder not in self._walked:
            self._walked[folder] = next((root for root in self.holding(path) if self.reaches(root, path)), None)
        return self._walked[folder]

    def reaches(self, root: str, path: str, of_folder: bool = False) -> bool:
        """Whether the walk of root (one of these or not; path lies under it) reaches path."""
        if root == path:
            return True
        folder = path if of_folder else os.path.dirname(path)
        if (folder, root) not in self._linked:
            self._linked[folder, root] = _through_link(folder, root)
        return not self._linked[folder, root]


def _folders_up(path: str, top: str):
    """path and the folders above it, up to top (not itself)."""
    while path != top and under(path, top):
        yield path
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def _through_link(path: str, root: str) -> bool:
    """Whether a folder between root (not itself) and path (itself included) is a symlink, or a
    system folder (is_system_folder): root's walk does not go there."""
    return any(os.path.islink(folder) or is_system_folder(folder) for folder in _folders_up(path, root))


def check_roots(paths, catalog=None, prune: bool = False) -> list[str]:
    """Absolute roots; a missing one is an error, unless the library holds entries under it
    and --prune asks to drop them (without --prune they are kept, and the error says so)."""
    given: dict[str, str] = {}  # root -> what was typed (for the message); 'dir' and 'dir/' once
    for path in paths:
        given.setdefault(absolute(path), path)
    roots = list(given)
    for root in roots:
        try:
            os.lstat(root)
            continue
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError:
            continue  # there but cannot be looked at (a parent's permissions): the walk keeps it
        held = len(catalog.videos_under(root)) if catalog is not None else 0
        if held and prune:
            continue
        if held:
            raise VmrError(f"no such file or folder: {printable(root)}; the library keeps its {held} "
                           "entries under it (unmounted drive?): 'vmr index --prune PATH' or "
                           "'vmr forget PATH' drops them")
        raise VmrError(f"no such file or folder: {printable(root)}{quoted_tilde(given[root])}")
    return roots


KEPT_META = "kept_missing"  # {path: [video id, folder]}: entries kept as a folder lost at once


def held_before(catalog) -> dict:
    """The entries an earlier run kept as part of a folder that lost all its files at once."""
    try:
        held = json.loads(catalog.get_meta(KEPT_META) or "{}")
    except ValueError:
        return {}
    return held if isinstance(held, dict) else {}


def plan_index(catalog, roots: list[str], prune: bool = False, signature: str | None = None) -> Plan:
    """Compare the files under roots with the catalog.

    Entries whose files were not seen are removed, except: under a folder that
    could not be read (kept: its files may be there), and under a folder (a
    root or one inside it) that has lost all of its indexed files at once, at
    least two, which is what an unmounted drive or a dropped share looks like
    (kept unless ``prune``).  A single file deleted is removed as usual.  A
    failed file is tried again when it changes, or when ``signature`` (what
    vmr reads videos with) is not what it failed with.
    """
    by_path = {v["path"]: v for v in catalog.videos()}
    walk = find_videos(roots, indexed=by_path.keys())
    theirs = without_own_outputs(catalog, walk.found)  # vmr's own cuts are never indexed
    plan = Plan(failed=walk.failed, skipped=dict(walk.skipped), own_outputs=len(walk.found) - len(theirs))
    # An own output an older vmr indexed as a video (it knew fewer of them) is removed as such: left
    # among the missing, a folder of them was 'kept' as an unmounted drive, and searched for good.
    own = {f.path for f in walk.found} - {f.path for f in theirs}
    indexed_own = [by_path.pop(path) for path in sorted(own) if path in by_path]
    # Entries under a system folder the walk passed over (a trash, a NAS's previews) go, as if their
    # files were deleted (an older vmr entered them): neither searched nor kept as a lost drive's.
    # Those indexed with the folder (or one inside it) named are left alone: not this walk's.
    lookup = Roots(roots)  # the root each entry is judged under (its walk reaches it)
    # (also under a system folder that is gone: no walk sees it, and its entries stayed for good)
    passed = Roots(walk.system_folders)
    for path in sorted(by_path):
        held_by = lookup.holding(path)
        if held_by and lookup.walked_root(path) is None and (  # (one named is walked)
                passed.holding(path) or any(_in_system_folder(os.path.dirname(path), root) for root in held_by)):
            row = by_path.pop(path)
            if not (row.get("root") and _in_system_folder(row["root"])):
                indexed_own.append(row)
    if walk.system_folders:
        plan.system_folders = [folder for folder in walk.system_folders  # (one named is no news)
                               if not any(under(root, folder) for root in roots) and _holds_videos(folder)]
    walk.found = theirs
    present = {f.path for f in walk.found} | {f["path"] for f in walk.failed}
    # Entries under a symlinked folder inside a root are not the root's (its walk does not go
    # there): they are left alone, not taken for deleted; that folder indexed by name is a root.
    in_scope = [v for v in by_path.values() if lookup.walked_root(v["path"]) is not None]
    unreadable = Roots(walk.unreadable)
    unread_held: Counter = Counter()
    gone: dict[str, dict] = {}
    for row in in_scope:
        folder = next(iter(unreadable.holding(row["path"])), None)
        if folder is not None:
            unread_held[folder] += 1
        elif row["path"] not in present:
            gone[row["path"]] = row
    lost_first = _lost_folders(in_scope, gone, lookup, unreadable)
    for folder, count in unread_held.items():
        plan.kept.append({"path": folder, "videos": count,
                          "reason": f"cannot read the folder ({walk.unreadable[folder]}); its {count} "
                                    "entries are kept: 'vmr forget PATH' drops them"})
    new: list[Found] = []

    def recorded_root_reaches(row) -> bool:
        root = row.get("root")
        if root is None:
            return True  # (recorded by a vmr that kept no root: left as it is)
        return under(row["path"], root) and lookup.reaches(root, row["path"])

    for item in walk.found:
        row = by_path.get(item.path)
        if row is not None and row.get("root") != (root := lookup.walked_root(item.path)) and root is not None \
                and not recorded_root_reaches(row):
            # recorded under a root whose walk passes it over now (a trash an older vmr indexed by
            # walking its parent, named since): recorded under this one, or the parent's next walk
            # removed what the user had just named
            plan.reroot.append((row, root))
        if row is None:
            new.append(item)
        elif row["status"] == "ok" and not row.get("bad_frames") and row["size"] == item.size \
                and row["mtime_ns"] != item.mtime_ns and _same_print(item, row):
            # (a file indexed with damaged frames is read again: a download finished in place can
            # keep its size and its first and last 256 KiB)
            plan.touched.append((item, row))  # touched, or copied back without its times: same content
        elif (row["size"], row["mtime_ns"]) != (item.size, item.mtime_ns) or row["status"] == "stale":
            plan.update.append((item, row))
        elif row["status"] == "failed" and signature is not None and row.get("failed_with") != signature:
            plan.update.append((item, row))  # vmr, its decoder or ffmpeg changed: try again
        elif row["status"] == "failed":
            plan.failed_before += 1  # recorded as failed, unchanged since: not tried again
        else:
            plan.unchanged += 1
            if row.get("transfer") is None:  # indexed before vmr tone-mapped HDR: is it HDR?
                plan.colour_unknown.append((item, row))
    gone_by_print: dict[tuple, list] = {}
    for row in gone.values():
        if row["status"] == "ok" and row["fingerprint"]:
            gone_by_print.setdefault((row["size"], row["fingerprint"]), []).append(row)
    # For new files only: indexed entries by size (another name of the same file), and those
    # outside these roots by print (a file moved in from a folder indexed before, the folder
    # moved out of its tree: matched when its old path is gone; a file that failed too, or its
    # entry stayed at the old path, listed as failed, until an index of that path).
    elsewhere: dict[tuple, list] = {}
    by_size: dict[int, list] = {}
    prints: set[tuple] = set()  # (size, print) of indexed files and of new ones planned to be added
    if new:
        scope = {row["path"] for row in in_scope}
        for row in by_path.values():
            if row["status"] not in ("ok", "failed"):
                continue
            if row["status"] == "ok":
                by_size.setdefault(row["size"], []).append(row)
                if row["fingerprint"]:
                    prints.add((row["size"], row["fingerprint"]))
            if row["fingerprint"] and row["path"] not in scope:
                elsewhere.setdefault((row["size"], row["fingerprint"]), []).append(row)
    this_run: dict[tuple, str] = {}  # (device, inode) -> the first new name seen for it
    inodes: dict[int, dict] = {}  # size -> _by_inode of the indexed files of that size, made once
    for item in new:
        if item.size not in inodes:
            inodes[item.size] = _by_inode(by_size.get(item.size, []))
        indexed_as = _same_file(item, inodes[item.size], this_run)
        if indexed_as is not None:  # a symlinked folder and its target, or a hard link: indexed once
            plan.same_file.append({"path": item.path, "indexed_as": indexed_as})
            continue
        try:
            item.fingerprint = fingerprint(item.path, item.size)
        except OSError as exc:
            plan.failed.append({"path": item.path, "error": exc.strerror or str(exc)})
            continue
        candidates = gone_by_print.get((item.size, item.fingerprint))
        match = candidates.pop(0) if candidates else None
        if match is None:
            outside = elsewhere.get((item.size, item.fingerprint), [])
            match = next((row for row in outside if not os.path.lexists(row["path"])), None)
            if match is not None:
                outside.remove(match)
        if match is not None:
            plan.move.append((item, match))
            gone.pop(match["path"], None)
        elif (item.size, item.fingerprint) in prints:  # a copy: its vectors are copied, not computed
            plan.copies.append((item, None))
        else:
            prints.add((item.size, item.fingerprint))
            plan.add.append((item, None))
    # A changed file that holds what a vanished entry held: that file was moved over this one
    # (the edited version renamed over the original).  Its entry moves here and keeps its
    # vectors; the entry of what was here before is removed.
    for item, row in list(plan.update):
        if not any(gone_by_print.values()):
            break
        if _print_of(item) is None:
            continue  # indexed again as planned, which says why
        candidates = gone_by_print.get((item.size, item.fingerprint))
        if candidates:
            match = candidates.pop(0)
            gone.pop(match["path"], None)
            plan.update.remove((item, row))
            plan.replaced.append((item, row, match))
    # A changed file that now holds what another indexed file holds (a copy made over it): its
    # vectors are copied, as a new copy's are (copy_source then checks that one is unchanged).
    for item, row in list(plan.update):
        if _print_of(item) is not None and any(other["id"] != row["id"] for other in
                                               catalog.videos_with_print(item.size, item.fingerprint)):
            plan.update.remove((item, row))
            plan.copies.append((item, row))
    # Folders judged on what was missing before any file was matched as moved: a file copied off
    # a drive that is then unmounted matches its entry as a move, and must not make the drive's
    # other entries look deleted one by one (a folder moved whole matches every entry: none left).
    # Only a move that kept the file's time is taken for one within the folder: a rename keeps it,
    # a copy made since (the old card's file copied onto the card now in the same reader) does not.
    moved_to = [item.path for item, row in plan.move if item.mtime_ns == row["mtime_ns"]] \
        + [item.path for item, _b, row in plan.replaced if item.mtime_ns == row["mtime_ns"]]
    kept_now: dict[str, str] = {}  # path -> the folder it is kept under
    held = held_before(catalog)
    # What a desktop or a NAS moved to its trash was deleted by the user, not on a drive that is
    # away: such a folder is not kept (before, deleting a folder of videos to the trash left them
    # in every search until --prune).
    doubtful = [] if prune else [row for rows in lost_first.values() for row in rows if row["path"] in gone] \
        + [row for path, row in gone.items() if path in held]
    from .trash import trashed

    in_trash = trashed(doubtful, walk.system_folders)
    for folder, rows in lost_first.items():
        # What a trash holds was deleted; the folder's other missing files are judged as before (one
        # file deleted to the trash, then the drive unmounted: its other entries were removed too)
        rows = [row for row in rows if row["path"] in gone and row["path"] not in in_trash]
        if prune or not rows or any(under(path, folder) for path in moved_to):
            continue  # (one of its files moved within it, into a subfolder: it is there, not unmounted)
        for row in rows:
            gone.pop(row["path"], None)
            kept_now[row["path"]] = folder
        some = (f"all {len(rows)} indexed files in it are missing at once" if len(rows) == len(lost_first[folder])
                else f"all its indexed files are missing at once; {len(rows)} of them "
                f"{'was' if len(rows) == 1 else 'were'} found nowhere else")
        plan.kept.append(_kept(folder, len(rows), some))
    # Entries an earlier run kept, still missing, stay kept until --prune or 'vmr forget': the
    # folder may hold files indexed since (another card in the same reader), and it no longer
    # looks as if it lost all its files at once; they were removed by the next run without a word.
    earlier: dict[str, list] = {}
    for path, row in list(gone.items()):
        mark = held.get(path)
        if not prune and path not in in_trash and isinstance(mark, list) and len(mark) == 2 \
                and mark[0] == row["id"]:
            earlier.setdefault(mark[1], []).append(row)
    for folder, rows in earlier.items():
        for row in rows:
            gone.pop(row["path"], None)
            kept_now[row["path"]] = folder
        plan.kept.append(_kept(folder, len(rows), f"{len(rows)} indexed file{'s' if len(rows) != 1 else ''} in it "
                               f"{'have' if len(rows) != 1 else 'has'} been missing since an earlier run found "
                               "all its indexed files missing at once"))
    plan.remove = indexed_own + list(gone.values())
    # What this run did not judge (outside its roots, under a folder it could not read) stays held.
    judged = {row["path"] for row in in_scope if not unreadable.holding(row["path"])}
    after = {path: mark for path, mark in held.items() if path not in judged and path in by_path
             and isinstance(mark, list) and mark and mark[0] == by_path[path]["id"]}
    after.update({path: [by_path[path]["id"], folder] for path, folder in kept_now.items()})
    if after != held:
        plan.held = after
    return plan


HOLDS_VIDEOS_LOOK = 5000  # entries at most looked at in a passed-over folder (a NAS's snapshots copy whole shares)


def _holds_videos(folder: str) -> bool:
    """Whether a video file lies under folder, among its first HOLDS_VIDEOS_LOOK entries (for the
    note on what was passed over: every run pays for it, a cron job's too)."""
    seen = 0
    for _base, dirs, files in os.walk(folder):
        if any(is_video_name(name) and not name.startswith(APPLEDOUBLE) for name in files):
            return True
        seen += len(dirs) + len(files)
        if seen >= HOLDS_VIDEOS_LOOK:
            return False
    return False


def _kept(folder: str, count: int, some: str) -> dict:
    """The kept: note of a folder whose ``count`` missing entries are kept; ``some`` says which."""
    what = ("the folder is gone, and" if not os.path.lexists(folder) else "")
    moved = ", and 'vmr index NEW-PATH' finds them where the folder went" if what else ""
    return {"path": folder, "videos": count,
            "reason": f"{what} {some} (unmounted drive? dropped share?); they are kept: ".lstrip()
                      + f"'vmr index --prune' or 'vmr forget PATH' drops them{moved}"}


def as_recorded(path: str, size: int, mtime_ns: int) -> bool:
    """Whether the file at path has the size and time it was recorded (planned, or indexed) with."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == (size, mtime_ns)


SAMPLES = 16  # blocks of FINGERPRINT_BYTES // 4 compared, evenly spaced, besides the fingerprint


def copy_source(catalog, item: Found) -> dict | None:
    """The indexed video whose file holds what ``item``'s does, or None.

    A copy (a backup, a phone's dump copied twice) would cost a full decode and encode and
    show every moment twice in a search.  The fingerprint (size, first and last 256 KiB) is
    trusted for moves, where the old file is gone; a copy's source is still there, so SAMPLES
    blocks across both files are compared too, and the source must be as it was indexed."""
    for row in catalog.videos_with_print(item.size, item.fingerprint):
        if as_recorded(row["path"], row["size"], row["mtime_ns"]) and _same_samples(row["path"], item.path,
                                                                                     item.size):
            return row
    return None


def _same_samples(a: str, b: str, size: int) -> bool:
    block = FINGERPRINT_BYTES // 4
    try:
        with open(a, "rb") as one, open(b, "rb") as two:
            for k in range(SAMPLES):
                offset = max(0, (size - block) * k // max(1, SAMPLES - 1))
                one.seek(offset)
                two.seek(offset)
                if one.read(block) != two.read(block):
                    return False
    except OSError:
        return False
    return True


def _same_file(item, indexed: dict, this_run: dict) -> str | None:
    """The path under which the file at item.path is already indexed, or is about to be in this
    run (the same device and inode reached by another name), or None.  ``indexed``: the
    catalog's files of its size by (device, inode) (_by_inode)."""
    try:
        mine = os.stat(item.path)
    except OSError:
        return None
    key = (mine.st_dev, mine.st_ino)
    if key in indexed:
        return indexed[key]["path"]
    if key in this_run:
        return this_run[key]
    this_run[key] = item.path
    return None


def _by_inode(rows) -> dict[tuple, dict]:
    """{(device, inode): the first row whose file it is} for rows of one size, each file looked at
    once: stat'ing every same-size row again for each new file made a dashcam's folder of equal
    sizes quadratic (3,000 new files beside 3,000 indexed: 67 s to plan)."""
    found: dict[tuple, dict] = {}
    for row in rows:
        try:
            other = os.stat(row["path"])
        except OSError:
            continue
        found.setdefault((other.st_dev, other.st_ino), row)
    return found


def same_file_row(mine: os.stat_result, rows) -> dict | None:
    """The first of rows whose file is the one ``mine`` describes (same device and inode: a hard
    link, or a path through a symbolic link), or None."""
    return _by_inode([row for row in rows if row["size"] == mine.st_size]).get((mine.st_dev, mine.st_ino))


def _lost_folders(in_scope: list[dict], gone: dict, roots: Roots, unreadable: Roots) -> dict[str, list]:
    """The top-most folders (a root or inside one) that held two or more indexed videos, none
    of which was seen now: folder -> their rows.  Entries of files that failed do not count
    (a deleted folder of broken files is not a drive to wait for): they are removed."""
    total: Counter = Counter()
    missing: Counter = Counter()
    chains = {}
    for row in in_scope:
        if row["status"] == "failed" or unreadable.holding(row["path"]):
            continue
        root = roots.walked_root(row["path"])
        # files named one by one ('vmr index /media/cam/*.mp4') are judged by their folder: all
        # of a drive's named files removed at once when it was unmounted had to be embedded again
        chain = list(_folders_between(row["path"], root)) or [os.path.dirname(row["path"])]
        chains[row["path"]] = chain
        for folder in chain:
            total[folder] += 1
            if row["path"] in gone:
                missing[folder] += 1
    lost: dict[str, list] = {}
    for path, row in gone.items():
        for folder in reversed(chains.get(path, [])):  # the top-most first
            if total[folder] >= 2 and missing[folder] == total[folder]:
                lost.setdefault(folder, []).append(row)
                break
    return lost


def _folders_between(path: str, root: str):
    """The folders holding path, from its own up to root (none when root is the file itself)."""
    folder = os.path.dirname(path)
    while under(folder, root):
        yield folder
        if folder == root:
            return
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent
