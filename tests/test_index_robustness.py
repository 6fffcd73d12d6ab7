"""Never lose the library, round 2 (issue 11, index side; issue 12 item 7): folders that cannot
be read or lost all their files at once, errors of the environment, absurd durations, missing
vectors, extensions, damaged streams, `vmr forget`, `vmr status --failed`, a failed first run.

TESTING.md ("Round 2: index") lists every case with what the user sees.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PHONE, VTEST, make_video, small_disk, vmr, vmr_json, vmr_subprocess

from vmr_cli import indexer, probe
from vmr_cli.catalog import SCHEMA_VERSION, Catalog
from vmr_cli.errors import no_space_message
from vmr_cli.library import Library
from vmr_cli.paths import INDEX_EXTENSIONS, is_video_name
from vmr_cli.scan import plan_index


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def failures(summary) -> dict:
    return {os.path.basename(f["path"]): f["error"] for f in summary["failed"]}


def status():
    return vmr_json("status")


# -- 11.1: an unreadable or vanished folder keeps its entries ---------------------------------------
def test_unreadable_folder_keeps_its_entries(tiny_model, tmp_path):
    folder, lib = tmp_path / "v", tmp_path / "lib"
    make_video(folder / "top.mp4", [("red", 2.0)])
    make_video(folder / "trip" / "a.mp4", [("blue", 2.0)])
    make_video(folder / "trip" / "b.mp4", [("green", 2.0)])
    done = vmr_subprocess(lib, "index", folder, "--model", tiny_model, "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["added"] == 3, done.stderr
    os.chmod(folder / "trip", 0)
    try:
        done = vmr_subprocess(lib, "index", folder, "--json")
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        summary = json.loads(done.stdout)
        assert summary["removed"] == 0 and summary["unchanged"] == 1
        assert summary["kept"] == [{"path": str(folder / "trip"), "videos": 2, "reason": (
            "cannot read the folder (Permission denied); its 2 entries are kept: "
            "'vmr forget PATH' drops them")}]
        assert failures(summary) == {"trip": "cannot read folder: Permission denied"}
        # The table form says it in one line; --prune never drops what could not be read.
        done = vmr_subprocess(lib, "index", folder, "--prune")
        assert done.returncode == 1
        assert done.stderr.strip().splitlines() == [
            f"kept: {folder / 'trip'}: cannot read the folder (Permission denied); its 2 entries are "
            "kept: 'vmr forget PATH' drops them"]
        # A root whose parent cannot be searched cannot even be looked at: kept too.
        os.chmod(folder, 0o600)
        done = vmr_subprocess(lib, "index", folder / "trip", "--json")
        assert json.loads(done.stdout)["kept"][0]["videos"] == 2, done.stderr
    finally:
        os.chmod(folder, 0o755)
        os.chmod(folder / "trip", 0o755)
    done = vmr_subprocess(lib, "status", "--json")
    assert json.loads(done.stdout)["videos"] == 3
    done = vmr_subprocess(lib, "index", folder, "--json")
    assert json.loads(done.stdout)["unchanged"] == 3  # nothing was re-embedded


def test_a_file_copied_off_a_drive_before_it_was_unmounted_keeps_the_drives_other_entries(tiny_model, tmp_path):
    """The copy matches the drive's entry as a move; the drive's other entries were then removed
    one by one, as if deleted (2 of 2 here; 500 of 500 on a real card)."""
    root = tmp_path / "videos"
    for name, colour in (("drive/x.mp4", "red"), ("drive/y.mp4", "blue"), ("home/a.mp4", "green")):
        make_video(root / name, [(colour, 2.0)])
    vmr_json("index", root, "--model", tiny_model)
    shutil.copy(root / "drive" / "x.mp4", root / "home" / "a.mp4")  # over the original
    shutil.rmtree(root / "drive")  # unmounted: the mount point is gone
    summary = vmr_json("index", root)
    assert (summary["moved"], summary["removed"], summary["added"], summary["updated"]) == (1, 1, 0, 0)
    assert summary["kept"] == [{"path": str(root / "drive"), "videos": 1, "reason": (
        "the folder is gone, and all its indexed files are missing at once; 1 of them was found nowhere "
        "else (unmounted drive? dropped share?); they are kept: 'vmr index --prune' or 'vmr forget PATH' "
        "drops them, and 'vmr index NEW-PATH' finds them where the folder went")}]
    assert sorted(os.path.basename(v["path"]) for v in Library().catalog.videos()) == ["a.mp4", "y.mp4"]


def test_a_folder_reorganised_into_subfolders_is_not_taken_for_an_unmounted_drive(tiny_model, tmp_path):
    """Both of a folder's files gone from where they were, one moved into a new subfolder of it
    and one deleted: the deleted one stayed, 'kept: v: all its indexed files are missing at
    once ... (unmounted drive?)', and stayed in searches until --prune."""
    folder = tmp_path / "v"
    make_video(folder / "a.mp4", [("red", 2.0)])
    make_video(folder / "b.mp4", [("blue", 2.0)])
    vmr_json("index", folder, "--model", tiny_model)
    (folder / "2024").mkdir()
    os.rename(folder / "a.mp4", folder / "2024" / "a.mp4")
    os.unlink(folder / "b.mp4")
    summary = vmr_json("index", folder)
    assert (summary["moved"], summary["removed"], summary["kept"]) == (1, 1, [])
    assert [v["path"] for v in Library().catalog.videos()] == [str(folder / "2024" / "a.mp4")]


def test_folder_that_lost_all_its_files_at_once_is_kept_until_prune(tiny_model, tmp_path):
    root = tmp_path / "videos"
    for name, colour in (("keep1.mp4", "red"), ("keep2.mp4", "blue"), ("extra.mp4", "white"),
                         ("trip/a.mp4", "green"), ("trip/b.mp4", "yellow"), ("trip/day2/c.mp4", "gray")):
        make_video(root / name, [(colour, 2.0)])
    assert vmr_json("index", root, "--model", tiny_model)["added"] == 6
    trip = root / "trip"
    # An unmounted drive: the mount point is an empty folder.
    shutil.move(str(trip), str(tmp_path / "away"))
    trip.mkdir()
    summary = vmr_json("index", root)
    assert (summary["removed"], summary["unchanged"], summary["failed"]) == (0, 3, [])
    assert summary["kept"] == [{"path": str(trip), "videos": 3, "reason": (
        "all 3 indexed files in it are missing at once (unmounted drive? dropped share?); they are "
        "kept: 'vmr index --prune' or 'vmr forget PATH' drops them")}]
    code, out, err = vmr("index", root)
    assert err.strip() == (f"kept: {trip}: all 3 indexed files in it are missing at once (unmounted "
                           "drive? dropped share?); they are kept: 'vmr index --prune' or 'vmr forget "
                           "PATH' drops them")
    assert status()["videos"] == 6
    # A single file deleted is still removed, while the folder stays kept.
    os.unlink(root / "extra.mp4")
    summary = vmr_json("index")  # no PATH: the folders the library holds
    assert summary["removed"] == 1 and summary["kept"][0]["videos"] == 3
    # The mount point itself gone: kept, and said so; named explicitly, a clear error.
    trip.rmdir()
    assert vmr_json("index", root)["kept"][0]["reason"].startswith(
        "the folder is gone, and all 3 indexed files in it are missing at once")
    code, out, err = vmr("index", trip, expect=1)
    assert err.strip() == (f"Error: no such file or folder: {trip}; the library keeps its 3 entries under "
                           "it (unmounted drive?): 'vmr index --prune PATH' or 'vmr forget PATH' drops them")
    # The drive comes back: nothing to redo.
    shutil.move(str(tmp_path / "away"), str(trip))
    assert vmr_json("index", root)["unchanged"] == 5
    # Gone for good: --prune removes them (and their vectors).
    shutil.rmtree(trip)
    summary = vmr_json("index", root, "--prune")
    assert (summary["removed"], summary["kept"]) == (3, [])
    after = status()
    assert (after["videos"], after["vectors"], after["consistent"]) == (2, after["clips"], True)
    # A whole root that vanished (no PATH given: the library's own folders) is kept as well.
    shutil.move(str(root), str(tmp_path / "elsewhere"))
    summary = vmr_json("index")
    assert summary["kept"][0]["path"] == str(root) and summary["removed"] == 0
    assert summary["kept"][0]["reason"].endswith(", and 'vmr index NEW-PATH' finds them where the folder went")
    summary = vmr_json("index", tmp_path / "elsewhere")  # as it says: moved, nothing embedded again
    assert (summary["moved"], summary["added"], summary["updated"]) == (2, 0, 0)


