"""Hostile file names, odd queries, export failures, read-only / newer / older libraries.

The rest of issue 5 is in test_bad_input.py (bad media files) and test_crash.py
(kill -9, writer lock, repair); TESTING.md maps every case to its test.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import pytest
from conftest import make_video, small_disk, vmr, vmr_json, vmr_subprocess

from vmr_cli.catalog import SCHEMA_VERSION

NON_UTF8 = b"caf\xe9 -i.mp4"
LONG = "x" + "é" * 120 + ".mp4"  # 245 bytes: a 120-byte export stem would split an 'é'


def test_non_utf8_and_very_long_names_survive_index_search_and_export(tiny_model, tmp_path):
    folder = tmp_path / "names"
    folder.mkdir()
    made = make_video(tmp_path / "src.mp4", [("purple", 2.5)])
    names = [os.path.join(os.fsencode(folder), NON_UTF8), os.path.join(os.fsencode(folder), LONG.encode()),
             os.path.join(os.fsencode(folder), b"-y.mp4")]
    for i, name in enumerate(names):
        shutil.copyfile(made, name)
        with open(name, "ab") as handle:  # not copies (searched once): bytes past the end, ignored
            handle.write(b"\0" * 16 * i)
    summary = vmr_json("index", folder, "--model", tiny_model)
    assert summary["added"] == 3 and summary["failed"] == []
    code, out, err = vmr("search", "purple", "--top-k", "10", "--json")
    found = json.loads(out)  # valid JSON, ASCII with escapes
    assert {os.fsencode(r["video"]) for r in found["results"]} == set(names)  # the same bytes
    code, table, _ = vmr("search", "purple", "--top-k", "10")
    assert "caf\\xe9 -i.mp4" in table and "x" + "é" * 120 + ".mp4" in table
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    done = vmr_json("export", "--out", out_dir, "--clip")["exported"]
    assert len(done) == len(found["results"])
    for item in done:
        assert os.path.getsize(item["path"]) > 0
        base = os.fsencode(os.path.basename(item["path"]))
        base.decode("utf-8")  # export names are valid UTF-8: no split character, no raw byte
        assert len(base) < 200 and not base.startswith(b"-")


@pytest.fixture
def indexed(tiny_model, tmp_path):
    folder = tmp_path / "videos"
    make_video(folder / "red.mp4", [("red", 2.0), ("blue", 2.0)])
    vmr_json("index", folder, "--model", tiny_model)
    return folder


def test_queries_long_scripts_emoji_control_characters(indexed):
    for bad in ["", " \t ", "\x00\x01\x1b\x7f\u200b", "\u200d \u200c"]:
        code, out, err = vmr("search", bad, expect=1)
        assert err.startswith("Error: the query is empty") and len(err.splitlines()) == 1
    long = vmr_json("search", "x" * 10_000)
    assert long["results"] and len(long["query"]) <= 2000
    for query in ["猫が扉を開ける", "قطة تفتح الباب", "🐈🚪", "red\x1b[2J\r\nscreen\x7f"]:
        found = vmr_json("search", query)
        assert found["results"] and found["query"].isprintable()
    for query in ["می\u200cخواهم", "👩\u200d💻 at a desk"]:  # joiners were turned into spaces
        assert vmr_json("search", query)["query"] == query
    # Bytes that are not UTF-8 (a Latin-1 terminal: 'café' as caf\xe9) were dropped without a word.
    code, out, err = vmr("search", "caf\udce9 rouge", expect=1)
    assert err == "Error: the query is not UTF-8 text; set your terminal to UTF-8 (its encoding, or LANG)\n"
    assert json.loads(vmr("search", "--json", "--", "-red")[1])["query"] == "-red"  # a query starting with "-"
    code, out, err = vmr("search", "red", "--min-score", "1")  # nothing matched: stdout holds results only
    assert out == "" and "no moments matched" in err


def test_a_video_that_breaks_after_indexing_keeps_its_moments_unrefined(tiny_model, tmp_path):
    """Its refinement failing, a video's stored windows stay in the results but it was reported
    as 'skipped', and as 'decoded with PyAV' though PyAV failed on it too."""
    folder = tmp_path / "videos"
    make_video(folder / "red.mp4", [("red", 3.0), ("blue", 3.0)])
    vmr_json("index", folder, "--model", tiny_model)
    (folder / "red.mp4").write_bytes((folder / "red.mp4").read_bytes()[:3000])  # broke since
    found = vmr_json("search", "red", "--top-k", "3")
    assert found["results"] and "skipped" not in found["stats"], found["stats"]
    assert [u["video"] for u in found["stats"]["unrefined"]] == [str(folder / "red.mp4")]
    assert "fallbacks" not in found["stats"], found["stats"]


def test_export_without_space_leaves_no_partial_file(indexed, tmp_path):
    vmr_json("search", "red", "--top-k", "1")
    with small_disk(tmp_path / "small", "64k", "test_export_when_ffmpeg_hits_no_space") as out:
        with open(out / "filler", "wb") as handle:  # fill it up
            try:
                for _ in range(64):
                    handle.write(b"\0" * 1024)
                    handle.flush()
            except OSError:
                pass
        code, _, err = vmr("export", "--clip", "1", "--out", out, expect=1)
        err = err.strip().splitlines()[-1]  # after the line that says which search it cuts from
        assert err.startswith("Error: ")
        assert sorted(os.listdir(out)) == ["filler"]


def test_export_when_ffmpeg_hits_no_space(indexed, tmp_path, monkeypatch):
    vmr_json("search", "red", "--top-k", "1")
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nfor last; do :; done\nhead -c 1000 /dev/zero > \"${last#file:}\"\n"
                    "echo 'Error writing trailer: No space left on device' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = vmr("export", "--clip", "1", "--out", out, expect=1)
    err = err.strip().splitlines()[-1]  # after the line that says which search it cuts from
    assert err.strip() == f"Error: result 1: not cut: no space left on device for {out}"
    assert os.listdir(out) == []


def test_export_ffmpeg_missing(indexed, tmp_path, monkeypatch):
    vmr_json("search", "red", "--top-k", "1")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, _, err = vmr("export", "--clip", "1", "--out", tmp_path, expect=1)
    assert err.strip() == ("Error: ffmpeg not found on PATH; install ffmpeg "
                           "(e.g. 'apt-get install ffmpeg' or 'brew install ffmpeg')")


def _read_only(path):
    for base, dirs, files in os.walk(path):
        for name in files:
            os.chmod(os.path.join(base, name), 0o444)
        os.chmod(base, 0o555)


def test_read_only_library_and_unwritable_export_folder(indexed, tmp_path, isolated_library):
    vmr_json("search", "red", "--top-k", "1")
    before = vmr_json("status")
    out = tmp_path / "locked"
    out.mkdir()
    _read_only(isolated_library)
    _read_only(out)
    try:
        found = vmr_subprocess(isolated_library, "search", "red", "--json")
        assert found.returncode == 0, found.stderr
        assert json.loads(found.stdout)["results"] and json.loads(found.stdout)["search_id"] is None
        note = f"note: library {isolated_library} is read-only: nothing is written and searches are not logged"
        assert note in found.stderr
        status = vmr_subprocess(isolated_library, "status", "--json")
        assert status.returncode == 0 and json.loads(status.stdout)["videos"] == before["videos"]
        index = vmr_subprocess(isolated_library, "index", indexed)
        assert index.returncode == 1 and index.stderr.strip() == (
            f"Error: library folder {isolated_library} is not writable (read-only); "
            "index into a writable --library")
        forget = vmr_subprocess(isolated_library, "forget", indexed)  # its error alone: no note on logging
        assert forget.returncode == 1 and forget.stderr == (
            f"Error: library {isolated_library} is read-only; vmr forget needs to write it\n")
        check = vmr_subprocess(isolated_library, "status", "--check")
        assert check.returncode == 1 and check.stderr.strip().endswith(
            f"Error: library {isolated_library} is read-only; vmr status --check needs to write it")
        export = vmr_subprocess(isolated_library, "export", "--search", "1", "--clip", "1", "--out", out)
        assert export.returncode == 1 and export.stderr.strip().endswith(
            f"Error: output folder is not writable: {out}")
        assert os.listdir(out) == []
    finally:
        for path in (isolated_library, out):
            for base, dirs, files in os.walk(path):
                os.chmod(base, 0o755)
    assert vmr_json("status")["searches"] == before["searches"]  # nothing was logged


def test_catalog_from_a_newer_vmr_is_refused(indexed, isolated_library):
    conn = sqlite3.connect(isolated_library / "catalog.db")
    conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    for args in (("status",), ("search", "red"), ("index", indexed)):
        code, _, err = vmr(*args, expect=1)
        assert err.strip() == (
            f"Error: catalog {isolated_library / 'catalog.db'} was written by a newer vmr (schema "
            f"{SCHEMA_VERSION + 1}, this vmr knows {SCHEMA_VERSION}); upgrade vmr or use another --library")


def test_catalog_from_vmr_1_is_migrated_with_a_backup(indexed, isolated_library):
    found = vmr_json("search", "red", "--top-k", "3")
    db = isolated_library / "catalog.db"
    conn = sqlite3.connect(db)  # what vmr 1 wrote: no codec column (nor those of schemas 3 and 5), schema 1
    for column in ("codec", "failed_with", "bad_frames", "transfer"):
        conn.execute(f"ALTER TABLE videos DROP COLUMN {column}")
    conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    conn.commit()
    rows_v1 = conn.execute("SELECT id, path, n_clips, vectors_token FROM videos").fetchall()
    conn.close()
    status = vmr_json("status")  # opening migrates
    assert status["videos"] == 1 and status["consistent"]
    backup = sqlite3.connect(f"{db}.v1.bak")
    assert backup.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)
    assert backup.execute("SELECT id, path, n_clips, vectors_token FROM videos").fetchall() == rows_v1
    backup.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    assert conn.execute("SELECT id, path, n_clips, vectors_token, codec FROM videos").fetchall() == \
        [row + (None,) for row in rows_v1]
    conn.close()
    again = vmr_json("search", "red", "--top-k", "3")  # same data, same answers
    assert [(r["video"], r["start"]) for r in again["results"]] == \
        [(r["video"], r["start"]) for r in found["results"]]


def test_an_empty_path_is_an_error_not_the_current_folder(indexed, monkeypatch):
    """'vmr forget "$DIR"' with DIR unset must not forget everything under the current folder."""
    monkeypatch.chdir(indexed)
    for args in (("forget", ""), ("index", ""), ("eval", "a.jsonl", "--videos", ""), ("export", "--out", "")):
        code, out, err = vmr(*args, expect=2)
        assert "empty path (an unset shell variable?)" in err, args
    assert vmr_json("status")["videos"] == 1


def test_a_catalog_of_another_user_is_named_as_such(tiny_model, tmp_path):
    """A catalog this user may not open (a 'sudo vmr index' made it root's) was reported as
    'unable to open database file; check the disk'."""
    make_video(tmp_path / "v" / "a.mp4", [("red", 2.0)])
    library = tmp_path / "lib"
    assert vmr_subprocess(library, "index", tmp_path / "v", "--model", tiny_model).returncode == 0
    os.chmod(library / "catalog.db", 0)
    done = vmr_subprocess(library, "index", tmp_path / "v")  # the folder is writable: not 'read-only'
    assert done.stderr.strip() == (f"Error: the catalog {library / 'catalog.db'} cannot be written (permission "
                                   "denied); are the library's files another user's (after 'sudo vmr ...')? "
                                   f"check the permissions of {library}"), done.stderr
    for args in (("status",), ("search", "red")):
        done = vmr_subprocess(library, *args)
        assert done.returncode == 1 and done.stdout == "", done
        assert done.stderr.strip() == (f"Error: the catalog {library / 'catalog.db'} cannot be read (Permission "
                                       "denied); are the library's files another user's (after 'sudo vmr ...')? "
                                       f"check the permissions of {library}"), done.stderr


def test_a_name_in_an_error_is_escaped_once(tmp_path):
    """Messages escape the names in them and the whole line again on its way to stderr; once
    a backslash printed as two, the second pass made it four: the message named no such file."""
    code, out, err = vmr("index", tmp_path / "no\\such", expect=1)
    assert f"{tmp_path}/no\\\\such" in err and "\\\\\\" not in err, err


def test_status_of_a_mistyped_library_does_not_call_it_an_empty_library(tmp_path):
    """`vmr status --library ~/vmr-lib` (a typo, or the user's own folder) said 'empty; run vmr
    index PATH to fill it': read as a library that lost its videos.  It names what is there."""
    missing, folder = tmp_path / "typo", tmp_path / "holiday"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    code, out, _ = vmr("--library", missing, "status")
    assert out == f"library   {missing}: none yet (no such folder); 'vmr index PATH' makes it\n"
    code, out, _ = vmr("--library", folder, "status")
    assert out == f"library   {folder}: none yet (no vmr library in this folder); 'vmr index PATH' makes it\n"
    assert vmr_json("--library", folder, "status")["exists"] is False
    assert not missing.exists() and os.listdir(folder) == ["notes.txt"]  # nothing made or written


def test_status_json_says_a_library_exists(tiny_model, tmp_path):
    make_video(tmp_path / "v" / "a.mp4", [("red", 2.0)])
    vmr("--library", tmp_path / "lib", "index", tmp_path / "v", "--model", tiny_model)
    assert vmr_json("--library", tmp_path / "lib", "status")["exists"] is True
