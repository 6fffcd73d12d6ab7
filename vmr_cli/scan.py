"""Find video files under the given roots and compare them with the catalog.

Incremental like rclip: a file whose (size, mtime) is unchanged is skipped; a
new path whose size and head+tail fingerprint match a vanished catalog entry
is a move and keeps its vectors; a changed file is re-indexed; catalog
entries under a scanned root that are no longer there are removed.  Symlinked
folders are not followed (no loops); a symlinked file is indexed by its link
name.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass, field

from .errors import VmrError
from .export import without_own_outputs
from .paths import absolute, is_video_name, under

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
    remove: list = field(default_factory=list)     # catalog rows
    unchanged: int = 0
    failed: list = field(default_factory=list)     # {"path", "error"}


def fingerprint(path: str, size: int) -> str:
    """sha256 of the size, the first and the last 256 KiB: cheap, and survives a rename."""
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(FINGERPRINT_BYTES))
        if size > FINGERPRINT_BYTES:
            handle.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
            digest.update(handle.read(FINGERPRINT_BYTES))
    return digest.hexdigest()


def find_videos(roots: list[str]) -> tuple[list[Found], list[dict]]:
    """Video files under roots (by extension; a file named directly is always taken)."""
    found: dict[str, Found] = {}
    failed: list[dict] = []

    def consider(path: str, named: bool) -> None:
        if not named and not is_video_name(path):
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
            failed.append({"path": path, "error": reason})
            return
        if stat.S_ISREG(st.st_mode):
            found[path] = Found(path, st.st_size, st.st_mtime_ns)
        elif named:
            failed.append({"path": path, "error": "not a regular file"})

    for root in roots:
        if os.path.isdir(root):
            def on_error(exc, root=root):
                failed.append({"path": absolute(exc.filename or root), "error": exc.strerror or str(exc)})
            for base, dirs, files in os.walk(root, onerror=on_error, followlinks=False):
                dirs.sort()
                for name in sorted(files):
                    consider(os.path.join(base, name), named=False)
                for name in dirs:  # symlinked folders are listed as dirs but never entered
                    full = os.path.join(base, name)
                    if os.path.islink(full) and is_video_name(full):
                        consider(full, named=False)
        else:
            consider(root, named=True)
    return sorted(found.values(), key=lambda f: os.fsencode(f.path)), failed


def check_roots(paths) -> list[str]:
    roots = [absolute(p) for p in paths]
    for root in roots:
        if not os.path.lexists(root):
            raise VmrError(f"no such file or folder: {root}")
    return roots


def plan_index(catalog, roots: list[str]) -> Plan:
    found, failed = find_videos(roots)
    found = without_own_outputs(catalog, found)  # vmr's own cuts are never indexed
    plan = Plan(failed=failed)
    failed_paths = {f["path"] for f in failed}
    by_path = {v["path"]: v for v in catalog.videos()}
    present = {f.path for f in found} | failed_paths
    gone = {v["path"]: v for v in by_path.values()
            if any(under(v["path"], r) for r in roots) and v["path"] not in present}
    new: list[Found] = []
    for item in found:
        row = by_path.get(item.path)
        if row is None:
            new.append(item)
        elif row["size"] == item.size and row["mtime_ns"] == item.mtime_ns and row["status"] != "stale":
            plan.unchanged += 1
        else:
            plan.update.append((item, row))
    gone_by_print: dict[tuple, list] = {}
    for row in gone.values():
        if row["status"] == "ok" and row["fingerprint"]:
            gone_by_print.setdefault((row["size"], row["fingerprint"]), []).append(row)
    for item in new:
        try:
            item.fingerprint = fingerprint(item.path, item.size)
        except OSError as exc:
            plan.failed.append({"path": item.path, "error": exc.strerror or str(exc)})
            continue
        candidates = gone_by_print.get((item.size, item.fingerprint))
        match = candidates.pop(0) if candidates else None
        if match is not None:
            plan.move.append((item, match))
            gone.pop(match["path"], None)
        else:
            plan.add.append((item, None))
    plan.remove = list(gone.values())
    return plan