def _card_swapped(mnt, model):
    """mnt/card: a card of a.mp4 and b.mp4 indexed, then another card in its place holding c.mp4."""
    card = mnt / "card"
    make_video(card / "a.mp4", [("red", 2.0)], size="64x48", fps=5)
    make_video(card / "b.mp4", [("blue", 2.0)], size="64x48", fps=5)
    vmr_json("index", mnt, "--model", model)
    shutil.rmtree(card)
    make_video(card / "c.mp4", [("green", 2.0)], size="64x48", fps=5)  # the other card
    return card


def test_entries_kept_for_a_folder_stay_kept_when_other_files_are_indexed_there(tiny_model, tmp_path):
    """Another card in the same reader: the first card's entries were kept ('all 2 indexed files
    in it are missing at once'), the new card's file indexed; the next run, nothing changed, removed
    them ('removed 2'), as if deleted, though --help says kept until --prune or 'vmr forget'."""
    card = _card_swapped(tmp_path / "mnt", tiny_model)
    first = vmr_json("index", tmp_path / "mnt")
    assert (first["added"], first["removed"], [k["videos"] for k in first["kept"]]) == (1, 0, [2])
    for run in ("index", "index"):
        again = vmr_json(run, tmp_path / "mnt")
        assert (again["removed"], [k["videos"] for k in again["kept"]]) == (0, [2]), again
        assert again["kept"][0]["reason"].startswith("2 indexed files in it have been missing since an earlier run")
    assert status()["videos"] == 3
    shutil.rmtree(card)  # the first card back: nothing embedded again, and the other card's one file removed
    make_video(card / "a.mp4", [("red", 2.0)], size="64x48", fps=5)
    make_video(card / "b.mp4", [("blue", 2.0)], size="64x48", fps=5)
    back = vmr_json("index", tmp_path / "mnt")
    assert (back["added"], back["updated"], back["removed"], back["kept"]) == (0, 0, 1, []), back
    shutil.rmtree(card)
    card.mkdir()
    vmr_json("index", tmp_path / "mnt")  # kept again
    assert vmr_json("index", tmp_path / "mnt", "--prune")["removed"] == 2 and status()["videos"] == 0


def test_entries_kept_for_a_folder_stay_kept_after_a_run_stopped_while_indexing(tiny_model, tmp_path, monkeypatch):
    """The record of what a run kept was written at its end: a run stopped while indexing the new
    card's files (Ctrl-C, kill -9) left none, and the next run, the folder holding files indexed
    since, removed the first card's entries as deleted ('removed 2')."""
    card = _card_swapped(tmp_path / "mnt", tiny_model)
    make_video(card / "d.mp4", [("yellow", 3.0)], size="64x48", fps=5)
    real, done = indexer.encode_distinct, []

    def stopped(*args, **kwargs):
        if done:
            raise KeyboardInterrupt  # c.mp4 committed, then the run is stopped
        done.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(indexer, "encode_distinct", stopped)
    assert vmr("index", tmp_path / "mnt", expect=None)[0] == 130
    monkeypatch.setattr(indexer, "encode_distinct", real)
    assert status()["videos"] == 3  # a, b kept; c indexed
    again = vmr_json("index", tmp_path / "mnt")
    assert (again["added"], again["removed"], [k["videos"] for k in again["kept"]]) == (1, 0, [2]), again


def test_forget_with_a_kept_record_that_is_not_json(tiny_model, tmp_path):
    make_video(tmp_path / "v" / "a.mp4", [("red", 2.0)], size="64x48", fps=5)
    vmr_json("index", tmp_path / "v", "--model", tiny_model)
    lib = Library()
    with lib.catalog.transaction():
        lib.catalog.set_meta("kept_missing", "{not json")
    lib.close()
    assert vmr_json("forget", tmp_path / "v")


def test_a_copy_of_a_lost_folders_file_in_a_subfolder_does_not_make_it_look_reorganised(tiny_model, tmp_path):
    """Card A out of the reader, card B in, with A's a.mp4 copied onto it in DCIM/: the copy matched
    a.mp4's entry as a move into a subfolder, so the folder was taken as there, and A's b.mp4 was
    removed as deleted ('removed 1').  A rename keeps the file's time; that copy did not."""
    card = tmp_path / "mnt" / "card"
    make_video(card / "a.mp4", [("red", 2.0)], size="64x48", fps=5)
    make_video(card / "b.mp4", [("blue", 2.0)], size="64x48", fps=5)
    vmr_json("index", tmp_path / "mnt", "--model", tiny_model)
    away = tmp_path / "card A"
    shutil.move(str(card), str(away))
    (card / "DCIM").mkdir(parents=True)
    shutil.copyfile(away / "a.mp4", card / "DCIM" / "a.mp4")  # a new file: a new time
    os.utime(card / "DCIM" / "a.mp4", ns=(time.time_ns(), time.time_ns() + 10**9))
    summary = vmr_json("index", tmp_path / "mnt")
    assert summary["removed"] == 0 and [k["videos"] for k in summary["kept"]] == [1], summary
    # a rename into a subfolder (the time kept), the other file deleted: removed, as before
    shutil.rmtree(card)
    shutil.move(str(away), str(card))
    vmr_json("index", tmp_path / "mnt", "--prune")
    (card / "sub").mkdir()
    os.rename(card / "a.mp4", card / "sub" / "a.mp4")
    os.unlink(card / "b.mp4")
    summary = vmr_json("index", tmp_path / "mnt")
    assert (summary["moved"], summary["removed"], summary["kept"]) == (1, 1, []), summary


def _row(catalog, path, root, status="ok"):
    with catalog.transaction():
        catalog.upsert_video({"path": path, "root": root, "size": 1, "mtime_ns": 1, "status": status,
                              "fingerprint": path})


def test_plan_keeps_only_what_a_folder_lost_at_once(tmp_path):
    """The plan alone (no media): nested folders, a sibling whose name starts like the folder,
    a single file, and a folder moved elsewhere (a move, not a loss)."""
    catalog = Catalog(str(tmp_path / "catalog.db"))
    root = tmp_path / "v"
    (root / "trip2").mkdir(parents=True)
    (root / "trip2" / "x.mp4").write_bytes(b"x")
    for path in ("trip/a.mp4", "trip/day/b.mp4", "trip/day/c.mp4", "solo/d.mp4"):
        _row(catalog, str(root / path), str(root))
    x = os.stat(root / "trip2" / "x.mp4")
    with catalog.transaction():
        catalog.upsert_video({"path": str(root / "trip2" / "x.mp4"), "root": str(root), "size": x.st_size,
                              "mtime_ns": x.st_mtime_ns, "status": "ok"})
    plan = plan_index(catalog, [str(root)])
    # trip (3 entries, none left) is kept as one folder; solo/d.mp4, a single file, is removed;
    # trip2 is untouched although its name starts with 'trip'.
    assert [(k["path"], k["videos"]) for k in plan.kept] == [(str(root / "trip"), 3)]
    assert [r["path"] for r in plan.remove] == [str(root / "solo" / "d.mp4")]
    assert plan.unchanged == 1
    assert len(plan_index(catalog, [str(root)], prune=True).remove) == 4


