"""The stores alone, on temporary paths, in milliseconds: no media, no model, no CLI.

The catalog (migrations, logging a search and reading it back), the index
plan on temporary files, and the library's check on hand-made shards.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from vmr_cli.catalog import MIGRATIONS, SCHEMA_VERSION, Catalog
from vmr_cli.library import Library
from vmr_cli.scan import plan_index

DIM = 4


# -- catalog ----------------------------------------------------------------------------------
def test_a_new_catalog_runs_every_named_migration(tmp_path):
    catalog = Catalog(str(tmp_path / "catalog.db"))
    assert catalog.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
    assert all(callable(step) and name for name, step in MIGRATIONS)
    assert catalog.videos() == [] and catalog.search() is None


def test_an_old_catalog_is_migrated_step_by_step_with_a_backup(tmp_path):
    path = tmp_path / "catalog.db"
    conn = sqlite3.connect(path)
    MIGRATIONS[0][1](conn)  # a catalog as the first vmr left it
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute("INSERT INTO videos (path, status, size) VALUES (?, 'ok', 5)", (b"/v/a.mp4",))
    conn.commit()
    conn.close()
    catalog = Catalog(str(path))
    assert catalog.schema_version() == SCHEMA_VERSION
    assert catalog.video_by_path("/v/a.mp4")["codec"] is None  # the column step 2 adds
    backup = sqlite3.connect(f"{path}.v1.bak")
    assert backup.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)


def test_a_catalog_migrated_meanwhile_never_becomes_the_backup(tmp_path, monkeypatch):
    """Two commands opening an old catalog at once: the one that read schema 3 before the other
    migrated it copied the migrated catalog over CATALOG.v3.bak (3 of 15 rounds in an audit)."""
    path = tmp_path / "catalog.db"
    Catalog(str(path)).close()  # migrated to the current schema by "the other process"
    backup = tmp_path / "catalog.db.v3.bak"
    backup.write_bytes(b"the schema-3 catalog")  # what the other process backed up first
    seen = iter([3])
    real = Catalog.schema_version
    monkeypatch.setattr(Catalog, "schema_version", lambda self: next(seen, None) or real(self))
    catalog = Catalog(str(path))  # read 3 before the other process's migration committed
    assert catalog.schema_version() == SCHEMA_VERSION
    assert backup.read_bytes() == b"the schema-3 catalog"
    assert not list(tmp_path.glob(".tmp-*"))


def test_an_old_catalog_is_not_migrated_while_another_vmr_writes_the_library(tmp_path):
    """Any command migrated an old catalog while an older vmr's 'vmr index' held the library's
    writer lock: that process then wrote into a schema it does not know, and its rows escaped
    the migration (a transport stream it indexed was never read again).  The migration takes
    the lock; another vmr holding it is a one-line error, and nothing is migrated."""
    import threading
    import time

    from vmr_cli.catalog import MIGRATING, MIGRATION_WAIT
    from vmr_cli.errors import VmrError
    from vmr_cli.lock import writer_lock

    path = tmp_path / "catalog.db"
    Catalog(str(path)).close()

    def as_schema_3():  # as vmr before schema 4 left it
        conn = sqlite3.connect(path)
        conn.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
        conn.commit()
        conn.close()

    as_schema_3()
    with writer_lock(str(tmp_path), "vmr index"):  # an older vmr indexing this library
        with pytest.raises(VmrError) as refused:
            Catalog(str(path))
        assert str(refused.value) == (
            f"another vmr (perhaps an older one) is writing the library {tmp_path}, whose catalog this vmr "
            f"must upgrade first (schema 3 to {SCHEMA_VERSION}); run the command again when it ends")
        readonly = Catalog(str(path), readonly=True)  # a reader migrates nothing: it needs no lock
        assert readonly.schema_version() == 3
        readonly.close()
    assert not os.path.exists(f"{path}.v3.bak")

    released = []
    started = threading.Event()

    def migrating_elsewhere():  # another new vmr migrating it meanwhile: waited for, not refused
        with writer_lock(str(tmp_path), MIGRATING):
            started.set()
            time.sleep(MIGRATION_WAIT + 0.5)
            released.append(time.monotonic())

    other = threading.Thread(target=migrating_elsewhere)
    other.start()
    started.wait()
    catalog = Catalog(str(path))
    opened = time.monotonic()
    other.join()
    assert opened >= released[0] and catalog.schema_version() == SCHEMA_VERSION
    catalog.close()
    backup = sqlite3.connect(f"{path}.v3.bak")
    assert backup.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("3",)
    backup.close()

    # ... and once it has migrated, a command that takes the lock back at once for its own work (vmr
    # forget, vmr index) is not waited for: a search opening the catalog then was refused after 2 s
    # with "must upgrade first (schema 3 to 5)", the catalog at 5
    as_schema_3()
    indexing = threading.Event()

    def migrating_then_indexing():
        with writer_lock(str(tmp_path), MIGRATING):
            started.set()
            time.sleep(0.3)
            Catalog(str(path), locked=True).close()
        with writer_lock(str(tmp_path), "vmr index"):
            indexing.set()
            time.sleep(MIGRATION_WAIT + 1)

    started.clear()
    other = threading.Thread(target=migrating_then_indexing)
    other.start()
    started.wait()
    catalog = Catalog(str(path))  # waits while it migrates, then opens without the lock
    assert catalog.schema_version() == SCHEMA_VERSION and other.is_alive()
    catalog.close()
    other.join()

    as_schema_3()
    with writer_lock(str(tmp_path), "vmr status --check"):  # which opens the library holding the lock
        library = Library(str(tmp_path), create=False, locked=True)
        assert library.catalog.schema_version() == SCHEMA_VERSION
        library.close()


def test_a_private_catalogs_backup_stays_private(tmp_path):
    """The catalog logs every query: chmod 600 on it, then a migration's backup was 0644."""
    path = tmp_path / "catalog.db"
    conn = sqlite3.connect(path)
    MIGRATIONS[0][1](conn)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.commit()
    conn.close()
    os.chmod(path, 0o600)
    Catalog(str(path)).close()
    assert os.stat(f"{path}.v1.bak").st_mode & 0o777 == 0o600
    assert not [p for p in os.listdir(tmp_path) if "journal" in p or p.startswith(".")]


