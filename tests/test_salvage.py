"""A damaged catalog's salvage (``vmr status --check``) cut short, run beside a search, or run on a
catalog of an older schema.  TESTING.md ("Round 8: a salvage cut short") maps each case to its test.

The kills are real (SIGKILL in a subprocess at the chosen file-system step), and the process that
holds the catalog open meanwhile (a search) is another process, as it would be.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys

import pytest
from conftest import ROOT, damage_page, make_video, vmr_json

from vmr_cli import catalog as catalog_module
from vmr_cli.catalog import MIGRATIONS, READ_AGAIN_MTIME, SCHEMA_VERSION, Catalog, salvage
from vmr_cli.library import Library


@pytest.fixture
def indexed(tiny_model, tmp_path, isolated_library):
    folder = tmp_path / "videos"
    make_video(folder / "red_blue.mp4", [("red", 2.0), ("blue", 2.0)])
    make_video(folder / "green.mp4", [("green", 2.0)])
    vmr_json("index", folder, "--model", tiny_model)
    vmr_json("search", "red")
    return isolated_library


# Run in a subprocess: 'vmr status --check', SIGKILLed at its Nth file-system step (a rename, a link,
# a copy, an unlink) inside salvage; prints 'done' when it got through.
KILLED_CHECK = """
import os, shutil, signal, sys
from vmr_cli import catalog
steps = [0]
def killing(real):
    def step(*args, **kwargs):
        steps[0] += 1
        if steps[0] == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return step
real_salvage = catalog.salvage
def salvage(*args, **kwargs):
    for module, name in ((os, "replace"), (os, "rename"), (os, "link"), (os, "unlink"), (shutil, "copyfileobj")):
        setattr(module, name, killing(getattr(module, name)))
    return real_salvage(*args, **kwargs)
import vmr_cli.library
vmr_cli.library.salvage = salvage
from vmr_cli.library import check_library
check_library(sys.argv[1])
print("done")
"""

# A process that holds the catalog open (a search), its commit still in the WAL, until it is killed.
HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("INSERT INTO searches (query, created_at) VALUES ('logged while checking', 0)")
print("ready", flush=True)
sys.stdin.read()
"""


def _python(code: str, *args, **kwargs):
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"), **kwargs)