def test_files_named_one_by_one_on_a_drive_are_judged_by_their_folder(tmp_path):
    """'vmr index /media/cam/*.mp4' makes each file a root: an unmounted drive removed them all
    (to be named and embedded again), where a folder root's entries are kept."""
    catalog = Catalog(str(tmp_path / "catalog.db"))
    drive, local = tmp_path / "drive", tmp_path / "local"
    drive.mkdir()  # the empty mount point
    for path in (drive / "a.mp4", drive / "b.mp4", drive / "c.mp4", local / "solo.mp4"):
        _row(catalog, str(path), str(path))  # each its own root
    roots = [str(p) for p in (drive / "a.mp4", drive / "b.mp4", drive / "c.mp4", local / "solo.mp4")]
    plan = plan_index(catalog, roots)
    assert [(k["path"], k["videos"]) for k in plan.kept] == [(str(drive), 3)]
    assert [r["path"] for r in plan.remove] == [str(local / "solo.mp4")]  # one file gone: removed
    assert len(plan_index(catalog, roots, prune=True).remove) == 4


def test_a_root_whose_only_file_failed_is_looked_at_again(tiny_model, tmp_path):
    """A failed file was recorded with no root: 'vmr index' with no PATH never walked its folder
    again (its new files unseen, the file put right still 'failed'), and a file indexed by name
    that failed once was never looked at again."""
    good, other = tmp_path / "good", tmp_path / "other"
    make_video(good / "a.mp4", [("red", 2.0)])
    other.mkdir()
    (other / "broken.mp4").write_bytes(os.urandom(5000))
    vmr_json("index", good, "--model", tiny_model)
    assert vmr_json("index", other, expect=1)["failed"][0]["path"] == str(other / "broken.mp4")
    make_video(other / "broken.mp4", [("blue", 2.0)])  # put right
    make_video(other / "new.mp4", [("green", 2.0)])
    summary = vmr_json("index")  # no PATH: the files and folders the library holds
    assert (summary["added"], summary["updated"], summary["failed"]) == (1, 1, [])
    named = tmp_path / "named.mp4"
    make_video(named, [("yellow", 2.0)])
    vmr_json("index", named)
    named.write_bytes(os.urandom(5000))  # a damaged copy lands on it
    assert vmr_json("index", expect=1)["failed"][0]["path"] == str(named)
    make_video(named, [("white", 2.0)])
    summary = vmr_json("index")
    assert (summary["updated"], summary["failed"]) == (1, [])
    assert status()["failed"] == 0


def test_forget_drops_only_what_is_under_the_path(tiny_model, tmp_path):
    root = tmp_path / "v"
    make_video(root / "trip" / "a.mp4", [("red", 2.0)])
    make_video(root / "trip2" / "b.mp4", [("blue", 2.0)])  # starts like 'trip': never touched
    make_video(root / "c.mp4", [("green", 2.0)])
    code, out, err = vmr("forget", root, expect=1)  # no library yet
    assert err.strip().startswith("Error: no vmr library at")
    vmr_json("index", root, "--model", tiny_model)
    assert vmr_json("forget", root / "trip") == {"forgotten": [{"path": str(root / "trip"), "videos": 1, "saved_progress": 0}],
                                                 "videos": 1}
    after = status()
    assert (after["videos"], after["clips"], after["vectors"], after["consistent"]) == (2, 2, 2, True)
    assert (root / "trip" / "a.mp4").exists()  # files on disk are never touched
    code, out, err = vmr("forget", root / "trip", expect=1)
    assert err.strip() == f"Error: the library holds nothing at or under {root / 'trip'}; nothing was forgotten"
    code, out, err = vmr("forget", "/" + str(root / "c.mp4"))  # '//tmp/...' ("$ROOT/$DIR", ROOT=/) is the same
    assert out.strip() == f"forgot 1 entry under {root / 'c.mp4'}"
    found = vmr_json("search", "a red screen", "--top-k", "20")
    assert {os.path.basename(r["video"]) for r in found["results"]} == {"b.mp4"}
    assert vmr_json("index", root)["added"] == 2  # forgetting is not a ban: indexing brings them back
    assert [o["command"] for o in Library().catalog.operations()].count("forget") == 2
    code, out, err = vmr("forget", root, root / "c.mp4")  # a path inside another named: said once
    assert out.strip() == f"forgot 3 entries under {root}"
    indexed = vmr_json("index", "/" + str(root / "c.mp4"))  # its own name, not another file's link
    assert indexed["added"] == 1 and vmr_json("search", "a green screen")["results"][0]["video"] == str(root / "c.mp4")


def test_a_forget_killed_after_its_commit_is_finished_by_running_it_again(tiny_model, tmp_path):
    """Killed between its commit and removing the vectors, 'vmr forget' run again found no rows,
    said 'nothing was forgotten' and left every shard and FAISS entry of them (14 of 16 kills)."""
    root = tmp_path / "v"
    for name, colour in (("trip/a.mp4", "red"), ("trip/b.mp4", "blue"), ("c.mp4", "green")):
        make_video(root / name, [(colour, 2.0)])
    vmr_json("index", root, "--model", tiny_model)
    lib = Library()
    with lib.catalog.transaction():  # the rows went; the kill came before the vectors did
        for row in lib.catalog.videos_under(str(root / "trip")):
            lib.catalog.delete_video(row["id"])
    shards = Path(lib.directory) / "shards"
    lib.close()
    assert len(list(shards.glob("*.safetensors"))) == 3
    vmr("forget", root / "trip", expect=1)
    assert len(list(shards.glob("*.safetensors"))) == 1
    after = status()
    assert (after["videos"], after["clips"], after["vectors"], after["vector_cache_lag"]) == (1, 1, 1, 0)


# -- 12.7: a first run that fails leaves no library; status --failed ---------------------------------
def test_a_failed_first_index_leaves_no_library(tiny_model, tmp_path):
    videos = tmp_path / "v"
    make_video(videos / "a.mp4", [("red", 2.0)])
    library = tmp_path / "new-library"
    code, out, err = vmr("--library", library, "index", videos, "--model", tmp_path / "no-such-model", expect=1)
    assert err.startswith("Error: ") and not library.exists()
    # A folder the user made keeps what was in it, and only that.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    vmr("--library", mine, "index", videos, "--model", tmp_path / "no-such-model", expect=1)
    assert os.listdir(mine) == ["notes.txt"]
    # Nothing to index: an error that says what was passed over, and no library.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a video")
    code, out, err = vmr("--library", library, "index", empty, "--model", tiny_model, expect=1)
    assert err.strip() == (f"Error: no video files in {empty}; skipped 1 file by extension (.txt 1): "
                           "name a file to index it anyway")
    assert not library.exists()
    # Only files that fail: they are listed, and still no library is left behind.
    (empty / "noise.mp4").write_bytes(os.urandom(20_000))
    code, out, err = vmr("--library", library, "index", empty, "--model", tiny_model, expect=1)
    assert f"failed: {empty / 'noise.mp4'}: " in err
    assert err.strip().endswith(f"note: nothing was indexed, so no library was left at {library}")
    assert not library.exists()
    summary = vmr_json("--library", library, "index", empty, "--model", tiny_model, expect=1)
    assert [f["recorded"] for f in summary["failed"]] == [False]  # (it said true: recorded in no library)
    vmr("--library", library, "index", videos, "--model", tiny_model)
    assert (library / "catalog.db").exists()


def test_a_failed_file_moves_with_its_folder(tiny_model, tmp_path):
    """A folder renamed and indexed under its new name: its good files moved, but the entry of a
    file that failed stayed at the old path, listed by status as failed beside the new one."""
    folder = tmp_path / "v"
    make_video(folder / "a.mp4", [("red", 2.0)])
    (folder / "broken.mp4").write_bytes(os.urandom(5000))
    vmr_json("index", folder, "--model", tiny_model, expect=1)
    renamed = tmp_path / "renamed"
    folder.rename(renamed)
    summary = vmr_json("index", renamed)
    assert (summary["moved"], summary["added"], summary["failed"]) == (2, 0, [])
    failed = vmr_json("status", "--failed")["failed_files"]
    assert [f["path"] for f in failed] == [str(renamed / "broken.mp4")]
    from datetime import datetime  # ISO 8601 as 'vmr searches --json' gives times (it was seconds since 1970)

    assert abs(datetime.fromisoformat(failed[0]["failed_at"]).timestamp() - time.time()) < 600
    vmr("forget", renamed)
    assert isinstance(vmr_json("status")["duration"], float)  # 0, an int, once nothing was left