def test_transport_streams_indexed_before_pyav_read_them_are_read_again(tiny_model, tmp_path):
    """A catalog from before transport streams were decoded by PyAV holds frames of the wrong
    times for them: the migration makes the next index read them again, and only them."""
    from conftest import make_video, vmr_json

    folder = tmp_path / "v"
    mp4 = make_video(folder / "phone.mp4", [("red", 2.0)])
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(mp4), "-c", "copy", "-f", "mpegts",
                    str(folder / "camcorder.mts")], check=True)
    library = tmp_path / "lib"
    assert vmr_json("--library", library, "index", folder, "--model", tiny_model)["added"] == 2
    conn = sqlite3.connect(library / "catalog.db")
    conn.execute("UPDATE meta SET value='3' WHERE key='schema_version'")  # as the vmr before left it
    conn.commit()
    conn.close()
    away = tmp_path / "unmounted"
    folder.rename(away)  # the drive is not there when the catalog is migrated (any command does it)
    assert vmr_json("--library", library, "status")["videos"] == 2
    away.rename(folder)
    again = vmr_json("--library", library, "index", folder)
    assert (again["updated"], again["unchanged"], again["touched"]) == (1, 1, 0)
    assert vmr_json("--library", library, "index", folder)["unchanged"] == 2


def test_a_transport_stream_marked_to_be_read_again_is_not_said_to_have_changed(tiny_model, tmp_path):
    """Migration 4 clears a transport stream's recorded time: until the next index, show, search
    and export said the untouched file had changed since it was indexed or searched.  They say
    what is so (an older vmr read it at wrong times), and export still cuts it."""
    from conftest import make_video, vmr, vmr_json

    folder = tmp_path / "v"
    mp4 = make_video(folder / "phone.mp4", [("red", 2.0)])
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(mp4), "-c", "copy", "-f", "mpegts",
                    str(folder / "camcorder.mts")], check=True)
    mp4.unlink()
    library = tmp_path / "lib"
    vmr("--library", library, "index", folder, "--model", tiny_model)
    logged = vmr_json("--library", library, "search", "a red screen")  # by the older vmr
    conn = sqlite3.connect(library / "catalog.db")
    conn.execute("UPDATE meta SET value='3' WHERE key='schema_version'")  # as the vmr before left it
    conn.commit()
    conn.close()
    stream = folder / "camcorder.mts"
    said = f"{stream} was indexed by an older vmr that read transport streams at wrong times, so its " \
        "moments may be off until 'vmr index' reads it again"
    _, _, err = vmr("--library", library, "show", logged["search_id"])
    assert f"warning: result 1: {said}" in err and "changed" not in err
    _, _, err = vmr("--library", library, "search", "a red screen")
    assert f"warning: {stream}: indexed by an older vmr that read transport streams" in err
    assert "changed" not in err
    stats = vmr_json("--library", library, "search", "a red screen")["stats"]
    assert "changed" not in stats and [c["video"] for c in stats["read_again"]] == [str(stream)]
    exported = vmr_json("--library", library, "export", "--search", logged["search_id"], "1",
                        "--out", tmp_path / "cuts")
    assert len(exported["exported"]) == 1 and exported["exported"][0]["warning"] == f"result 1: {said}"
    vmr("--library", library, "index", folder)  # read again: nothing more to say
    _, _, err = vmr("--library", library, "search", "a red screen")
    assert "warning" not in err