def test_a_salvage_killed_at_any_step_loses_nothing_the_catalog_held(indexed, tmp_path):
    """Killed between moving the damaged catalog's WAL away and putting the salvaged catalog in its
    place, 'catalog.db' was the damaged main file alone: the next --check salvaged that, and the
    commits in the WAL (here a search another process logged) were gone."""
    db = indexed / "catalog.db"
    damage_page(db, "clips_video")
    pristine = tmp_path / "pristine"
    shutil.copytree(indexed, pristine)
    step = 0
    while True:
        step += 1
        shutil.rmtree(indexed)
        shutil.copytree(pristine, indexed)
        holder = _python(HOLDER, db, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert holder.stdout.readline().strip() == "ready"
        killed = _python(KILLED_CHECK, indexed, step, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = killed.communicate(timeout=120)
        holder.kill()
        holder.wait()
        assert killed.returncode in (0, -signal.SIGKILL), err
        checked = vmr_json("status", "--check")  # the next command; salvages again where it must
        assert checked["videos"] == 2 and checked["consistent"], (step, checked)
        conn = sqlite3.connect(db)
        queries = [row[0] for row in conn.execute("SELECT query FROM searches ORDER BY id")]
        conn.close()
        assert queries == ["red", "logged while checking"], step
        assert os.path.exists(str(db) + ".damaged"), step
        assert len(os.listdir(indexed / "shards")) == 2, step
        if killed.returncode == 0:
            break
    assert step > 2  # it was killed at each of its steps before it got through


def test_a_search_that_logs_during_a_salvage_logs_into_the_salvaged_catalog(indexed):
    """A search opens the catalog before 'vmr status --check' salvages it and logs after: its log
    went into the file kept as catalog.db.damaged (the search kept the old file open), and 'vmr
    export' took the search before it for the last one."""
    db = indexed / "catalog.db"
    damage_page(db, "operations")  # a page no search reads: searches run and log
    found = vmr_json("search", "green")
    assert found["search_id"] == 2
    searching = Library(create=False)  # a search in progress: its catalog is open
    try:
        checked = vmr_json("status", "--check")["check"]
        assert checked["catalog"]["salvaged"]["tables"]["searches"] == 2
        search_id = searching.catalog.log_search("blue", "tiny", {}, {}, [])  # the search ends
    finally:
        searching.close()
    assert search_id == 3
    latest = Library(create=False)
    try:
        assert latest.catalog.search()["query"] == "blue"
        assert [s["query"] for s in latest.catalog.searches()] == ["blue", "green", "red"]
    finally:
        latest.close()
    assert vmr_json("status", "--check")["check"]["catalog"]["ok"]


def _catalog_of_schema(path, version: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    for _name, step in MIGRATIONS[:version]:
        step(conn)
    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
    for path_key in (b"/videos/camera.m2ts", b"/videos/phone.mp4"):
        conn.execute("INSERT INTO videos (path, size, mtime_ns, fingerprint, status, codec) "
                     "VALUES (?, 1000, 5, 'f', 'ok', 'h264')", (path_key,))
    conn.execute("INSERT INTO operations (command) VALUES ('index')")
    conn.close()


def test_a_damaged_catalog_of_an_older_schema_is_migrated_as_it_is_salvaged(tmp_path):
    """A catalog of schema 3, damaged, salvaged by the first 'vmr status --check' after an upgrade:
    its rows went into a catalog of the current schema without migration 4's change (its transport
    streams were never read again, their moments off by up to a key-frame interval)."""
    assert SCHEMA_VERSION >= 4 and MIGRATIONS[3][1] is catalog_module._transport_streams_read_again
    sound, damaged = tmp_path / "sound.db", tmp_path / "damaged.db"
    _catalog_of_schema(sound, 3)
    _catalog_of_schema(damaged, 3)
    damage_page(damaged, "operations")
    salvage(str(damaged))
    for path in (sound, damaged):  # the same rows, whether migrated on opening or salvaged
        catalog = Catalog(str(path), locked=True)
        try:
            assert catalog.schema_version() == SCHEMA_VERSION
            assert catalog.video_by_path("/videos/camera.m2ts")["mtime_ns"] == READ_AGAIN_MTIME, path
            assert catalog.video_by_path("/videos/phone.mp4")["mtime_ns"] == 5
        finally:
            catalog.close()


def test_a_damaged_catalog_of_a_newer_schema_is_not_salvaged_into_an_older_one(tmp_path):
    """Salvaged by an older vmr, the newer schema's columns were dropped without a word."""
    path = tmp_path / "catalog.db"
    _catalog_of_schema(path, SCHEMA_VERSION)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    damage_page(path, "operations")
    before = path.read_bytes()
    with pytest.raises(catalog_module.VmrError, match="newer vmr"):
        salvage(str(path))
    assert path.read_bytes() == before
    assert not [name for name in os.listdir(tmp_path) if "salvage" in name or "damaged" in name]


def test_a_search_logged_while_the_rows_are_read_is_salvaged_too(indexed, monkeypatch):
    """A search logging between the salvage's reading of the rows and its writing of them over the
    damaged catalog: the salvage begins again rather than write over that search's log."""
    db = str(indexed / "catalog.db")
    damage_page(db, "operations")
    real, logged = catalog_module._copy_table, []

    def copy_table(old, conn, table):
        kept = real(old, conn, table)
        if table == "results" and not logged:  # another process's search commits once its table was read
            other = sqlite3.connect(db, isolation_level=None)
            other.execute("INSERT INTO searches (query, created_at) VALUES ('logged meanwhile', 0)")
            other.close()
            logged.append(table)
        return kept

    monkeypatch.setattr(catalog_module, "_copy_table", copy_table)
    kept = salvage(db)
    assert kept["tables"]["searches"] == 2 and kept["kept_as"] == db + ".damaged"
    conn = sqlite3.connect(db)
    assert [row[0] for row in conn.execute("SELECT query FROM searches ORDER BY id")] == ["red", "logged meanwhile"]
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