def test_a_first_index_on_a_full_disk_leaves_no_library(tiny_model, tmp_path):
    """The catalog's creation failing for want of space left a half-made catalog (and its -wal,
    -shm) that the next command took for an old library to migrate."""
    videos = tmp_path / "v"
    make_video(videos / "a.mp4", [("red", 2.0)])
    with small_disk(tmp_path / "small-disk", "120k", "test_a_failed_first_index_leaves_no_library") as disk:
        with open(disk / "filler", "wb", buffering=0) as handle:
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * 4096)
        code, out, err = vmr("--library", disk / "lib", "index", videos, "--model", tiny_model, expect=1)
        assert err == f"Error: {no_space_message(str(disk / 'lib'))}\n"
        assert not (disk / "lib").exists()


def test_thousands_of_failures_do_not_flood_the_terminal(tiny_model, tmp_path):
    """A folder of broken downloads printed one 'failed:' line each (3,000 of them, and again after
    every upgrade that retries them); the first 20 are printed, --json and status list them all."""
    folder = tmp_path / "v"
    make_video(folder / "good.mp4", [("red", 2.0)])
    for n in range(25):
        (folder / f"broken{n:02d}.mp4").write_bytes(os.urandom(3000))
    code, out, err = vmr("index", folder, "--model", tiny_model, expect=1)
    lines = err.strip().splitlines()
    assert sum(line.startswith("failed: ") for line in lines) == 20
    assert lines[20] == "... and 5 more failed (--json lists every one; vmr status --failed those recorded)"
    assert len(vmr_json("status", "--failed")["failed_files"]) == 25


def test_status_lists_failed_files_and_why(tiny_model, tmp_path):
    folder = tmp_path / "v"
    make_video(folder / "good.mp4", [("red", 2.0)])
    (folder / "noise.mp4").write_bytes(os.urandom(20_000))
    vmr_json("index", folder, "--model", tiny_model, expect=1)
    code, out, err = vmr("status", "--failed")
    assert out.strip().splitlines()[-1] == (f"failed    {folder / 'noise.mp4'}: "
                                            "Invalid data found when processing input")
    assert "tried again when it changes, or when vmr, its decoder or ffmpeg does" in err
    data = vmr_json("status", "--failed")
    assert data["failed"] == 1
    (entry,) = data["failed_files"]
    assert (entry["path"], entry["error"]) == (str(folder / "noise.mp4"), "Invalid data found when processing input")
    assert entry["failed_with"] == indexer.decoder_signature("torchcodec")
    assert "failed_files" not in vmr_json("status")


# -- 11.2: errors of the environment are not failures of files -----------------------------------
def _slow_ffprobe(tmp_path, monkeypatch):
    """ffprobe that hangs on files whose name holds 'slow', as on a dead network share."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "ffprobe"
    script.write_text(f'#!/bin/sh\ncase "$*" in *slow*) exec sleep 5;; esac\nexec {shutil.which("ffprobe")} "$@"\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(probe, "PROBE_TIMEOUT", 1)


def test_ffprobe_timeouts_are_not_recorded_and_stop_the_run_when_repeated(tiny_model, tmp_path, monkeypatch):
    folder = tmp_path / "v"
    make_video(folder / "a.mp4", [("red", 2.0)])
    make_video(folder / "slow1.mp4", [("blue", 2.0)])
    with pytest.MonkeyPatch.context() as mp:
        _slow_ffprobe(tmp_path, mp)
        summary = vmr_json("index", folder, "--model", tiny_model, expect=1)
    assert summary["failed"] == [{"path": str(folder / "slow1.mp4"), "error": "ffprobe timed out after 1 s",
                                  "recorded": False}]
    assert status()["failed"] == 0
    assert vmr_json("index", folder)["added"] == 1  # the next run simply tries again
    for i, name in enumerate(("slow2.mp4", "slow3.mp4", "slow4.mp4", "slow5.mp4")):
        make_video(folder / name, [("green", 2.0 + i / 10)])  # not copies of each other
    with pytest.MonkeyPatch.context() as mp:
        _slow_ffprobe(tmp_path, mp)
        code, out, err = vmr("index", folder, expect=1)
    assert err.strip().splitlines()[-1] == (
        f"Error: stopped: ffprobe timed out on 3 files in a row (last {folder / 'slow4.mp4'}); nothing was "
        "recorded against them, and what was indexed is kept: run 'vmr index' again once the files "
        "can be read")
    assert status()["failed"] == 0 and status()["videos"] == 2


def test_a_probe_running_ahead_is_killed_when_the_index_stops(tmp_path, monkeypatch):
    """Probes run ahead of the decoder in threads; when the run stops (3 timeouts in a row on a
    dead share, an error) the ones still running are killed instead of held to their timeout,
    which kept the process alive up to a minute after its last line."""
    import threading

    from vmr_cli.probe import ProbeCancelled, probe as probe_file

    make_video(tmp_path / "slow.mp4", [("red", 1.0)])
    with pytest.MonkeyPatch.context() as mp:
        _slow_ffprobe(tmp_path, mp)
        mp.setattr(probe, "PROBE_TIMEOUT", 60)
        stop, outcome = threading.Event(), []

        def run():
            try:
                probe_file(str(tmp_path / "slow.mp4"), stop)
            except ProbeCancelled as exc:
                outcome.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        stop.set()
        worker.join(timeout=3)  # the fake ffprobe sleeps 5 s, the timeout is 60 s
        assert not worker.is_alive() and len(outcome) == 1


def test_io_errors_keep_the_old_vectors_and_nothing_is_recorded(tiny_model, tmp_path, monkeypatch):
    folder = tmp_path / "v"
    make_video(folder / "a.mp4", [("red", 2.0)])
    vmr_json("index", folder, "--model", tiny_model)
    make_video(folder / "a.mp4", [("red", 2.0), ("blue", 2.0)])  # changed on disk

    def broken(path, info, size, backend="torchcodec", whole=False):
        raise OSError(errno.EIO, "Input/output error")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(indexer, "open_reader", broken)
        summary = vmr_json("index", folder, expect=1)
    assert summary["failed"] == [{"path": str(folder / "a.mp4"), "error": "Input/output error",
                                  "recorded": False}]
    now = status()
    assert (now["videos"], now["failed"], now["clips"], now["vectors"]) == (1, 0, 1, 1)  # old vectors kept
    assert vmr_json("index", folder)["updated"] == 1 and status()["clips"] == 2


def test_a_missing_backend_stops_the_run_before_any_file(tiny_model, tmp_path, monkeypatch):
    folder = tmp_path / "v"
    make_video(folder / "a.mp4", [("red", 2.0)])
    vmr_json("index", folder, "--model", tiny_model)
    make_video(folder / "b.mp4", [("blue", 2.0)])
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # import fails, as when not installed
    code, out, err = vmr("index", folder, expect=1)
    assert err.startswith("Error: the torchcodec backend cannot load (") and len(err.strip().splitlines()) == 1
    assert err.strip().endswith("reinstall it (pip install torchcodec), or use --backend pyav")
    assert (status()["videos"], status()["failed"]) == (1, 0)


def test_a_search_decodes_with_pyav_where_torchcodec_cannot_load(tiny_model, tmp_path, monkeypatch):
    """Indexed with --backend pyav because torchcodec does not load here: searching must work
    too (with a note), and an explicit --backend torchcodec is the index's one-line error."""
    folder = tmp_path / "v"
    make_video(folder / "a.mp4", [("blue", 3.0), ("red", 3.0), ("blue", 3.0)])
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # import fails, as when not installed
    vmr_json("index", folder, "--model", tiny_model, "--backend", "pyav")
    code, out, err = vmr("search", "red", "--backend", "torchcodec", expect=1)
    assert err.startswith("Error: the torchcodec backend cannot load (") and len(err.strip().splitlines()) == 1
    found = vmr_json("search", "a red screen", "--top-k", "1")
    assert found["stats"]["frames_decoded"] > 0 and found["stats"]["decoder"] == "pyav"
    assert found["stats"]["decoder_note"].startswith("decoding with PyAV: torchcodec cannot load (")
    assert found["results"][0]["video"] == str(folder / "a.mp4")
    other = tmp_path / "other-library"  # its frame cache is empty: the table's search decodes too
    vmr_json("index", folder, "--model", tiny_model, "--backend", "pyav", "--library", other)
    code, out, err = vmr("search", "a red screen", "--top-k", "1", "--library", other)
    assert "note: decoding with PyAV: torchcodec cannot load (" in err and "a.mp4" in out
    found = vmr_json("search", "a blue screen", "--backend", "pyav", "--library", other, "--exhaustive")
    assert found["stats"]["decoder"] == "pyav" and "decoder_note" not in found["stats"]


