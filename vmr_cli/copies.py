"""Which indexed videos hold one content: copies of a file (a backup folder, a phone's dump
copied twice) are indexed with their source's vectors (scan.copy_source) and shown once by a
search, under one of them, the others named as its ``copies``.

One content: the same size and fingerprint (first and last 256 KiB) *and* the same stored clip
vectors.  The fingerprint alone is not enough here: two files that differ only between their
first and last 256 KiB (raw video with black ends) are each embedded as themselves, and were
taken for copies, so one's moments were never shown."""

from __future__ import annotations

import os

import numpy as np

from .scan import as_recorded


def print_of(row: dict):
    """What copies share: (size, fingerprint); a row without a fingerprint is its own."""
    return (row["size"], row["fingerprint"]) if row["fingerprint"] else row["id"]


def copies_of(library, row: dict) -> list[str]:
    """The paths of the other files there now that hold row's content (only the rows of its
    fingerprint are read: building every row took 0.3 s a query at 20,000 videos)."""
    if not row.get("fingerprint"):
        return []
    rows = library.catalog.videos_with_print(row["size"], row["fingerprint"])
    if len(rows) < 2:
        return []
    return others(contents([row] + [v for v in rows if v["id"] != row["id"]], library.vectors)[row["id"]], row)


def others(content: list[dict], row: dict) -> list[str]:
    """The paths of the rows of row's content other than row whose files are there now."""
    return [v["path"] for v in content if v["id"] != row["id"] and os.path.exists(v["path"])]


def contents(rows: list[dict], vectors) -> dict[int, list[dict]]:
    """{id: the rows of its content} for rows of one size and fingerprint: those whose stored
    clip vectors are equal (a copy takes its source's; a file the fingerprint cannot tell from
    another, embedded as itself, has its own).  Each content's rows sorted, the one to show
    first: a file as it was indexed (not gone, not changed since: its moments are still there),
    nearest the top of its folders (a backup is usually deeper than what it backs up), then
    the first indexed."""
    parts: list[tuple] = []  # (vectors or None, rows)
    for row in rows:
        mine = vectors.read_array(row["id"], row["vectors_token"], "A")  # None: not a copy of anything
        for theirs, part in parts:
            if mine is not None and theirs is not None and mine.shape == theirs.shape \
                    and np.array_equal(mine, theirs):
                part.append(row)
                break
        else:
            parts.append((mine, [row]))
    out = {}
    for _vectors, part in parts:
        part.sort(key=lambda v: (not as_recorded(v["path"], v["size"], v["mtime_ns"]), v["path"].count(os.sep)))
        out.update({v["id"]: part for v in part})
    return out
