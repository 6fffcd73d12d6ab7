"""Search pays for the query, not for the library again: stored frames and the frame cache."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import torch
from conftest import make_video, vmr, vmr_json, vmr_subprocess

from vmr_cli.library import Library


def test_index_encodes_2n_plus_1_frames_and_stores_them(tiny_model, tmp_path, monkeypatch):
    """Adjacent clips share their boundary frame: 3 clips cost 7 encoder passes, not 9."""
    from vmr_cli.encoders import ClipEncoder

    counted = []
    real = ClipEncoder.encode_images

    def counting(self, frames):
        counted.append(frames.shape[0])
        return real(self, frames)

    monkeypatch.setattr(ClipEncoder, "encode_images", counting)
    make_video(tmp_path / "v" / "three clips.mp4", [("testsrc", 6.0)])  # every frame another picture
    vmr_json("index", tmp_path / "v", "--model", tiny_model)
    assert sum(counted) == 7
    lib = Library()
    video = lib.catalog.videos("ok")[0]
    shard = lib.vectors.read_shard(video["id"], video["vectors_token"])
    assert shard["F"].shape == (7, lib.encoder()["dim"]) and shard["F"].dtype == np.float16
    assert np.allclose(shard["F_t"], [0, 1, 2, 3, 4, 5, 5.9], atol=1e-6)  # last: the final frame (10 fps)
    # A is the middle frame of each clip, exactly as stored in F (up to float16)
    assert np.allclose(shard["A"], shard["F"][1::2].astype(np.float32), atol=2e-3)


def test_a_frame_that_repeats_the_one_before_is_not_encoded_again(tiny_model, tmp_path, monkeypatch):
    """A still scene (a screen recording's unchanging screen, a title card): each stored frame
    whose decoded pixels equal the one's before takes its embedding without an encoder pass;
    what is stored is what encoding every frame gives."""
    from vmr_cli.decode import open_reader
    from vmr_cli.encoders import ClipEncoder
    from vmr_cli.indexer import encode_distinct
    from vmr_cli.probe import probe

    counted = []
    real = ClipEncoder.encode_images
    monkeypatch.setattr(ClipEncoder, "encode_images", lambda self, frames: counted.append(frames.shape[0])
                        or real(self, frames))
    path = make_video(tmp_path / "v" / "title then scene.mp4", [("red", 4.0), ("testsrc", 3.0)])
    vmr_json("index", tmp_path / "v", "--model", tiny_model)
    lib = Library()
    video = lib.catalog.videos("ok")[0]
    shard = lib.vectors.read_shard(video["id"], video["vectors_token"])
    stored = len(shard["F_t"])
    assert stored == 9 and sum(counted) <= stored - 3  # the red title's 4 frames: encoded once
    encoder = ClipEncoder(tiny_model)
    reader = open_reader(str(path), probe(str(path)), encoder.image_size, whole=True)
    frames = reader.frames_at([float(t) for t in shard["F_t"]])
    reader.close()
    every = real(encoder, frames).numpy()
    assert np.allclose(shard["F"].astype(np.float32), every, atol=2e-3)
    # across a chunk's boundary: its first frame is the previous chunk's last
    first = encode_distinct(encoder, frames[:4])
    rest = encode_distinct(encoder, frames[3:], skip_first=True, before=first[-1])
    assert torch.allclose(torch.cat([first, rest]), torch.from_numpy(every), atol=1e-4)


@pytest.mark.parametrize("guess", [None, 17])
def test_decoding_that_starts_before_the_model_loads_ends_at_the_size_the_model_takes(
        tiny_model, tmp_path, monkeypatch, guess):
    """The index decodes while the model loads, at the size the model's configs name; where they
    name none (or another), the frames are decoded again at the loaded model's size, so the
    stored embeddings are the ones a plain run gives."""
    from vmr_cli import indexer
    from vmr_cli.encoders import ClipEncoder

    make_video(tmp_path / "v" / "two.mp4", [("red", 2.0), ("testsrc", 3.0)])
    sizes = []
    real = ClipEncoder.encode_images

    def seeing(self, frames):
        sizes.append(frames.shape[-1])
        return real(self, frames)

    monkeypatch.setattr(ClipEncoder, "encode_images", seeing)
    vmr_json("--library", tmp_path / "plain", "index", tmp_path / "v", "--model", tiny_model)
    monkeypatch.setattr(indexer, "input_size", lambda files: guess)
    vmr_json("--library", tmp_path / "guessed", "index", tmp_path / "v", "--model", tiny_model)
    assert len(set(sizes)) == 1  # never frames of another size handed to the encoder
    shards = []
    for name in ("plain", "guessed"):
        lib = Library(str(tmp_path / name))
        video = lib.catalog.videos("ok")[0]
        shards.append(lib.vectors.read_shard(video["id"], video["vectors_token"])["F"])
        lib.close()
    assert np.array_equal(shards[0], shards[1])


def test_a_model_that_fails_to_load_leaves_no_decoding_behind(tiny_model, tmp_path, monkeypatch):
    import threading

    from vmr_cli import indexer
    from vmr_cli.errors import VmrError

    def broken(self, files, *args, **kwargs):
        raise VmrError("cannot load model: damaged")

    for k in range(4):  # more messages than the decode queue holds: only closing it ends the thread
        make_video(tmp_path / "v" / f"{k}.mp4", [("red", 2.0)])
    monkeypatch.setattr(indexer.ClipEncoder, "__init__", broken)
    lib = Library(str(tmp_path / "lib"))
    with pytest.raises(VmrError, match="damaged"):
        indexer.index_paths(lib, [str(tmp_path / "v")], model=tiny_model, progress=False)
    assert not [t for t in threading.enumerate() if t.name == "vmr-decode"]
    assert lib.catalog.videos() == [] and lib.encoder() is None  # nothing recorded for a model never loaded
    lib.close()


def test_a_new_library_encodes_before_its_weights_hash_is_done(tiny_model, tmp_path, monkeypatch):
    """Hashing the weights (0.6 s for ViT-B/32's, more from a cold disk) no longer holds back the
    first frames: the hash is awaited at the first write, and recorded with the encoder."""
    import threading

    from vmr_cli import indexer

    make_video(tmp_path / "v" / "a.mp4", [("red", 2.0), ("testsrc", 2.0)])
    encoding = threading.Event()
    real_encode, real_hash = indexer.ClipEncoder.encode_images, indexer.weights_identity

    def encode(self, frames):
        encoding.set()
        return real_encode(self, frames)

    def slow_hash(files):  # returns only once encoding has begun (or gives up after 30 s)
        return dict(real_hash(files), began_first=encoding.wait(30))

    monkeypatch.setattr(indexer.ClipEncoder, "encode_images", encode)
    monkeypatch.setattr(indexer, "weights_identity", slow_hash)
    lib = Library(str(tmp_path / "lib"))
    summary = indexer.index_paths(lib, [str(tmp_path / "v")], model=tiny_model, progress=False)
    assert summary["added"] == 1
    assert lib.encoder()["weights"]["began_first"] is True  # encoding did not wait for the hash
    from vmr_cli.library import PREPROCESSING

    recorded = json.loads(lib.catalog.get_meta(PREPROCESSING))  # written with the encoder, in one transaction
    assert recorded["image_size"] == lib.encoder()["image_size"] and len(recorded["mean"]) == 3
    lib.close()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.mp4").write_bytes(b"not a video at all" * 100)
    lib = Library(str(tmp_path / "lib2"))  # a new library whose only file fails still records its encoder
    summary = indexer.index_paths(lib, [str(tmp_path / "bad")], model=tiny_model, progress=False)
    assert [f["recorded"] for f in summary["failed"]] == [True]
    assert lib.encoder()["name"] and "sha256" in lib.encoder()["weights"]
    lib.close()


def test_index_times_never_go_back_at_a_very_short_last_clip():
    from vmr_cli.indexer import clip_grid, grid_times

    times = grid_times(clip_grid(12.012, 2.0), 30000 / 1001)  # 12 s and a 12 ms last clip
    assert times[-3:] == pytest.approx([12.0, 12.006, 12.006])
    assert all(a <= b for a, b in zip(times, times[1:]))
    assert grid_times(clip_grid(6.0, 2.0), 10.0) == pytest.approx([0, 1, 2, 3, 4, 5, 5.9])


def test_index_times_move_onto_nearby_key_frames_in_order():
    from vmr_cli.indexer import on_key_frames

    keys = [(k * 1.15, k * 1.15 + 0.1) for k in range(6)]  # phone-like: a key frame every 1.15 s
    times = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.9]
    moved = on_key_frames(times, keys, tolerance=0.5)
    # 0.0 is on a key frame already; 4.0 has none within 0.5 s but the one 3.0 took; 5.0
    # takes the middle of the key frame before it, 5.9 the one just before it
    assert moved == pytest.approx([0.0, 1.2, 2.35, 3.5, 4.0, 4.65, 5.8])
    assert all(abs(m - t) <= 0.5 for m, t in zip(moved, times))
    assert all(a < b for a, b in zip(moved, moved[1:]))
    assert on_key_frames(times, [], 0.5) == times  # no key frames known: nothing moves
    # no gap search would read as a hole: 1.0 -> 0.5 may not be followed by 2.0 -> 2.5
    gapless = on_key_frames([0.0, 1.0, 2.0, 3.0], [(0.0, 0.1), (0.45, 0.55), (2.45, 2.55)], 0.5)
    assert gapless == pytest.approx([0.0, 0.5, 2.0, 2.5]) and max(b - a for a, b in zip(gapless, gapless[1:])) <= 1.5
    # key frames far apart (fewer than one a clip): the decoder reads every GOP anyway
    assert on_key_frames([float(t) for t in range(41)], [(0.0, 0.1), (20.8, 20.9), (40.0, 40.1)], 0.5) \
        == [float(t) for t in range(41)]
    # never past the next time asked, never onto the frame the time before took
    assert on_key_frames([1.0, 1.2], [(1.1, 1.2)], 0.5) == [pytest.approx(1.15), 1.2]
    assert on_key_frames([1.0, 1.1], [(1.4, 1.5)], 0.5) == [1.0, 1.1]  # 1.0 may not pass 1.1, 1.1 not leap 0.35


def test_a_phone_like_video_is_indexed_on_its_key_frames(tiny_model, tmp_path):
    """29.97 fps with a key frame every 30 frames: no sampled second falls on a key frame, so
    each would decode up to a second of frames; the index takes the key frames instead, and
    stores the times it took them at."""
    from vmr_cli.decode import open_reader
    from vmr_cli.encoders import ClipEncoder
    from vmr_cli.probe import probe

    path = tmp_path / "v" / "phone.mp4"
    path.parent.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30000/1001",
                    "-frames:v", "330", "-c:v", "libx264", "-g", "30", "-keyint_min", "30", "-sc_threshold", "0",
                    "-pix_fmt", "yuv420p", str(path)], check=True)
    vmr_json("index", path.parent, "--model", tiny_model)
    lib = Library()
    video = lib.catalog.videos("ok")[0]
    shard = lib.vectors.read_shard(video["id"], video["vectors_token"])
    times = [float(t) for t in shard["F_t"]]
    assert len(times) == 2 * video["n_clips"] + 1 and all(a < b for a, b in zip(times, times[1:]))
    keys = [k * 1001 / 30000 for k in range(0, 400, 30)]  # where the key frames are shown
    on_key = [t for t in times if any(k <= t < k + 1001 / 30000 for k in keys)]
    assert len(on_key) >= len(times) - 2 and all(abs(t - round(t)) <= 0.5 for t in times[:-1])
    # what is stored is the frame shown at the stored time
    info = probe(str(path))
    encoder = ClipEncoder(tiny_model)
    reader = open_reader(str(path), info, encoder.image_size)
    again = encoder.encode_images(reader.frames_at(times)).numpy()
    reader.close()
    assert np.allclose(shard["F"].astype(np.float32), again, atol=2e-3)
    lib.close()


def test_search_reuses_frames_and_a_changed_video_drops_them(indexed_videos):
    folder = indexed_videos
    first = vmr_json("search", "blue", "--refine", "3")
    s = first["stats"]
    assert s["frames_encoded"] > 0 and s["frames_encoded"] == s["frames_decoded"] and s["frames_cached"] == 0
    assert s["frames_stored"] > 0
    assert {"startup", "model_load", "text_encode", "vectors", "moment_head", "decode", "encode"} <= set(s["time"])
    again = vmr_json("search", "blue", "--refine", "3")
    assert again["stats"]["frames_encoded"] == 0 and again["stats"]["frames_cached"] == s["frames_encoded"]
    assert [(r["video"], r["start"], r["end"]) for r in again["results"]] == \
        [(r["video"], r["start"], r["end"]) for r in first["results"]]
    assert vmr_json("status")["frame_cache_bytes"] > 0
    # The video changes: re-indexing gives it a new version, and the cache forgets the old frames.
    top = first["results"][0]["video"]
    make_video(top, [("blue", 3.0), ("yellow", 3.0)])
    assert vmr_json("index", folder)["updated"] == 1
    after = vmr_json("search", "blue", "--refine", "3")
    assert after["stats"]["frames_encoded"] > 0


def test_refine_0_decodes_and_encodes_nothing(indexed_videos):
    found = vmr_json("search", "green", "--refine", "0")
    assert found["results"] and found["stats"]["frames_encoded"] == found["stats"]["frames_decoded"] == 0


def test_a_shard_without_stored_frames_is_still_searched(indexed_videos):
    """Libraries indexed before frames were stored: the timeline falls back to the middle frames."""
    from safetensors.numpy import load_file, save_file

    lib = Library()
    for video in lib.catalog.videos("ok"):
        path = lib.vectors.shard_path(video["id"])
        tensors = {k: v for k, v in load_file(path).items() if k not in ("F", "F_t")}
        save_file(tensors, path, metadata={"token": video["vectors_token"]})
    found = vmr_json("search", "green", "--refine", "0")
    clips = vmr_json("status")["clips"]
    assert found["results"] and found["stats"]["frames_stored"] == clips  # one (middle) frame per clip
    # Such a library was made by a vmr before the catalog's schema 5 (no colour transfer recorded):
    # the first index after the upgrade embeds its videos again, once, and search has their frames.
    with lib.catalog.transaction():
        lib.catalog._conn.execute("UPDATE videos SET transfer=NULL")
    n = len(lib.catalog.videos("ok"))
    lib.close()
    assert vmr_json("status")["unchecked_since_upgrade"] == n
    code, out, err = vmr("status")
    assert f"upgrade   {n} videos an older vmr indexed: the next vmr index looks at each once" in out
    summary = vmr_json("index", indexed_videos)
    assert (summary["updated"], summary["unchanged"], summary["embedded_again"]) == \
        (n, 0, {"hdr": 0, "no_stored_frames": n})
    again = vmr_json("search", "green", "--refine", "0")
    assert again["stats"]["frames_stored"] == 2 * clips + n  # 2N + 1 frames a video
    assert vmr_json("index", indexed_videos)["unchanged"] == n
    assert vmr_json("status")["unchecked_since_upgrade"] == 0 and "upgrade" not in vmr("status")[1]


@pytest.mark.parametrize("why", ["upgrade", "shard lost"])
def test_a_search_made_before_a_video_was_embedded_again_exports_it_without_a_warning(indexed_videos, tmp_path, why):
    """The first index after an upgrade embeds unchanged videos again (no stored frames here;
    grey HDR), as does one after a shard is lost, under a new row id: exporting an earlier
    search's result said 'changed since this search (modified or re-indexed); its times may not
    show the moment: search again', though the file is as it was and so are its moments."""
    from safetensors.numpy import load_file, save_file

    found = vmr_json("search", "green")["results"]
    lib = Library()
    for video in lib.catalog.videos("ok"):
        path = lib.vectors.shard_path(video["id"])
        if why == "shard lost":
            os.unlink(path)
            continue
        save_file({k: v for k, v in load_file(path).items() if k not in ("F", "F_t")}, path,
                  metadata={"token": video["vectors_token"]})
    with lib.catalog.transaction():
        lib.catalog._conn.execute("UPDATE videos SET transfer=NULL")
    lib.close()
    if why == "shard lost":
        vmr_json("status", "--check")
    summary = vmr_json("index", indexed_videos)
    assert summary["updated"] == 3 and summary["unchanged"] == 0, summary
    code, out, err = vmr("export", "1", "--out", tmp_path / "cuts")
    assert "warning" not in err and "changed since" not in err, err
    assert os.path.exists(tmp_path / "cuts") and len(os.listdir(tmp_path / "cuts")) >= 1
    assert Library().catalog.search()["results"][0]["video"] == found[0]["video"]
    # a file that did change is still told so
    make_video(found[0]["video"], [("blue", 3.0), ("yellow", 3.0)])
    vmr_json("index", indexed_videos)
    assert "changed since this search" in vmr("export", "1", "--out", tmp_path / "again")[2]


def test_a_read_only_library_reads_the_frame_cache_and_writes_nothing(indexed_videos, isolated_library):
    import json

    vmr_json("search", "blue")
    size = os.path.getsize(isolated_library / "frames.db")
    os.chmod(isolated_library, 0o555)
    try:
        done = vmr_subprocess(isolated_library, "search", "blue", "--json")
    finally:
        os.chmod(isolated_library, 0o755)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)["stats"]
    assert stats["frames_cached"] > 0 and stats["frames_encoded"] == 0
    assert os.path.getsize(isolated_library / "frames.db") == size


@pytest.fixture
def indexed_videos(videos, tiny_model):
    vmr_json("index", videos, "--model", tiny_model)
    return videos


def test_torchcodec_loads_without_dynamo_and_dynamo_still_works_after(tmp_path):
    """A process that decodes does not pay for torch._dynamo (1-2 s); whoever imports it later gets the real one."""
    import subprocess
    import sys

    video = make_video(tmp_path / "red.mp4", (("red", 2.0),))
    code = (
        "import sys, torch\n"
        "from vmr_cli.decode import import_torchcodec\n"
        "decoders = import_torchcodec()\n"
        "assert 'torch._dynamo' not in sys.modules\n"
        "frame = decoders.VideoDecoder(sys.argv[1]).get_frames_played_at([1.0]).data\n"
        "assert frame.shape[0] == 1 and int(frame[0, 0].float().mean()) > 150  # red\n"
        "import torch._dynamo\n"
        "assert callable(torch._dynamo.optimize) and torch._dynamo.__file__.endswith('__init__.py')\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(video)], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize("change", [3.1, 3.4, 3.6, 3.9])
def test_a_refined_edge_lands_within_a_quarter_second_of_the_change(change):
    """Between the stored frames outside and inside (a second apart) the refining grid's frames
    place the edge where the similarity crosses over: to a quarter second at its 2 fps.  With
    no frame between (a grid too coarse) the edge would stay on a stored frame, up to 1 s off."""
    from types import SimpleNamespace

    from vmr_cli.search import SearchOptions, _edges, _refined

    def similarity(t):
        return 0.9 if t < change else 0.2  # the moment ends at `change`

    times = np.arange(0.0, 8.5, 1.0)
    video = SimpleNamespace(times=times, sims=np.array([similarity(t) for t in times]))
    window = (video, 0.0, 3.0, 0.9)  # the stored timeline: last frame inside at 3 s, outside at 4 s
    edges = _edges(window, SearchOptions().refine_fps)
    fine = {x: similarity(x) for edge in edges for x in edge[-1]}
    assert 0 < len(fine) <= 2  # frames decoded for the edge
    start, end = _refined(window, edges, fine)
    assert start == 0.0 and abs(end - change) <= 0.25, (end, sorted(fine))


def test_the_frame_cache_file_shrinks_when_a_video_leaves_it(tmp_path):
    """Entries were deleted but the file never shrank: after forgetting the only video, status
    still said 'frame cache 0.5 MB' over an empty table."""
    from vmr_cli.frame_cache import FrameCache

    cache = FrameCache(str(tmp_path))
    rng = np.random.default_rng(0)
    for video in (1, 2):
        cache.put(video, "t", {k * 250: rng.standard_normal(512) for k in range(2000 if video == 1 else 10)})
    cache.close()
    full = cache.size_bytes()
    assert full > 2_000_000
    cache.forget(1)
    cache.close()
    assert cache.size_bytes() < full / 10
    assert len(FrameCache(str(tmp_path)).get(2, "t", [k * 250 for k in range(10)], 512)) == 10


def test_the_frame_cache_keeps_within_its_limit_the_videos_searched_last(tmp_path, monkeypatch):
    """The cache grew without a bound (about 1 KB a frame with ViT-B/32; an exhaustive search adds
    thousands): past $VMR_FRAME_CACHE_MB the videos a search used longest ago leave it, whole."""
    from vmr_cli.frame_cache import FrameCache

    from vmr_cli.frame_cache import _filled

    rng = np.random.default_rng(0)
    times = [k * 250 for k in range(700)]
    cache = FrameCache(str(tmp_path))
    cache.put(1, "t", {t: rng.standard_normal(512) for t in times})
    one = _filled(cache._connect())  # about 0.75 MB: a limit that holds two videos after evicting, not three
    monkeypatch.setenv("VMR_FRAME_CACHE_MB", str(2.7 * one / 1e6))
    cache.close()
    cache = FrameCache(str(tmp_path))
    cache.put(2, "t", {t: rng.standard_normal(512) for t in times})
    assert len(cache.get(1, "t", times, 512)) == 700  # 1 used after 2
    cache.put(3, "t", {t: rng.standard_normal(512) for t in times})
    assert cache.size_bytes() <= cache.limit
    held = {video: len(cache.get(video, "t", times, 512)) for video in (1, 2, 3)}
    assert held == {1: 700, 2: 0, 3: 700}
    cache.close()
    # The same in a new process, from the times the file recorded (3 was read after 1).
    cache = FrameCache(str(tmp_path))
    cache.put(4, "t", {t: rng.standard_normal(512) for t in times})
    assert {video: len(cache.get(video, "t", times, 512)) for video in (1, 3, 4)} == {1: 0, 3: 700, 4: 700}
    cache.close()


def test_a_frame_cache_of_0_mb_keeps_nothing_and_a_wrong_size_is_one_line(indexed_videos, isolated_library,
                                                                            monkeypatch):
    from vmr_cli.frame_cache import FrameCache

    vmr_json("search", "blue")
    rng = np.random.default_rng(0)
    FrameCache(str(isolated_library)).put(999, "t", {k * 250: rng.standard_normal(64) for k in range(4000)})
    assert vmr_json("status")["frame_cache_limit_bytes"] == 1024 * 10**6
    assert "MB, of which frame cache 0.7 MB (at most 1024 MB, $VMR_FRAME_CACHE_MB; safe to delete: frames.db)" \
        in vmr("status")[1]
    monkeypatch.setenv("VMR_FRAME_CACHE_MB", "0")
    first = vmr_json("search", "blue", "--refine", "3")  # its frames were cached: not now
    assert first["stats"]["frames_encoded"] > 0 and first["stats"]["frames_cached"] == 0
    again = vmr_json("search", "blue", "--refine", "3")
    assert again["stats"]["frames_encoded"] == first["stats"]["frames_encoded"]
    monkeypatch.delenv("VMR_FRAME_CACHE_MB")
    assert vmr_json("status")["frame_cache_bytes"] < 100_000  # emptied by the first search
    assert len(FrameCache(str(isolated_library)).get(999, "t", [0], 64)) == 0
    for wrong in ("lots", "-5", "nan", "1e999"):
        monkeypatch.setenv("VMR_FRAME_CACHE_MB", wrong)
        code, out, err = vmr("search", "red", expect=1)
        assert err == f"Error: VMR_FRAME_CACHE_MB={wrong}: say a number of megabytes for the frame cache " \
                      "(0 keeps no frames)\n", err


def test_a_frame_cache_made_before_auto_vacuum_is_rebuilt_once_it_holds_free_space(tmp_path):
    """A frames.db from before vmr asked for auto-vacuum never shrank: the first removal that
    leaves more than a megabyte free rebuilds it (VACUUM), with auto-vacuum from then on."""
    import sqlite3

    from vmr_cli.frame_cache import FrameCache

    old = sqlite3.connect(tmp_path / "frames.db")
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE frames (video_id INTEGER NOT NULL, token TEXT NOT NULL, t_ms INTEGER NOT NULL, "
                "embedding BLOB NOT NULL, PRIMARY KEY (video_id, t_ms))")
    old.close()
    cache = FrameCache(str(tmp_path))
    rng = np.random.default_rng(0)
    cache.put(1, "t", {k * 250: rng.standard_normal(512) for k in range(2000)})
    cache.put(2, "t", {k * 250: rng.standard_normal(512) for k in range(10)})
    cache.close()
    full = cache.size_bytes()
    cache.forget(1)
    cache.close()
    assert cache.size_bytes() < full / 10
    conn = sqlite3.connect(tmp_path / "frames.db")
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert conn.execute("SELECT count(*) FROM frames").fetchone()[0] == 10


def test_a_video_embedded_again_after_an_upgrade_that_fails_now_keeps_its_vectors(indexed_videos, monkeypatch):
    """A file the first index after an upgrade embeds again (a shard without stored frames) that
    this vmr cannot read (a stricter check, a decoder that changed): its vectors were deleted and
    it left search, though it was unchanged and searched until then.  It keeps them, is said to,
    and is not tried again."""
    from safetensors.numpy import load_file, save_file

    from vmr_cli import indexer
    from vmr_cli.errors import DecodeError

    lib = Library()
    video = lib.catalog.videos("ok")[0]
    path = lib.vectors.shard_path(video["id"])
    save_file({k: v for k, v in load_file(path).items() if k not in ("F", "F_t")}, path,
              metadata={"token": video["vectors_token"]})
    with lib.catalog.transaction():
        lib.catalog._conn.execute("UPDATE videos SET transfer=NULL WHERE id=?", (video["id"],))
    lib.close()
    with monkeypatch.context() as stricter:
        def refuse(path, *args, **kwargs):
            raise DecodeError("cut short: its video stream ends at 0:00:01.0 of the 0:00:03.0 it claims")

        stricter.setattr(indexer, "probe", refuse)
        summary = vmr_json("index", indexed_videos, expect=1)
    assert summary["failed"] == [{"path": video["path"], "recorded": False, "error": (
        "embedding it again failed, so it keeps the vectors an older vmr gave it: cut short: its video stream "
        "ends at 0:00:01.0 of the 0:00:03.0 it claims")}]
    lib = Library()
    assert lib.catalog.video(video["id"])["status"] == "ok" and lib.vectors.read_shard(video["id"]) is not None
    lib.close()
    assert vmr_json("status")["videos"] == 3  # all still searched
    again = vmr_json("index", indexed_videos)
    assert (again["updated"], again["failed"], again["embedded_again"]["no_stored_frames"]) == (0, [], 0)


def test_reading_the_frame_cache_beside_another_writer_does_not_wait(tmp_path):
    """get() records when a video was used: that write waited out the busy timeout (2 s) beside
    another writer (a search storing or evicting, vmr index forgetting), for every video searched."""
    import sqlite3
    import time

    from vmr_cli.frame_cache import FrameCache

    cache = FrameCache(str(tmp_path))
    cache.put(1, "t", {k * 250: np.ones(64) for k in range(10)})
    other = sqlite3.connect(tmp_path / "frames.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    assert len(cache.get(1, "t", [k * 250 for k in range(10)], 64)) == 10
    assert time.monotonic() - started < 1.0
    other.execute("ROLLBACK")
    cache.put(2, "t", {0: np.ones(64)})  # writes still wait as before
    assert len(cache.get(2, "t", [0], 64)) == 1