def test_unreadable_changed_file_is_not_recorded_and_keeps_its_vectors(tiny_model, tmp_path):
    folder, lib = tmp_path / "v", tmp_path / "lib"
    make_video(folder / "a.mp4", [("red", 2.0)])
    assert vmr_subprocess(lib, "index", folder, "--model", tiny_model).returncode == 0
    make_video(folder / "a.mp4", [("red", 2.0), ("blue", 2.0)])
    os.chmod(folder / "a.mp4", 0)
    try:
        done = vmr_subprocess(lib, "index", folder, "--json")
        assert done.returncode == 1, done.stderr
        assert json.loads(done.stdout)["failed"] == [
            {"path": str(folder / "a.mp4"), "error": "Permission denied", "recorded": False}]
    finally:
        os.chmod(folder / "a.mp4", 0o644)
    data = json.loads(vmr_subprocess(lib, "status", "--json").stdout)
    assert (data["videos"], data["failed"], data["clips"]) == (1, 0, 1)
    assert json.loads(vmr_subprocess(lib, "index", folder, "--json").stdout)["updated"] == 1


def test_a_failed_file_is_retried_when_what_it_failed_with_changes(tiny_model, tmp_path, monkeypatch):
    folder = tmp_path / "v"
    make_video(folder / "good.mp4", [("red", 2.0)])
    (folder / "noise.mp4").write_bytes(os.urandom(20_000))
    first = vmr_json("index", folder, "--model", tiny_model, expect=1)
    assert first["failed"][0]["recorded"] is True
    signature = indexer.decoder_signature("torchcodec")
    assert signature.startswith("vmr ") and "torchcodec " in signature and "ffmpeg " in signature
    row = Library().catalog.video_by_path(str(folder / "noise.mp4"))
    assert (row["status"], row["failed_with"]) == ("failed", signature)
    second = vmr_json("index", folder)  # same file, same decoder: not tried again
    assert (second["unchanged"], second["failed_before"], second["failed"]) == (1, 1, [])
    code, out, err = vmr("index", folder)
    assert "unchanged 1," in out and "(1 file that failed before, unchanged: vmr status --failed)" in out
    monkeypatch.setattr(indexer, "decoder_signature", lambda backend: "vmr 9.9; torchcodec 9.9")
    again = vmr_json("index", folder, expect=1)
    assert [f["path"] for f in again["failed"]] == [str(folder / "noise.mp4")]
    assert Library().catalog.video_by_path(str(folder / "noise.mp4"))["failed_with"] == "vmr 9.9; torchcodec 9.9"


def test_schema_2_catalog_is_migrated_and_its_failures_retried(tiny_model, tmp_path, isolated_library):
    folder = tmp_path / "v"
    make_video(folder / "good.mp4", [("red", 2.0)])
    (folder / "noise.mp4").write_bytes(os.urandom(20_000))
    vmr_json("index", folder, "--model", tiny_model, expect=1)
    db = isolated_library / "catalog.db"
    conn = sqlite3.connect(db)  # as vmr with schema 2 left it
    for column in ("failed_with", "bad_frames", "transfer"):
        conn.execute(f"ALTER TABLE videos DROP COLUMN {column}")
    conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    summary = vmr_json("index", folder, expect=1)  # migrates; the old failure is tried once more
    assert [f["path"] for f in summary["failed"]] == [str(folder / "noise.mp4")] and summary["unchanged"] == 1
    assert Catalog(str(db)).schema_version() == SCHEMA_VERSION == 5
    assert os.path.exists(f"{db}.v2.bak")


# -- 11.7: a duration the stream cannot back -------------------------------------------------------
def _claim(src, dst, seconds):
    """Rewrite a Matroska file's Segment duration (element 0x4489, 8-byte float, milliseconds),
    and rename its streams' DURATION tags, which would tell their true length."""
    data = bytearray(src.read_bytes().replace(b"DURATION", b"DURATIOX"))
    at = data.find(bytes.fromhex("448988"))
    assert at > 0
    data[at + 3:at + 11] = struct.pack(">d", seconds * 1000.0)
    dst.write_bytes(data)