def test_a_failed_file_recorded_without_its_root_counts_its_folder_as_one(tmp_path):
    """vmr recorded failed files with no root until 2026-12-01: 'vmr index' with no PATH never
    looked at their folder again (a file put right stayed 'failed', new files there unseen)."""
    catalog = Catalog(str(tmp_path / "catalog.db"))
    with catalog.transaction():
        catalog.upsert_video({"path": "/v/a.mp4", "root": "/v", "size": 1, "mtime_ns": 1, "status": "ok"})
        catalog.upsert_video({"path": "/w/broken.mp4", "size": 1, "mtime_ns": 1, "status": "failed"})
    assert catalog.roots() == ["/v", "/w"]


def test_logging_a_search_and_reading_it_back(tmp_path):
    catalog = Catalog(str(tmp_path / "catalog.db"))
    odd = os.fsdecode(b"/v/caf\xe9\nnew.mp4")  # not UTF-8, with a newline: bytes survive
    results = [{"rank": 1, "video": odd, "video_id": 7, "start": 1.5, "end": 4.0, "score": 0.9},
               {"rank": 2, "video": "/v/b.mp4", "start": 0.0, "end": 2.0, "score": 0.5}]
    first = catalog.log_search("a red ball", "tiny", {"top_k": 2}, {"frames_encoded": 3}, results)
    second = catalog.log_search("nothing", "tiny", {}, {}, [])
    assert second == first + 1
    logged = catalog.search(first)
    assert logged["query"] == "a red ball" and logged["options"] == {"top_k": 2}
    assert logged["stats"] == {"frames_encoded": 3}
    assert [(r["rank"], r["video"], r["start"], r["end"], r["score"]) for r in logged["results"]] == \
        [(1, odd, 1.5, 4.0, 0.9), (2, "/v/b.mp4", 0.0, 2.0, 0.5)]
    assert catalog.search()["id"] == second and catalog.search(second + 5) is None
    catalog.log_operation("export", {"ranks": [1]}, {"exported": 1}, 0.0)
    assert [(o["command"], o["arguments"], o["summary"]) for o in catalog.operations()] == \
        [("export", {"ranks": [1]}, {"exported": 1})]


