"""Crash safety: kill -9 during vmr index, one writer at a time, search during an index run."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time

from conftest import ROOT, make_video, vmr, vmr_json

from vmr_cli.library import Library

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "cyan", "magenta", "brown"]


def make_folder(folder, n):
    for i in range(n):
        make_video(folder / f"v{i:02d}.mp4", [(COLOURS[i % 10], 2.0 + i % 3), (COLOURS[(i + 3) % 10], 2.0)])


def start_index(library, folder, model):
    return subprocess.Popen([sys.executable, "-m", "vmr_cli", "--library", str(library), "index",
                             str(folder), "--model", model], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_lock(library_dir, proc, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (library_dir / "catalog.db").exists():
            lib = Library(str(library_dir))
            locked = lib.is_locked()
            lib.close()
            if locked:
                return True
        time.sleep(0.05)
    return False


def assert_agreement(library_dir):
    """What a kill leaves: every committed clip has its vectors; opening repairs the rest."""
    conn = sqlite3.connect(os.path.join(library_dir, "catalog.db"))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    lib = Library(str(library_dir))
    # 1. no clip without vectors: each committed video's shard matches its rows exactly
    for video in lib.catalog.videos("ok"):
        shard = lib.vectors.read_shard(video["id"], video["vectors_token"])
        assert shard is not None, video["path"]
        assert shard["clip_ids"].tolist() == [c["id"] for c in lib.catalog.clips(video["id"])]
    # 2. after the open-time check the FAISS cache holds exactly the clip rows, no orphans remain
    lib.check(repair=True)
    info = lib.encoder()
    if info:
        assert set(lib.vectors.indexed_ids(info["dim"]).tolist()) == lib.catalog.clip_ids()
        known = {v["id"] for v in lib.catalog.videos("ok")}
        assert lib.vectors.shard_video_ids() <= known
        assert lib.check(repair=False)["consistent"]
    lib.close()


def test_kill_9_at_random_moments_never_corrupts(tiny_model, tmp_path):
    folder, library = tmp_path / "videos", tmp_path / "library"
    make_folder(folder, 24)
    rng = random.Random(20261127)
    kills, latest = 0, 1.0  # kill within `latest` seconds of the lock; sooner where runs end before
    for round_ in range(40):
        if kills == 22:
            break
        # keep giving the indexer work: change, rename and replace some files between kills (a
        # touch alone is no work: same size and print keep the vectors)
        names = sorted(os.listdir(folder))
        for name in rng.sample(names, 8):
            with open(folder / name, "ab") as handle:
                handle.write(b"\0" * 16)  # a new size: indexed again (decoders ignore the tail)
        victim = rng.choice(names)
        os.rename(folder / victim, folder / f"r{round_}_{victim}")
        proc = start_index(library, folder, tiny_model)
        # Wait until it holds the writer lock (imports done), then kill at a random moment of
        # its work: loading the model, scanning, decoding, committing a video, saving FAISS
        # (a run of 8 short videos with the tiny model takes about a second here; on a faster
        # machine a run that ends first makes the next kills come sooner).
        wait_for_lock(library, proc)
        time.sleep(rng.uniform(0.0, latest))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        else:
            latest *= 0.7
        proc.wait()
        if (library / "catalog.db").exists():
            assert_agreement(library)
    assert kills >= 20
    summary = vmr_json("--library", library, "index", folder, "--model", tiny_model)
    assert summary["failed"] == []
    status = vmr_json("--library", library, "status")
    files = os.listdir(folder)
    assert status["videos"] == len(files) and status["consistent"]
    lib = Library(str(library))
    paths = [v["path"] for v in lib.catalog.videos()]
    assert len(paths) == len(set(paths)) == len(files)
    leftovers = [n for d in (library, library / "shards") for n in os.listdir(d) if n.startswith(".tmp-")]
    assert leftovers == []  # temp files of killed writes are cleaned up
    # video i lasts 4 + i % 3 seconds: 2, 3 or 3 clips of 2 s
    expected = sum(2 + (int(f.rsplit("v", 1)[1][:2]) % 3 > 0) for f in files)
    assert status["clips"] == sum(len(lib.catalog.clips(v["id"])) for v in lib.catalog.videos())
    assert status["clips"] == expected


def test_one_writer_at_a_time_and_search_during_index(tiny_model, tmp_path, isolated_library):
    folder = tmp_path / "videos"
    make_folder(folder / "first", 2)
    vmr_json("index", folder / "first", "--model", tiny_model)
    make_folder(folder / "more", 30)
    proc = start_index(isolated_library, folder, tiny_model)
    try:
        assert wait_for_lock(isolated_library, proc), "the index run never took the lock"
        code, _, err = vmr("index", folder, expect=1)
        assert "another vmr process is writing" in err
        found = vmr_json("search", "red")  # works on the last committed state
        assert found["results"]
    finally:
        proc.wait(timeout=300)
    assert proc.returncode == 0
    assert vmr_json("status")["videos"] == 32


def test_vector_shard_deleted_by_hand_is_re_embedded(tiny_model, videos, isolated_library):
    vmr_json("index", videos, "--model", tiny_model)
    lib = Library()
    victim = lib.catalog.video_by_path(str(videos / "green.mp4"))
    os.unlink(lib.vectors.shard_path(victim["id"]))
    with open(lib.vectors.index_path, "r+b") as handle:  # and truncate the FAISS cache
        handle.truncate(100)
    lib.close()
    checked = vmr_json("status", "--check")
    assert checked["check"]["stale_videos"] == [victim["id"]]
    assert checked["check"]["stale_paths"] == [str(videos / "green.mp4")]  # ids alone named nothing
    assert checked["stale"] == 1 and checked["videos"] == 2
    summary = vmr_json("index", videos)
    assert summary["updated"] == 1 and summary["unchanged"] == 2  # only the damaged video
    lib = Library()
    os.unlink(lib.vectors.shard_path(lib.catalog.video_by_path(str(videos / "red_then_blue.mp4"))["id"]))
    lib.close()
    code, out, err = vmr("status", "--check")
    assert "shards    3 checked: stale 1 (re-embedded by the next vmr index)" in out
    assert f"\nstale     {videos / 'red_then_blue.mp4'}\n" in out
    vmr_json("index", videos)
    status = vmr_json("status")
    assert status["consistent"] and status["vectors"] == status["clips"] == 8


def test_temp_files_of_a_killed_write_are_removed_by_the_next_writer(tiny_model, videos, isolated_library):
    vmr_json("index", videos, "--model", tiny_model)
    left = [isolated_library / ".tmp-abc123", isolated_library / "shards" / ".tmp-def456"]
    for path in left:
        path.write_bytes(b"half a shard")
    vmr_json("search", "red")  # a reader never deletes anything
    assert all(p.exists() for p in left)
    vmr_json("index", videos)
    assert not any(p.exists() for p in left)