def test_absurd_durations_are_failed_with_the_reason(tiny_model, tmp_path):
    folder, work = tmp_path / "v", tmp_path / "work"
    folder.mkdir()
    work.mkdir()
    ffmpeg("-f", "lavfi", "-t", "4", "-i", "color=red:size=64x48:rate=10", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", work / "small.mkv")
    _claim(work / "small.mkv", folder / "few KB claiming 100 h.mkv", 360_000)
    ffmpeg("-f", "lavfi", "-t", "20", "-i", "testsrc2=size=160x120:rate=10", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", work / "h264.mkv")
    _claim(work / "h264.mkv", folder / "h264 claiming 10 h.mkv", 36_000)
    ffmpeg("-f", "lavfi", "-t", "20", "-i", "testsrc2=size=160x120:rate=25", "-c:v", "mpeg1video",
           work / "mpeg1.mkv")  # MPEG-1 is read sequentially by PyAV: checked at the end of its stream
    _claim(work / "mpeg1.mkv", folder / "mpeg1 claiming 10 h.mkv", 36_000)
    # Honest timestamps, absurd content: 199 frames in 20 s, then one frame 10 hours later.
    ffmpeg("-f", "lavfi", "-t", "20", "-i", "testsrc2=size=160x120:rate=10",
           "-vf", "setpts='if(eq(N,199),36000/TB,PTS)'", "-fps_mode", "vfr", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", folder / "last frame after 10 h.mkv")
    make_video(folder / "real.mp4", [("blue", 2.0)])
    started = time.monotonic()
    summary = vmr_json("index", folder, "--model", tiny_model, expect=1)
    assert time.monotonic() - started < 120  # 10 h of clips would take far longer
    assert summary["added"] == 1
    wrong = "its duration is wrong (a damaged or crafted file)"
    failed = failures(summary)
    assert failed == {
        "few KB claiming 100 h.mkv": f"claims to last 100:00:00.0 but holds only "
                                     f"{(folder / 'few KB claiming 100 h.mkv').stat().st_size} bytes "
                                     f"({(folder / 'few KB claiming 100 h.mkv').stat().st_size / 360000:.3g} "
                                     f"per second): {wrong}",
        "h264 claiming 10 h.mkv": f"claims to last 10:00:00.0 but its video stream ends at 0:00:20.0: {wrong}",
        "mpeg1 claiming 10 h.mkv": failed["mpeg1 claiming 10 h.mkv"],
        "last frame after 10 h.mkv": f"claims to last 10:00:00.1 but its video stream holds 200 frames: {wrong}",
    }
    assert failed["mpeg1 claiming 10 h.mkv"].startswith("claims to last 10:00:00.0 but its video stream ends at 0:00:")
    assert vmr_json("status")["failed"] == 4  # recorded: these are the files' own faults


def test_real_long_and_variable_rate_files_pass_the_duration_check(tmp_path):
    """What the checks must let through: the real camera files, variable frame rate, and long
    sparse videos (the 3-hour 1 fps test video is indexed in full in test_bad_input.py)."""
    from vmr_cli.decode import TorchcodecReader

    ffmpeg("-f", "lavfi", "-t", "10800", "-i", "color=green:size=32x32:rate=1", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", tmp_path / "3h.mp4")
    ffmpeg("-f", "lavfi", "-t", "3600", "-i", "color=green:size=16x16:rate=0.1", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", tmp_path / "1h at 0.1 fps.mkv")
    ffmpeg("-f", "lavfi", "-t", "6", "-i", "testsrc2=size=160x120:rate=20",
           "-vf", "setpts='if(lt(N,40),N/20,2+(N-40)/4)/TB'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", tmp_path / "vfr.mp4")
    paths = [tmp_path / "3h.mp4", tmp_path / "1h at 0.1 fps.mkv", tmp_path / "vfr.mp4"]
    paths += [p for p in (VTEST, PHONE) if p.exists()]
    for path in paths:
        info = probe.probe(str(path))
        TorchcodecReader(str(path), info, 32)._open()  # the decoder's own check, on the scanned stream


# -- 11.8: "vectors missing; run 'vmr index' to repair" works as written -----------------------------
def test_missing_vectors_are_repaired_by_vmr_index_as_search_says(tiny_model, videos, isolated_library):
    vmr_json("index", videos, "--model", tiny_model)
    lib = Library()
    victim = lib.catalog.video_by_path(str(videos / "green.mp4"))
    lib.close()
    os.unlink(isolated_library / "shards" / f"{victim['id']}.safetensors")
    code, out, err = vmr("search", "a green screen")
    assert f"warning: skipped {videos / 'green.mp4'}: vectors missing; run 'vmr index' to repair" in err
    summary = vmr_json("index")  # exactly what the message says
    assert (summary["updated"], summary["unchanged"], summary["failed"]) == (1, 2, [])
    code, out, err = vmr("search", "a green screen", "--top-k", "20")
    assert "vectors missing" not in err and str(videos / "green.mp4") in out
    now = status()
    assert now["consistent"] and now["vectors"] == now["clips"] == 8


def test_a_search_that_read_a_row_before_a_re_index_committed_uses_the_new_vectors(tiny_model, videos,
                                                                                    monkeypatch):
    """A search beside a running index: the video's row was read, then the index re-embedded it
    (new row id, old shard deleted).  The search reads the row again instead of skipping it."""
    from vmr_cli.search import Searcher, SearchOptions

    vmr_json("index", videos, "--model", tiny_model)
    lib = Library()
    stale = lib.catalog.videos("ok")
    old = lib.catalog.video_by_path(str(videos / "green.mp4"))
    make_video(videos / "green.mp4", [("green", 3.0), ("yellow", 3.0)])  # changed: re-embedded
    assert vmr_json("index")["updated"] == 1
    new = lib.catalog.video_by_path(str(videos / "green.mp4"))
    assert new["id"] != old["id"] and not os.path.exists(lib.vectors.shard_path(old["id"]))
    searcher = Searcher(lib, frame_cache=False)
    options = SearchOptions(top_k=20)
    expected = searcher.search("a green screen", options, log=False)
    monkeypatch.setattr(lib.catalog, "videos", lambda status=None: stale)  # as read before the commit
    found = searcher.search("a green screen", options, log=False)
    lib.close()
    assert "skipped" not in found["stats"]
    assert found["results"] == expected["results"]
    assert found["stats"]["frames_stored"] == expected["stats"]["frames_stored"]  # the 6 s video's, not 4 s
    assert str(videos / "green.mp4") in [r["video"] for r in found["results"]]


def test_a_search_that_read_a_row_before_an_index_removed_the_video_says_so(tiny_model, videos, monkeypatch):
    from vmr_cli.search import Searcher, SearchOptions

    vmr_json("index", videos, "--model", tiny_model)
    lib = Library()
    stale = lib.catalog.videos("ok")
    os.unlink(videos / "green.mp4")
    assert vmr_json("index")["removed"] == 1
    searcher = Searcher(lib, frame_cache=False)
    monkeypatch.setattr(lib.catalog, "videos", lambda status=None: stale)  # as read before the commit
    found = searcher.search("a green screen", SearchOptions(top_k=20), log=False)
    lib.close()
    assert found["stats"]["skipped"] == [{"video": str(videos / "green.mp4"),
                                          "error": "removed from the library while this search ran"}]
    assert found["results"] and str(videos / "green.mp4") not in [r["video"] for r in found["results"]]


def test_a_search_that_read_a_row_before_a_re_index_failed_says_why(tiny_model, videos, monkeypatch):
    """The index re-read a changed file, could not decode it, and recorded it as failed (its old
    vectors go): the search says what the index found, not 'vectors missing', which would send
    the user to run an index that fails the same way."""
    from vmr_cli.search import Searcher, SearchOptions

    vmr_json("index", videos, "--model", tiny_model)
    lib = Library()
    stale = lib.catalog.videos("ok")
    (videos / "green.mp4").write_bytes(b"not a video any more")
    failed = vmr_json("index", expect=1)["failed"]  # a file that failed: exit 1, the rest kept
    assert [f["path"] for f in failed] == [str(videos / "green.mp4")]
    searcher = Searcher(lib, frame_cache=False)
    monkeypatch.setattr(lib.catalog, "videos", lambda status=None: stale)  # as read before the commit
    found = searcher.search("a green screen", SearchOptions(top_k=20), log=False)
    lib.close()
    [skip] = found["stats"]["skipped"]
    assert skip["video"] == str(videos / "green.mp4")
    assert skip["error"] == f"could not be indexed again while this search ran: {failed[0]['error']}"
    assert found["results"] and str(videos / "green.mp4") not in [r["video"] for r in found["results"]]


def test_a_video_that_cannot_be_read_is_skipped_not_the_whole_search(tiny_model, videos, monkeypatch):
    """A file made unreadable after indexing (chmod, a share that went away): the search goes
    on without it and says why; it used to end with 'Error: [Errno 13] Permission denied'."""
    from vmr_cli import search

    vmr_json("index", videos, "--model", tiny_model)
    green, red = str(videos / "green.mp4"), str(videos / "red_then_blue.mp4")
    real_open, real_stat = search.open_reader, os.stat
    denied = {red, green}

    def open_denied(path, *args, **kwargs):
        if path in denied:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(search, "open_reader", open_denied)
    found = vmr_json("search", "a red screen", "--top-k", "20")  # trimmed: decodes to refine the edge at 3 s
    assert {"video": red, "error": "cannot read the file: Permission denied"} in found["stats"]["unrefined"]
    assert red in [r["video"] for r in found["results"]]  # its stored windows stand, unrefined
    found = vmr_json("search", "a green screen", "--top-k", "20", "--exhaustive")  # decodes every video
    assert {"video": green, "error": "cannot read the file: Permission denied"} in found["stats"]["skipped"]
    assert found["results"]
    monkeypatch.setattr(search, "open_reader", real_open)

    def stat_denied(path, *args, **kwargs):  # a folder on the way that cannot be entered
        if os.fsdecode(path) == green:
            raise PermissionError(13, "Permission denied", path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat_denied)
    found = vmr_json("search", "a green screen", "--top-k", "20")
    monkeypatch.setattr(os, "stat", real_stat)
    assert {"video": green, "error": "cannot read the file: Permission denied"} in found["stats"]["skipped"]
    assert found["results"] and green not in [r["video"] for r in found["results"]]


def test_a_video_unreadable_or_deleted_after_indexing_is_skipped_by_the_real_decoders(
        tiny_model, videos, isolated_library, monkeypatch):
    """The test above stands in for the decoder with an open_reader that raises PermissionError.
    The real readers open the file at its first frame: torchcodec fails, PyAV raises
    TransientError, and that ended the whole search, trimmed or exhaustive, with
    'Error: [Errno 13] Permission denied: PATH' (a file deleted while a search ran:
    '[Errno 2] No such file or directory')."""
    from vmr_cli.search import Searcher, SearchOptions

    vmr_json("index", videos, "--model", tiny_model)
    green, red = videos / "green.mp4", videos / "red_then_blue.mp4"
    red.chmod(0)
    try:
        for mode in ([], ["--exhaustive"]):  # trimmed: decodes to refine red's edge at 3 s
            done = vmr_subprocess(isolated_library, "search", "a red screen", "--top-k", "20", "--json", *mode)
            assert done.returncode == 0, done.stderr
            found = json.loads(done.stdout)
            said = found["stats"]["skipped" if mode else "unrefined"]
            assert {"video": str(red), "error": "cannot read the file: Permission denied"} in said
            assert found["results"]
    finally:
        red.chmod(0o644)
    lib = Library()
    searcher = Searcher(lib, frame_cache=False)
    looked_at = Searcher._stored_vectors

    def deleted_after_the_search_looked(self, video):
        found = looked_at(self, video)
        if video["path"] == str(green):
            green.unlink()
        return found

    monkeypatch.setattr(Searcher, "_stored_vectors", deleted_after_the_search_looked)
    found = searcher.search("a green screen", SearchOptions(top_k=20, exhaustive=True), log=False)
    lib.close()
    assert {"video": str(green), "error": "cannot read the file: No such file or directory"} in found["stats"]["skipped"]
    assert found["results"] and str(green) not in [r["video"] for r in found["results"]]


def test_status_after_an_interrupted_index_counts_the_stored_vectors(tiny_model, videos, isolated_library):
    """The FAISS cache is written every minute and at the end of a run: after a run stopped
    early (or during one) it lags the committed videos, whose vectors are in their shards.
    That is not damage, and status says so; a shard really missing still is."""
    first = videos / "sub"
    vmr_json("index", first, "--model", tiny_model)
    cache = [isolated_library / name for name in ("appearance.faiss", "appearance.faiss.json")]
    saved = [path.read_bytes() for path in cache]
    vmr_json("index", videos)  # two more videos; then put back the cache of before, as a Ctrl-C leaves it
    for path, data in zip(cache, saved):
        path.write_bytes(data)
    now = status()
    assert now["videos"] == 3 and now["vectors"] < now["clips"]
    assert now["consistent"] and now["vector_cache_lag"] == now["clips"] - now["vectors"]
    assert not now["index_running"]
    code, out, err = vmr("status")
    assert f"consistent: the FAISS cache lags the stored vectors by {now['vector_cache_lag']} clips" in out
    found = vmr_json("search", "a green screen", "--top-k", "20")  # searches see every video
    assert str(videos / "green.mp4") in [r["video"] for r in found["results"]]
    lib = Library()
    green = lib.catalog.video_by_path(str(videos / "green.mp4"))
    lib.close()
    os.unlink(isolated_library / "shards" / f"{green['id']}.safetensors")
    assert not status()["consistent"] and status()["videos_without_vectors"] == 1
    code, out, err = vmr("status")
    assert "NOT consistent: 1 video has no vector shard; the next vmr index re-embeds it" in out
    from vmr_cli.lock import writer_lock

    with writer_lock(str(isolated_library), "vmr index"):  # as a running index holds it
        assert status()["index_running"]
        code, out, err = vmr("status")
        assert "a vmr index is running: these numbers are what it has committed so far" in out


def test_status_says_when_a_shard_is_gone_though_the_faiss_cache_still_counts_it(tiny_model, videos):
    """The counts agree (the cache holds the vectors) while a search skips the video as 'vectors
    missing': plain status said "consistent"."""
    vmr_json("index", videos, "--model", tiny_model)
    lib = Library()
    green = lib.catalog.video_by_path(str(videos / "green.mp4"))
    os.unlink(lib.vectors.shard_path(green["id"]))
    lib.close()
    now = status()
    assert now["vectors"] == now["clips"] and not now["consistent"] and now["videos_without_vectors"] == 1
    summary = vmr_json("index", videos)
    assert summary["updated"] == 1 and status()["consistent"] and status()["videos_without_vectors"] == 0


def test_a_quoted_tilde_is_pointed_out(tmp_path, monkeypatch):
    """'vmr index "~/My Videos"': the shell leaves a quoted ~ alone; the error said only
    'no such file or folder: CWD/~/My Videos'."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "My Videos").mkdir()
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    code, out, err = vmr("index", "~/My Videos", expect=1)
    here = tmp_path / "here" / "~"
    assert err == (f"Error: no such file or folder: {here / 'My Videos'} (a '~' in quotes is not the "
                   f"home folder: did you mean {tmp_path / 'My Videos'}?)\n")
    assert vmr("index", "~/Nothing", expect=1)[2] == f"Error: no such file or folder: {here / 'Nothing'}\n"


def test_a_quoted_tilde_is_pointed_out_by_search_in_and_forget(tiny_model, videos, tmp_path, monkeypatch):
    """'vmr search QUERY --in "~/videos"' and 'vmr forget "~/videos"' said only that the library
    holds nothing there (the review of --in; vmr index says what the '~' is)."""
    vmr("index", videos, "--model", tiny_model)
    monkeypatch.setenv("HOME", str(videos.parent))
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    hint = f" (a '~' in quotes is not the home folder: did you mean {videos}?)"
    assert vmr("search", "a red screen", "--in", "~/videos", expect=1)[2] == \
        f"Error: --in ~/videos: the library holds no video at or under it{hint}\n"
    assert vmr("forget", "~/videos", expect=1)[2] == \
        f"Error: the library holds nothing at or under {tmp_path / 'here' / '~' / 'videos'}{hint}; nothing was forgotten\n"
    assert "(vmr status lists what it holds" in vmr("search", "a red screen", "--in", "~/nothing", expect=1)[2]


def test_index_without_path_needs_a_library_with_folders():
    code, out, err = vmr("index", expect=1)
    assert err.strip() == "Error: the library holds no folders yet; say what to index: vmr index PATH"


# -- 11.9: the extensions ffmpeg reads, and what was skipped -----------------------------------------
def test_extensions_ffmpeg_reads_are_indexed_and_skipped_files_are_counted(tiny_model, tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    small = ["-f", "lavfi", "-t", "1", "-i", "testsrc2=size=176x144:rate=10"]
    ffmpeg(*small, "-c:v", "h263", folder / "a.3g2")
    ffmpeg(*small, "-c:v", "wmv2", folder / "a.asf")
    ffmpeg(*small, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "f4v", folder / "a.f4v")
    ffmpeg(*small, "-c:v", "rv10", folder / "a.rm")
    ffmpeg(*small, "-c:v", "rv20", "-f", "rm", folder / "a.rmvb")
    ffmpeg(*small, "-c:v", "mpeg4", "-f", "avi", folder / "a.divx")
    ffmpeg("-f", "lavfi", "-t", "1", "-i", "testsrc2=size=720x576:rate=25", "-pix_fmt", "yuv420p",
           "-c:v", "dvvideo", folder / "a.dv")
    ffmpeg("-f", "lavfi", "-t", "1", "-i", "testsrc2=size=176x144:rate=25", "-c:v", "mpeg2video",
           folder / "a.m2v")  # a raw MPEG-2 stream: no duration in it; counted from its frames
    ffmpeg("-f", "lavfi", "-t", "1", "-i", "testsrc2=size=176x144:rate=25", "-c:v", "mpeg2video",
           folder / "a.wtv")
    ffmpeg(*small, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-bsf:v", "h264_mp4toannexb", "-f", "h264",
           folder / "a.h264")  # raw H.264: no timestamps either
    (folder / "photo.jpg").write_bytes(b"\xff\xd8not really")
    (folder / "notes.txt").write_text("x")
    (folder / "README").write_text("x")
    summary = vmr_json("index", folder, "--model", tiny_model)
    assert summary["failed"] == [] and summary["added"] == 10
    assert summary["skipped"] == {"files": 3, "extensions": {".jpg": 1, ".txt": 1, "(none)": 1}}
    (folder / "more.txt").write_text("x")
    code, out, err = vmr("index", folder)
    assert err.strip() == ("skipped 4 files by extension (.txt 2, (none) 1, .jpg 1): "
                           "name a file to index it anyway")


def test_index_extensions_are_those_ffmpeg_lists_for_video():
    """Every common extension ffmpeg lists for these video demuxers is looked at, less the
    audio-only, image and manifest ones; and the names of issue 11.9 are all in."""
    audio_image_manifest = {".m4a", ".m4b", ".isma", ".ism", ".avif", ".mka", ".mks"}
    for demuxer in ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "flv", "dv", "h264", "hevc", "m4v"):
        text = subprocess.run(["ffmpeg", "-hide_banner", "-h", f"demuxer={demuxer}"], capture_output=True,
                              text=True).stdout
        (line,) = [x for x in text.splitlines() if "Common extensions" in x]
        listed = {"." + e.strip() for e in line.split(":", 1)[1].strip(" .").split(",")}
        assert listed - audio_image_manifest <= INDEX_EXTENSIONS, (demuxer, listed - INDEX_EXTENSIONS)
    for name in ("x.3g2", "x.ASF", "x.f4v", "x.rm", "x.rmvb", "x.divx", "x.dv", "x.m2v", "x.wtv", "x.dvr-ms"):
        assert is_video_name(name), name
    assert not any(is_video_name(n) for n in ("x.jpg", "x.mp3", "x.m3u8", "x.txt", "x.yuv", "noext"))


# -- 11.10: damaged streams are indexed where ffmpeg gets through ------------------------------------
def _damage_packets(src, dst, every: int, keep_first: int = 1) -> int:
    """Overwrite the first NAL length of every `every`-th H.264 packet (after the first ones)."""
    import av

    with av.open(str(src)) as container:
        stream = container.streams.video[0]
        spans = [(p.pos, p.size) for p in container.demux(stream) if p.size and (p.pos or 0) > 0]
    data = bytearray(src.read_bytes())
    hit = 0
    for k, (pos, size) in enumerate(spans):
        if k >= keep_first and k % every == 0 and size > 8:
            data[pos:pos + 4] = b"\xff\xff\xff\xff"
            hit += 1
    dst.write_bytes(data)
    return hit


def _ogg_crc(page: bytes) -> int:
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def _damage_ogg(src, dst, seed: int = 1):
    """Random bytes inside the Theora packets of the middle pages, with valid page checksums
    (so the demuxer keeps them and the decoder meets the damage, as with a damaged recording)."""
    import random

    rng = random.Random(seed)
    data = bytearray(src.read_bytes())
    pages, at = [], 0
    while (at := data.find(b"OggS", at)) >= 0:
        nseg = data[at + 26]
        body = at + 27 + nseg
        end = body + sum(data[at + 27:body])
        pages.append((at, body, end))
        at = end
    for k, (start, body, end) in enumerate(pages):
        if 0.3 * len(pages) < k < 0.5 * len(pages) and k % 2 == 0 and end - body > 20:
            for _ in range(10):
                data[body + rng.randrange(end - body)] = rng.randrange(256)
        data[start + 22:start + 26] = b"\0\0\0\0"
        data[start + 22:start + 26] = struct.pack("<I", _ogg_crc(bytes(data[start:end])))
    dst.write_bytes(data)


def test_a_file_cut_short_counts_its_missing_frames(tiny_model, tmp_path):
    """A copy or download that stopped (the header, written first, still claims 30 s): the
    frames it no longer holds count as undecodable, so a file cut to 30 % fails and one cut to
    90 % is indexed with a damaged note, instead of indexing the last frame over the lost part."""
    folder, work = tmp_path / "v", tmp_path / "work"
    folder.mkdir()
    work.mkdir()
    ffmpeg("-f", "lavfi", "-t", "30", "-i", "testsrc2=size=160x120:rate=10", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-movflags", "+faststart", work / "whole.mp4")
    data = (work / "whole.mp4").read_bytes()
    (folder / "cut to 30 %.mp4").write_bytes(data[:len(data) * 30 // 100])
    (folder / "cut to 90 %.mp4").write_bytes(data[:len(data) * 90 // 100])
    summary = vmr_json("index", folder, "--model", tiny_model, expect=1)
    (reason,) = failures(summary).values()
    assert failures(summary).keys() == {"cut to 30 %.mp4"}
    ends = re.fullmatch(r"cut short: its video stream ends at 0:00:(\d+\.\d) of the 0:00:30\.0 it claims \(a copy or "
                        r"download that stopped\?\)", reason).group(1)
    assert float(ends) < 15  # more than half of it gone
    (damaged,) = summary["damaged"]
    assert os.path.basename(damaged["path"]) == "cut to 90 %.mp4" and 10 <= damaged["bad_frames"] < 60
    assert damaged["claimed"] == 30.0 and 24 < damaged["ends_at"] < 30  # indexed up to there


def test_damaged_streams_are_indexed_and_too_damaged_ones_fail(tiny_model, tmp_path):
    folder, work = tmp_path / "v", tmp_path / "work"
    folder.mkdir()
    work.mkdir()
    ffmpeg("-f", "lavfi", "-t", "20", "-i", "testsrc2=size=160x120:rate=10", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-g", "20", work / "h264.mp4")
    hit = _damage_packets(work / "h264.mp4", folder / "some frames damaged.mp4", every=10)
    _damage_packets(work / "h264.mp4", folder / "mostly damaged.mp4", every=1, keep_first=40)
    # Key frames 10 s apart: the frames the index samples are decoded through the damage (with
    # one every 1.2 s, libtheora's default, it samples key frames around it and never meets it).
    ffmpeg("-f", "lavfi", "-t", "20", "-i", "testsrc2=size=160x120:rate=10", "-c:v", "libtheora",
           "-q:v", "5", "-g", "100", work / "theora.ogv")
    _damage_ogg(work / "theora.ogv", folder / "damaged theora.ogv")
    for name in ("some frames damaged.mp4", "damaged theora.ogv"):  # ffmpeg gets through these two
        assert subprocess.run(["ffmpeg", "-v", "quiet", "-i", str(folder / name), "-f", "null", "-"]).returncode == 0
    summary = vmr_json("index", folder, "--model", tiny_model, expect=1)
    assert summary["added"] == 2
    damaged = {os.path.basename(d["path"]): d["bad_frames"] for d in summary["damaged"]}
    assert damaged["some frames damaged.mp4"] == hit and damaged["damaged theora.ogv"] >= 1
    (reason,) = failures(summary).values()
    bad, seen = re.fullmatch(r"too damaged to index: (\d+) of (\d+) frames could not be decoded", reason).groups()
    assert int(bad) > int(seen) / 2 and failures(summary).keys() == {"mostly damaged.mp4"}
    rows = {os.path.basename(v["path"]): v for v in Library().catalog.videos()}
    assert rows["some frames damaged.mp4"]["bad_frames"] == hit and rows["some frames damaged.mp4"]["n_clips"] == 10
    code, out, err = vmr("search", "a test pattern", "--top-k", "5")
    assert "some frames damaged.mp4" in out or "damaged theora.ogv" in out
    os.utime(folder / "some frames damaged.mp4")  # touched: read again, since it was damaged (a finished
    code, out, err = vmr("index", folder, expect=0)  # download can keep its size, head and tail)
    assert f"note: {folder / 'some frames damaged.mp4'}: {hit} frames could not be decoded (damaged stream); " \
           "indexed with the frames around them" in err