def test_video_rows_keep_their_id_through_update_move_and_stale(tmp_path):
    catalog = Catalog(str(tmp_path / "catalog.db"))
    with catalog.transaction():
        vid = catalog.upsert_video({"path": "/v/a.mp4", "root": "/v", "size": 1, "status": "ok"})
        ids = catalog.replace_clips(vid, [{"idx": i, "start": 2.0 * i, "end": 2.0 * i + 2} for i in range(3)])
    with catalog.transaction():
        assert catalog.upsert_video({"path": "/v/a.mp4", "size": 2, "status": "ok"}) == vid
        catalog.move_video(vid, "/w/b.mp4", "/w", 123)
    row = catalog.video(vid)
    assert (row["path"], row["root"], row["size"], row["mtime_ns"]) == ("/w/b.mp4", "/w", 2, 123)
    assert catalog.clip_ids_of(vid) == ids and catalog.clip_video_ids(ids) == {i: vid for i in ids}
    with catalog.transaction():
        catalog.mark_stale(vid, "damaged")
    assert catalog.videos("stale")[0]["error"] == "damaged" and catalog.clip_ids() == set()
    assert catalog.counts()["stale"] == 1


# -- the index plan -----------------------------------------------------------------------------
def _file(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_index_plan_tells_new_unchanged_changed_moved_and_gone(tmp_path):
    from vmr_cli.scan import fingerprint

    root = tmp_path / "videos"
    same = _file(root / "same.mp4", b"s" * 100)
    changed = _file(root / "changed.mp4", b"c" * 100)
    moved = _file(root / "sub" / "moved here.mp4", b"m" * 100)
    _file(root / "new.mkv", b"n" * 100)
    _file(root / "notes.txt", b"not a video")
    catalog = Catalog(str(tmp_path / "catalog.db"))

    def row(path, size, mtime_ns, fp=None):
        catalog.upsert_video({"path": str(path), "root": str(root), "size": size, "mtime_ns": mtime_ns,
                              "fingerprint": fp, "status": "ok"})

    with catalog.transaction():
        st = same.stat()
        row(same, st.st_size, st.st_mtime_ns)
        row(changed, 100, 1)  # an older mtime
        row(root / "moved.mp4", 100, 1, fingerprint(str(moved), 100))  # where it was
        row(root / "deleted.mp4", 7, 1)
        row(tmp_path / "elsewhere" / "kept.mp4", 7, 1)  # outside the scanned root: untouched
    plan = plan_index(catalog, [str(root)])
    assert plan.unchanged == 1
    assert [item.path for item, _ in plan.update] == [str(changed)]
    assert [(item.path, old["path"]) for item, old in plan.move] == [(str(moved), str(root / "moved.mp4"))]
    assert [item.path for item, _ in plan.add] == [str(root / "new.mkv")]
    assert [r["path"] for r in plan.remove] == [str(root / "deleted.mp4")]
    assert plan.failed == []


# -- the library's check on hand-made shards -----------------------------------------------------
def _put(lib, name: str, clips: int = 3, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    vectors = {k: rng.standard_normal((clips, DIM)).astype(np.float32) for k in ("A", "B", "M")}
    rows = [{"idx": i, "start": 2.0 * i, "end": 2.0 * i + 2} for i in range(clips)]
    return lib.put_video({"path": f"/v/{name}", "root": "/v", "size": 1, "mtime_ns": 1}, rows, vectors)


@pytest.fixture
def lib(tmp_path):
    library = Library(str(tmp_path / "lib"))
    library.record_encoder("hand-made", DIM, 32, 2.0)
    return library


def test_put_move_remove_keep_catalog_shards_and_faiss_in_step(lib):
    a, b = _put(lib, "a.mp4"), _put(lib, "b.mp4", clips=2, seed=1)
    lib.save()
    assert lib.check(deep=True)["consistent"]
    assert set(lib.vectors.indexed_ids(DIM).tolist()) == lib.catalog.clip_ids()
    again = _put(lib, "a.mp4", clips=4, seed=2)  # re-indexed: a new row (and shard) for the path
    assert again != a and lib.catalog.video(a) is None and len(lib.catalog.clip_ids_of(again)) == 4
    assert lib.vectors.shard_video_ids() == {again, b}
    lib.move_video(lib.catalog.video(b), "/w/b.mp4", "/w", 2)
    lib.remove_video(lib.catalog.video(again))
    lib.save()
    assert lib.vectors.shard_video_ids() == {b}
    assert set(lib.vectors.indexed_ids(DIM).tolist()) == lib.catalog.clip_ids()
    report = lib.check(deep=True)
    assert report["consistent"] and report["stale_videos"] == []


def test_the_librarys_files_take_the_umask_as_its_catalog_does(tmp_path):
    """Vectors and the FAISS cache were mkstemp's 0600 beside a 0644 catalog: another account
    could open a shared library and read none of its videos; a mode the owner gave a file
    (chmod) stays when it is written again."""
    old = os.umask(0o027)
    try:
        lib = Library(str(tmp_path / "lib"))
        lib.record_encoder("hand-made", DIM, 32, 2.0)
        _put(lib, "a.mp4")
        lib.save()
        folder = tmp_path / "lib"
        written = [folder / "catalog.db", folder / "appearance.faiss", folder / "appearance.faiss.json",
                   *folder.glob("shards/*.safetensors")]
        assert len(written) == 4
        assert {oct(p.stat().st_mode & 0o777) for p in written} == {oct(0o640)}
        os.chmod(folder / "appearance.faiss", 0o644)
        _put(lib, "b.mp4")
        lib.save()  # the FAISS cache written again
        assert (folder / "appearance.faiss").stat().st_mode & 0o777 == 0o644
        lib.close()
    finally:
        os.umask(old)


def test_videos_marked_stale_together_are_one_transaction_and_one_faiss_removal(lib, monkeypatch):
    """One at a time, each video was its own commit and its own FAISS removal (which scans the
    whole cache): 20,000 videos whose shards were lost took 37 s before 'vmr index' said anything."""
    ids = [_put(lib, f"{n}.mp4", seed=n) for n in range(3)]
    lib.save()
    removals, commits = [], []
    real_remove, real_transaction = lib.vectors.remove, lib.catalog.transaction
    monkeypatch.setattr(lib.vectors, "remove", lambda dim, clip_ids: (removals.append(list(clip_ids)),
                                                                      real_remove(dim, clip_ids))[1])
    monkeypatch.setattr(lib.catalog, "transaction", lambda: (commits.append(1), real_transaction())[1])
    lib.mark_stale(ids[:2])
    assert len(removals) == 1 and len(removals[0]) == 6 and len(commits) == 1
    assert [lib.catalog.video(i)["status"] for i in ids] == ["stale", "stale", "ok"]
    assert lib.vectors.shard_video_ids() == {ids[2]}
    lib.save()
    assert set(lib.vectors.indexed_ids(DIM).tolist()) == lib.catalog.clip_ids()


def test_a_kill_while_re_indexing_a_video_keeps_its_committed_vectors(lib, monkeypatch):
    """Dying after the new shard is written but before its row commits (what CI's kill -9
    test once hit) leaves the committed row with the shard it was committed with."""
    a = _put(lib, "a.mp4")
    lib.save()
    committed = lib.catalog.video(a)
    write = lib.vectors.write_shard

    def write_then_die(*args, **kwargs):
        write(*args, **kwargs)
        raise KeyboardInterrupt  # the transaction is rolled back, as a kill leaves it

    monkeypatch.setattr(lib.vectors, "write_shard", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        _put(lib, "a.mp4", clips=4, seed=2)
    monkeypatch.undo()
    assert lib.catalog.video(a)["vectors_token"] == committed["vectors_token"]
    shard = lib.vectors.read_shard(a, committed["vectors_token"])
    assert shard is not None and shard["clip_ids"].tolist() == lib.catalog.clip_ids_of(a)
    report = lib.check(deep=True)  # the next writer: the new, uncommitted shard is an orphan
    assert report["stale_videos"] == [] and report["orphan_shards"] == 1
    assert lib.vectors.shard_video_ids() == {a} and lib.check(deep=True)["consistent"]


def test_check_repairs_a_lost_shard_a_foreign_shard_an_orphan_and_faiss_drift(lib):
    a, b, c = _put(lib, "a.mp4"), _put(lib, "b.mp4", seed=1), _put(lib, "c.mp4", seed=2)
    lib.save()
    os.unlink(lib.vectors.shard_path(a))                       # deleted by hand
    lib.vectors.write_shard(b, "another row's token", lib.catalog.clip_ids_of(b),
                            {k: np.zeros((3, DIM), np.float32) for k in ("A", "B", "M")})
    lib.vectors.write_shard(99, "orphan", [1000], {k: np.zeros((1, DIM), np.float32) for k in ("A", "B", "M")})
    lib.vectors.remove(DIM, lib.catalog.clip_ids_of(c)[:1])  # the cache lost one of c's clips
    lib.vectors.add(DIM, [5000], np.ones((1, DIM), np.float32))  # and holds a clip nobody has
    report = lib.check(deep=True)
    assert not report["consistent"]
    assert report["stale_videos"] == sorted([a, b]) and report["orphan_shards"] == 1
    assert (report["index_added"], report["index_removed"]) == (1, 1)
    assert [v["id"] for v in lib.catalog.videos("stale")] == sorted([a, b])
    assert lib.vectors.shard_video_ids() == {c}
    assert lib.check(deep=True)["consistent"]


def test_a_shard_noted_as_matching_is_still_found_when_it_is_lost_cut_short_or_replaced(lib, monkeypatch):
    """repair_missing_shards opens a shard again only when its stat changed since it was found
    matching (vectors.CHECKED_NOTE); each change a shard can go through is still found."""
    from vmr_cli import vectors

    monkeypatch.setattr(vectors, "RECENT_NS", -10 ** 12)  # the shards just written count as settled
    ids = [_put(lib, f"{n}.mp4", seed=n) for n in range(5)]
    opened = []
    real = lib.vectors.shard_matches
    monkeypatch.setattr(lib.vectors, "shard_matches", lambda *a: (opened.append(a[0]), real(*a))[1])
    assert lib.repair_missing_shards() == [] and sorted(opened) == ids
    opened.clear()
    assert lib.repair_missing_shards() == [] and opened == []  # nothing changed: no header read
    lost, short, foreign, wrong_length = ids[:4]
    os.unlink(lib.vectors.shard_path(lost))
    with open(lib.vectors.shard_path(short), "r+b") as handle:
        handle.truncate(os.path.getsize(lib.vectors.shard_path(short)) - 4)
    clip_ids = lib.catalog.clip_ids_of(foreign)  # another row's shard, of the very same size
    lib.vectors.write_shard(foreign, "b" * 32, clip_ids, {k: np.zeros((3, DIM), np.float32) for k in "ABM"})
    token = lib.catalog.video(wrong_length)["vectors_token"]
    lib.vectors.write_shard(wrong_length, token, [1, 2], {k: np.zeros((2, DIM), np.float32) for k in "ABM"})
    assert sorted(lib.repair_missing_shards()) == [lost, short, foreign, wrong_length]
    assert sorted(opened) == [lost, short, foreign, wrong_length]
    assert [v["id"] for v in lib.catalog.videos("ok")] == ids[4:]
    with open(os.path.join(lib.vectors.shard_dir, vectors.CHECKED_NOTE), "w") as handle:
        handle.write("{not json")  # a damaged note is no note
    opened.clear()
    assert lib.repair_missing_shards() == [] and opened == ids[4:]


def test_starting_over_without_the_catalog_drops_the_old_faiss_cache(lib, tmp_path):
    """The lost-catalog error says to delete shards/ to start over; the FAISS cache left beside
    them held the old library's clip ids, which a new catalog hands out again from 1."""
    for i in range(3):
        _put(lib, f"{i}.mp4", clips=4, seed=i)
    lib.save()
    for name in os.listdir(lib.directory):
        if name.startswith("catalog.db"):
            os.unlink(os.path.join(lib.directory, name))
    shutil.rmtree(lib.vectors.shard_dir)
    fresh = Library(lib.directory)
    fresh.record_encoder("hand-made", DIM, 32, 2.0)
    _put(fresh, "new.mp4", clips=2, seed=9)  # and the run stops before it saves (Ctrl-C, a kill)
    again = Library(lib.directory)
    assert again.vectors.count(DIM) == 0  # the old cache was dropped on disk at once
    again.check()
    again.save()
    again = Library(lib.directory)
    assert sorted(again.vectors.indexed_ids(DIM).tolist()) == sorted(again.catalog.clip_ids())
    assert again.status()["vectors"] == 2 and again.check()["consistent"]


def test_check_rebuilds_a_faiss_cache_holding_an_id_twice(lib):
    """Sets of ids cannot see a clip id held twice (old and new vectors): the cache is built again."""
    a = _put(lib, "a.mp4")
    ids = lib.catalog.clip_ids_of(a)
    lib.vectors.add(DIM, ids, np.ones((len(ids), DIM), np.float32))  # another library's vectors, same ids
    report = lib.check()
    assert not report["consistent"] and report["index_removed"] == 2 * len(ids)
    assert report["index_added"] == len(ids)
    assert sorted(lib.vectors.indexed_ids(DIM).tolist()) == sorted(ids)
    assert lib.check()["consistent"]


def test_a_search_repairs_in_memory_only(lib):
    a = _put(lib, "a.mp4")
    lib.save()
    os.unlink(lib.vectors.shard_path(a))
    report = lib.check(repair=True, deep=True, save=False)
    assert report["stale_videos"] == [a]
    assert lib.catalog.videos("ok")[0]["id"] == a  # nothing written


def test_the_coarse_search_is_exact_at_any_size(tmp_path):
    """Past 200,000 clips vmr trained an IVF index in every search process: 70 s a search
    (ViT-B/32-sized vectors) and another top-k than the exact one."""
    from vmr_cli.vectors import VectorStore

    rng = np.random.default_rng(0)
    n, dim = 200_500, 16
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    store = VectorStore(str(tmp_path / "v"))
    store.add(dim, np.arange(1, n + 1), vectors)
    store.save()
    query = rng.standard_normal(dim).astype(np.float32)
    _scores, ids = VectorStore(str(tmp_path / "v")).search(dim, query, 50)  # as a new process reads it
    assert ids.tolist() == (np.argsort(-(vectors @ query))[:50] + 1).tolist()


def test_a_faiss_cache_read_from_its_file_is_copied_before_it_changes(lib, monkeypatch):
    """A new process maps a large cache's vectors from the file; faiss aborts the process on a
    change to them, so an index run (or a search's repair in memory) must work on its own copy.
    Without the mapping flag (faiss before 1.11) the cache is read as before, not dropped."""
    from vmr_cli import vectors

    monkeypatch.setattr(vectors, "MAP_FROM_BYTES", 0)  # map this small one too
    a, _b = _put(lib, "a.mp4"), _put(lib, "b.mp4", seed=1)
    lib.save()
    older = Library(lib.directory)
    with monkeypatch.context() as mp:
        import faiss

        mp.delattr(faiss, "IO_FLAG_MMAP_IFC")
        assert older.vectors.index(DIM).ntotal == 6 and not older.vectors._mapped
    again = Library(lib.directory)
    assert len(again.vectors.search(DIM, np.ones(DIM, np.float32), 4)[1]) == 4 and again.vectors._mapped
    _put(again, "c.mp4", seed=2)
    again.remove_video(again.catalog.video(a))
    again.save()
    third = Library(lib.directory)
    assert set(third.vectors.indexed_ids(DIM).tolist()) == third.catalog.clip_ids()
    assert third.check(deep=True)["consistent"] and len(third.catalog.clip_ids()) == 6


@pytest.mark.parametrize("mapped", [False, True])
def test_a_library_whose_path_is_not_utf8_keeps_its_faiss_cache(tmp_path, monkeypatch, mapped):
    """faiss takes a file name as UTF-8 only: under a Latin-1 folder name (a home folder 'café'
    made on another system) saving the cache ended every vmr index in a TypeError traceback,
    and the cache was never written, so every search rebuilt it."""
    from vmr_cli import vectors

    monkeypatch.setattr(vectors, "MAP_FROM_BYTES", 0 if mapped else 1 << 60)
    folder = os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), b"caf\xe9"))
    library = Library(folder)
    library.record_encoder("hand-made", DIM, 32, 2.0)
    a = _put(library, "a.mp4")
    _put(library, "b.mp4", seed=1)
    library.save()
    assert os.path.getsize(library.vectors.index_path) > 0
    again = Library(folder)
    assert again.vectors.index(DIM).ntotal == 6 and again.vectors._mapped == mapped
    again.remove_video(again.catalog.video(a))
    again.save()
    assert Library(folder).check(deep=True)["consistent"] and Library(folder).vectors.index(DIM).ntotal == 3


# -- packaging --------------------------------------------------------------------------------
def test_pip_install_puts_only_vmr_names_into_site_packages(tmp_path):
    """The repository's models/ folder installs as vmr_models: a bare 'models' would collide."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    root = tmp_path / "src"  # a copy: building writes build/ and *.egg-info beside the sources
    for name in ("vmr_cli", "models"):
        shutil.copytree(os.path.join(repo, name), root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(repo, name), root / name)
    target = tmp_path / "site"
    isolation = ["--no-build-isolation"] if _has_setuptools() else []
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *isolation,
                           "--target", str(target), str(root)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    top = {name for name in os.listdir(target) if not name.endswith(".dist-info")}
    assert top - {"bin"} == {"vmr_cli", "vmr_models"}
    # Only what was installed, from an unrelated folder (-I: no cwd, -S: no site-packages).
    probe = (f"import sys; sys.path.insert(0, {str(target)!r}); import importlib.util as u; "
             "print(u.find_spec('models') is None, u.find_spec('vmr_models') is not None)")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.split() == ["True", "True"], out.stderr


def _has_setuptools() -> bool:
    try:
        import setuptools  # noqa: F401
    except ImportError:
        return False
    return True


def test_a_writer_is_not_refused_for_a_lock_held_a_moment_to_look(tmp_path):
    """'vmr status' asks whether an index runs by taking the writer lock for a moment
    (lock.is_locked); a 'vmr index' starting in that moment was refused: 'another vmr process is
    writing'.  A lock held for a moment is waited for; one held on is still refused."""
    import fcntl
    import threading

    from vmr_cli.errors import VmrError
    from vmr_cli.lock import LOCK_NAME, writer_lock

    def held_for(seconds):
        taken = threading.Event()

        def hold():
            with open(tmp_path / LOCK_NAME, "a+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                taken.set()
                time.sleep(seconds)
                fcntl.flock(handle, fcntl.LOCK_UN)

        thread = threading.Thread(target=hold)
        thread.start()
        taken.wait()
        return thread

    looking = held_for(0.02)
    with writer_lock(str(tmp_path), "vmr index") as got:
        assert got is True
    looking.join()
    writing = held_for(2.0)
    try:
        with pytest.raises(VmrError, match="another vmr process is writing"):
            with writer_lock(str(tmp_path), "vmr index"):
                pass
    finally:
        writing.join()
