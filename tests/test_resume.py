"""A long video's index, resumed: an index stopped part way through a video (Ctrl-C, a kill, a
crash) continues it where its saved progress ends, and stores what an uninterrupted run stores.

The video here is 60 s of testsrc2 (every frame another picture, so no frame is taken from the one
before it without an encoder pass): 30 clips of 2 s, 61 stored frames, in chunks of 4 clips
(CHUNK_CLIPS made small), with progress saved after every chunk (SAVE_EVERY_SECONDS 0).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, make_video, vmr, vmr_json

from vmr_cli import indexer, partial
from vmr_cli.encoders import ClipEncoder
from vmr_cli.library import Library

CLIPS, CHUNK = 30, 4
FRAMES = 2 * CLIPS + 1


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory):
    """The video, and what an uninterrupted index of it stores (same chunk size)."""
    folder = tmp_path_factory.mktemp("reference")
    video = make_video(folder / "long.mp4", [("testsrc", 2.0 * CLIPS)])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(indexer, "CHUNK_CLIPS", CHUNK)
        lib = Library(str(folder / "library"))
        indexer.index_paths(lib, [str(video)], model=tiny_model, progress=False)
        lib.close()
    return video, stored(folder / "library")


@pytest.fixture
def long_video(reference, tmp_path, monkeypatch):
    """A copy of the reference video in tmp_path/v, chunks of CHUNK clips, progress saved after each."""
    monkeypatch.setattr(indexer, "CHUNK_CLIPS", CHUNK)
    monkeypatch.setattr(partial, "SAVE_EVERY_SECONDS", 0.0)
    (tmp_path / "v").mkdir()
    return shutil.copy2(reference[0], tmp_path / "v" / "long.mp4")


@pytest.fixture
def encoded(monkeypatch):
    """Frames the encoder is asked for ({"frames", "calls"}); with "stop_at" set, that call raises
    KeyboardInterrupt (Ctrl-C while a chunk is encoded)."""
    counts = {"frames": 0, "calls": 0, "stop_at": None}
    real = ClipEncoder.encode_images

    def counting(self, frames):
        counts["calls"] += 1
        if counts["calls"] == counts["stop_at"]:
            raise KeyboardInterrupt
        counts["frames"] += frames.shape[0]
        return real(self, frames)

    monkeypatch.setattr(ClipEncoder, "encode_images", counting)
    return counts


def stored(library) -> dict:
    """What the library stores of its one video: shard arrays, clip rows and the video's row."""
    lib = Library(str(library))
    [video] = lib.catalog.videos("ok")
    shard = lib.vectors.read_shard(video["id"], video["vectors_token"])
    clips = [{k: c[k] for k in ("idx", "start", "end", "shot", "motion")} for c in lib.catalog.clips(video["id"])]
    row = {k: video[k] for k in ("duration", "fps", "width", "height", "n_clips", "bad_frames", "size")}
    lib.close()
    return {"arrays": {k: v for k, v in shard.items() if k != "clip_ids"}, "clips": clips, "row": row}


def assert_same(got: dict, want: dict) -> None:
    """Exactly the same: the frame embeddings are saved in float32, as the commit takes them."""
    assert sorted(got["arrays"]) == sorted(want["arrays"]) == ["A", "B", "F", "F_t", "M"]
    for key, array in want["arrays"].items():
        assert got["arrays"][key].dtype == array.dtype and np.array_equal(got["arrays"][key], array), key
    assert got["clips"] == want["clips"] and got["row"] == want["row"]


def states(library) -> list[str]:
    folder = library / "partial"
    return sorted(os.listdir(folder)) if folder.exists() else []


def saved_clips(library) -> int:
    """The clips the one saved state holds, from its header."""
    from safetensors import safe_open

    [name] = [n for n in states(library) if not n.startswith(".tmp-")]
    with safe_open(str(library / "partial" / name), framework="numpy") as handle:
        return json.loads(handle.metadata()[partial.KEY])["clips"]


def interrupt(library, folder, model, encoded, at_call: int = 3) -> None:
    """Index folder into library, Ctrl-C while chunk ``at_call`` is encoded (the ones before are saved)."""
    encoded.update(frames=0, calls=0, stop_at=at_call)
    code, _out, err = vmr("--library", library, "index", folder, "--model", model, expect=130)
    assert "interrupted" in err
    encoded.update(frames=0, calls=0, stop_at=None)


def test_an_index_stopped_by_ctrl_c_resumes_where_it_stopped(tiny_model, reference, long_video, encoded,
                                                             tmp_path, monkeypatch):
    """Ctrl-C while the third chunk of a new library's first video is encoded: the library is kept
    with the two chunks done; the next index encodes only the rest, says so, and stores exactly
    what an uninterrupted index stores; the saved state is gone."""
    from vmr_cli import progress

    library = tmp_path / "lib"
    interrupt(library, tmp_path / "v", tiny_model, encoded)
    assert saved_clips(library) == 2 * CHUNK
    status = vmr_json("--library", library, "status")  # the library was kept for it (not an empty one)
    [name] = states(library)
    assert status["partial_bytes"] == os.path.getsize(library / "partial" / name) > 0
    assert status["videos"] == 0 and status["consistent"] and status["size_bytes"] > status["partial_bytes"]
    assert "of which the progress saved on videos an index was stopped in under 0.1 MB (the next vmr index of " \
        "them resumes there)" in vmr("--library", library, "status")[1]
    postfixes = []
    real_bar = progress.by_size

    def recording(*args, **kwargs):
        bar = real_bar(*args, **dict(kwargs, enabled=False))
        bar.set_postfix_str = postfixes.append
        return bar

    monkeypatch.setattr(progress, "by_size", recording)
    code, out, err = vmr("--library", library, "index", tmp_path / "v", "--json")
    summary = json.loads(out)
    assert encoded["frames"] == FRAMES - (4 * CHUNK + 1)  # frames 2k+1 .. 2n of the clips k.. not saved
    assert summary["added"] == 1
    assert summary["resumed"] == [{"path": str(long_video), "from_clip": 2 * CHUNK, "clips": CLIPS}]
    assert f"note: {long_video}: resumed at clip 8 of 30" in err
    assert postfixes[0] == "long.mp4 8/30 clips (resumed at 8)" and postfixes[-1] == "long.mp4 30/30 clips (resumed at 8)"
    assert not (library / "partial").exists()
    assert_same(stored(library), reference[1])


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_real_signal_to_vmr_index_leaves_progress_the_next_run_resumes(tiny_model, reference, long_video, encoded,
                                                                         tmp_path, how):
    """A real `vmr index` process, stopped by Ctrl-C (SIGINT: exit 130) or kill -9 part way through
    the video: the next index encodes only the frames after the saved chunks, and stores exactly
    what an uninterrupted index stores."""
    library = tmp_path / "lib"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_INDEX, str(library), str(tmp_path / "v"), tiny_model],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    deadline = time.time() + 120
    while not [n for n in states(library) if not n.startswith(".tmp-")] and time.time() < deadline \
            and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)  # into the next chunk or two
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(how)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if how == signal.SIGINT else -signal.SIGKILL), err
    done = saved_clips(library)
    assert 0 < done < CLIPS and done % CHUNK == 0
    summary = vmr_json("--library", library, "index", tmp_path / "v")
    assert encoded["frames"] == 2 * (CLIPS - done)
    assert summary["resumed"] == [{"path": str(long_video), "from_clip": done, "clips": CLIPS}]
    assert states(library) == []
    assert_same(stored(library), reference[1])


SLOW_INDEX = """
import sys, time
from vmr_cli import cli, indexer, partial
from vmr_cli.encoders import ClipEncoder

indexer.CHUNK_CLIPS = 4
partial.SAVE_EVERY_SECONDS = 0.0
real = ClipEncoder.encode_images

def slow(self, frames):  # a real encoder's pace: the signal lands part way through the video
    time.sleep(0.3)
    return real(self, frames)

ClipEncoder.encode_images = slow
sys.argv = ["vmr", "--library", sys.argv[1], "index", sys.argv[2], "--model", sys.argv[3]]
cli.main()
"""

KILLED_IN_A_SAVE = """
import os, sys, time
from vmr_cli import cli, indexer, partial

indexer.CHUNK_CLIPS = 4
partial.SAVE_EVERY_SECONDS = 0.0
real = partial.atomic_write
saves, mark = [], sys.argv[4]

def atomic_write(path, write, **kwargs):
    saves.append(path)
    if len(saves) < 3:
        return real(path, write, **kwargs)
    def half(tmp):  # the third save: its temp file half written, then killed
        write(tmp)
        with open(tmp, "r+b") as handle:
            handle.truncate(os.path.getsize(tmp) // 2)
        open(mark, "w").close()
        time.sleep(120)
    return real(path, half, **kwargs)

partial.atomic_write = atomic_write
sys.argv = ["vmr", "--library", sys.argv[1], "index", sys.argv[2], "--model", sys.argv[3]]
cli.main()
"""


def test_kill_9_during_a_save_leaves_the_saved_state_before_it(tiny_model, reference, long_video, encoded, tmp_path):
    """kill -9 while a state is being written: the library is consistent (`vmr status --check`),
    the state saved before stands, and the next index removes the temp file and resumes there."""
    library, mark = tmp_path / "lib", tmp_path / "in-the-save"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_IN_A_SAVE, str(library), str(tmp_path / "v"), tiny_model,
                             str(mark)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    deadline = time.time() + 120
    while not mark.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert mark.exists(), proc.stderr.read() if proc.poll() is not None else "never reached the third save"
    proc.kill()
    proc.wait(timeout=60)
    left = states(library)
    assert len(left) == 2 and left[0].startswith(".tmp-")  # the half-written one, and the state before it
    assert saved_clips(library) == 2 * CHUNK
    checked = vmr_json("--library", library, "status", "--check")
    assert checked["consistent"] and checked["check"]["catalog"]["ok"]
    summary = vmr_json("--library", library, "index", tmp_path / "v")
    assert encoded["frames"] == 2 * (CLIPS - 2 * CHUNK)
    assert summary["resumed"][0]["from_clip"] == 2 * CHUNK
    assert states(library) == []
    assert_same(stored(library), reference[1])


@pytest.mark.parametrize("change", ["touched", "rewritten"])
def test_a_changed_file_is_indexed_from_its_start(tiny_model, reference, long_video, encoded, tmp_path, change):
    """The file changed since its progress was saved (a new time, or new bytes): the state is
    discarded, every frame is encoded, and nothing is left of it."""
    library = tmp_path / "lib"
    interrupt(library, tmp_path / "v", tiny_model, encoded)
    assert saved_clips(library) == 2 * CHUNK
    if change == "touched":
        st = os.stat(long_video)
        os.utime(long_video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    else:
        with open(long_video, "ab") as handle:
            handle.write(b"\0" * 16)  # (decoders ignore the tail)
    summary = vmr_json("--library", library, "index", tmp_path / "v")
    assert encoded["frames"] == FRAMES and summary["resumed"] == []
    assert states(library) == []
    want = dict(reference[1], row=dict(reference[1]["row"], size=os.path.getsize(long_video)))
    assert_same(stored(library), want)


@pytest.mark.parametrize("change", ["another vmr", "another model"])
def test_progress_saved_by_another_vmr_or_model_is_not_used(tiny_model, other_model, reference, long_video,
                                                            encoded, tmp_path, monkeypatch, change):
    """A state saved by another version of vmr (another decoder signature), or for a library
    started over with another model (catalog deleted), is never used: everything is encoded."""
    import vmr_cli

    library = tmp_path / "lib"
    interrupt(library, tmp_path / "v", tiny_model, encoded)
    assert saved_clips(library) == 2 * CHUNK
    if change == "another vmr":
        monkeypatch.setattr(vmr_cli, "__version__", vmr_cli.__version__ + ".1")
        summary = vmr_json("--library", library, "index", tmp_path / "v")
    else:
        for name in os.listdir(library):
            if name.startswith("catalog.db"):
                os.unlink(library / name)
        summary = vmr_json("--library", library, "index", tmp_path / "v", "--model", other_model)
    assert encoded["frames"] == FRAMES and summary["resumed"] == []
    assert states(library) == []
    if change == "another vmr":
        assert_same(stored(library), reference[1])


@pytest.mark.parametrize("change", ["another model", "another clip length", "a model not there"])
def test_a_first_index_stopped_part_way_leaves_the_model_and_clip_length_open(
        tiny_model, other_model, reference, long_video, encoded, tmp_path, change):
    """A new library's first index, stopped in a long video, keeps its progress; the next run may
    still choose another model or clip length, as it could when a stopped first index left no
    library (it was refused: 'index into a new library with --library NEWDIR', for a library that
    held no video).  The progress goes with the model it was made with.  A --model that cannot be
    found is its usual error, and the progress stays."""
    library = tmp_path / "lib"
    interrupt(library, tmp_path / "v", tiny_model, encoded)
    assert saved_clips(library) == 2 * CHUNK
    if change == "a model not there":
        code, _out, err = vmr("--library", library, "index", tmp_path / "v", "--model", tmp_path / "nothing",
                              expect=1)
        assert "nothing" in err and saved_clips(library) == 2 * CHUNK
        return
    args = ["--model", other_model] if change == "another model" else ["--model", tiny_model, "--clip-seconds", "4"]
    summary = vmr_json("--library", library, "index", tmp_path / "v", *args)
    assert summary["added"] == 1 and summary["resumed"] == [] and states(library) == []
    status = vmr_json("--library", library, "status")
    if change == "another model":
        assert status["encoder"] == other_model and status["embedding_dim"] == 32
    else:
        assert status["clip_seconds"] == 4.0 and status["clips"] == CLIPS // 2


def test_the_same_weights_at_another_place_still_resume(tiny_model, reference, long_video, encoded, tmp_path):
    """The model folder moved (vmr index --model NEWDIR: the same weights, by their sha256): the
    saved progress is the library's model's, and is used."""
    library = tmp_path / "lib"
    interrupt(library, tmp_path / "v", tiny_model, encoded)
    moved = shutil.copytree(tiny_model, tmp_path / "moved-model")
    summary = vmr_json("--library", library, "index", tmp_path / "v", "--model", moved)
    assert encoded["frames"] == 2 * (CLIPS - 2 * CHUNK) and summary["resumed"][0]["from_clip"] == 2 * CHUNK
    assert_same(stored(library), reference[1])


@pytest.mark.parametrize("damage", ["truncated", "a changed byte", "not safetensors", "an edited header"])
def test_a_damaged_state_is_ignored_and_removed(tiny_model, reference, long_video, encoded, tmp_path, damage):
    """A state file cut short, with a byte changed in its arrays, replaced by other bytes, or whose
    header claims more clips than its arrays hold: the index goes on from the video's start, as an
    uninterrupted one, and removes it."""
    library = tmp_path / "lib"
    interrupt(library, tmp_path / "v", tiny_model, encoded)
    [name] = states(library)
    path = library / "partial" / name
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[:len(data) * 2 // 3]
    elif damage == "a changed byte":  # in a frame embedding (bit rot, a bad sector)
        header_len = int.from_bytes(data[:8], "little")
        start, end = json.loads(data[8:8 + header_len])["F"]["data_offsets"]
        data[8 + header_len + (start + end) // 2] ^= 0x40
    elif damage == "not safetensors":
        data = bytearray(b"\x00garbage" * 100)
    else:
        header_len = int.from_bytes(data[:8], "little")
        header = data[8:8 + header_len].decode()
        edited = header.replace('\\"clips\\": 8', '\\"clips\\": 9')
        assert edited != header
        data[8:8 + header_len] = edited.encode()
    path.write_bytes(bytes(data))
    summary = vmr_json("--library", library, "index", tmp_path / "v")
    assert summary["failed"] == [] and summary["resumed"] == [] and encoded["frames"] == FRAMES
    assert states(library) == []
    assert_same(stored(library), reference[1])


def test_the_state_of_a_deleted_video_is_removed_by_the_next_index(tiny_model, long_video, encoded, tmp_path):
    """The interrupted video deleted before the next index: its state goes."""
    library = tmp_path / "lib"
    interrupt(library, tmp_path / "v", tiny_model, encoded)
    make_video(tmp_path / "v" / "short.mp4", [("red", 2.0)])
    os.unlink(long_video)
    summary = vmr_json("--library", library, "index", tmp_path / "v")
    assert summary["resumed"] == [] and summary["added"] == 1
    assert states(library) == []


@pytest.mark.parametrize("where", ["renamed.mp4", "trip/long.mp4"])
def test_a_video_moved_after_its_index_stopped_resumes_at_its_new_place(tiny_model, reference, long_video, encoded,
                                                                       tmp_path, where):
    """Stopped in a long video, the user renames it or files it in a folder (size and time kept)
    before the next index: it goes on from its saved progress, stored as an uninterrupted run
    stores it (the progress was keyed by the old path: thrown away, 5-20 minutes of a 2-3 hour
    video at ViT-B/32 size on a laptop)."""
    library = tmp_path / "lib"
    interrupt(library, tmp_path / "v", tiny_model, encoded)
    moved = tmp_path / "v" / where
    moved.parent.mkdir(exist_ok=True)
    os.rename(long_video, moved)
    summary = vmr_json("--library", library, "index", tmp_path / "v")
    assert summary["resumed"] == [{"path": str(moved), "from_clip": 2 * CHUNK, "clips": CLIPS}]
    assert encoded["frames"] == FRAMES - (4 * CHUNK + 1)
    assert states(library) == []
    assert_same(stored(library), reference[1])


def test_a_copy_of_a_stopped_video_does_not_take_its_progress(tiny_model, long_video, encoded, tmp_path):
    """The progress is the stopped file's while it is there: a copy made with its time (cp -p)
    and indexed on its own is indexed from its start, and the state stays for the original."""
    library = tmp_path / "lib"
    interrupt(library, tmp_path / "v", tiny_model, encoded)
    (tmp_path / "w").mkdir()
    shutil.copy2(long_video, tmp_path / "w" / "long.mp4")
    summary = vmr_json("--library", library, "index", tmp_path / "w")
    assert summary["resumed"] == [] and summary["added"] == 1 and len(states(library)) == 1


def test_a_video_recorded_as_failed_leaves_no_state(tiny_model, long_video, encoded, tmp_path, monkeypatch):
    from vmr_cli.errors import DecodeError

    library = tmp_path / "lib"
    interrupt(library, tmp_path / "v", tiny_model, encoded)

    def fails(*args, **kwargs):
        raise DecodeError("too damaged to index: 50 of 61 frames could not be decoded")

    monkeypatch.setattr(indexer, "_commit_video", fails)
    summary = vmr_json("--library", library, "index", tmp_path / "v", expect=1)
    assert [f["recorded"] for f in summary["failed"]] == [True]
    assert states(library) == []


def test_temp_files_go_and_a_useful_state_stays_and_search_touches_neither(tiny_model, long_video, encoded,
                                                                          tmp_path):
    """A killed save's temp file in partial/ is removed by the next writer, which keeps the state
    of a video it does not index now (it still applies); a search, beside, touches neither; the
    state is used when the video is indexed."""
    library = tmp_path / "lib"
    interrupt(library, tmp_path / "v", tiny_model, encoded)
    [name] = states(library)
    before = (library / "partial" / name).read_bytes()
    left = library / "partial" / ".tmp-abcd1234"
    left.write_bytes(b"half a state")
    make_video(tmp_path / "other" / "short.mp4", [("red", 2.0)])
    vmr_json("--library", library, "index", tmp_path / "other")
    assert states(library) == [name] and (library / "partial" / name).read_bytes() == before
    left.write_bytes(b"half a state")
    found = vmr_json("--library", library, "search", "red")
    assert found["results"] and states(library) == [".tmp-abcd1234", name]
    assert (library / "partial" / name).read_bytes() == before
    encoded.update(frames=0)
    summary = vmr_json("--library", library, "index", tmp_path / "v")
    assert summary["resumed"][0]["from_clip"] == 2 * CHUNK and states(library) == []


def test_a_short_video_saves_nothing(tiny_model, videos, isolated_library, monkeypatch):
    """Progress is saved after SAVE_EVERY_SECONDS of work on a video: videos quicker to index
    write no state (status: partial_bytes 0, no partial/ folder)."""
    saves = []
    monkeypatch.setattr(partial.Store, "save", lambda self, *args: saves.append(args))
    vmr_json("index", videos, "--model", tiny_model)
    assert saves == [] and partial.SAVE_EVERY_SECONDS >= 30
    status = vmr_json("status")
    assert status["partial_bytes"] == 0 and not (isolated_library / "partial").exists()


def test_progress_of_other_frame_times_is_not_used(tiny_model, long_video, encoded, tmp_path, monkeypatch):
    """The frame times this run would take differ from those saved (another key-frame index, say):
    the saved frames are not the ones it would encode, so the video is indexed from its start."""
    library = tmp_path / "lib"
    interrupt(library, tmp_path / "v", tiny_model, encoded)
    real = indexer.on_key_frames
    monkeypatch.setattr(indexer, "on_key_frames", lambda times, *args: [t + 0.05 for t in real(times, *args)][:-1]
                        + [times[-1]])
    summary = vmr_json("--library", library, "index", tmp_path / "v")
    assert summary["resumed"] == [] and encoded["frames"] == FRAMES and states(library) == []


def test_a_video_pyav_read_for_torchcodec_resumes_with_pyav(tiny_model, long_video, encoded, tmp_path, monkeypatch):
    """torchcodec failed on the file's start and PyAV read it from there on (a fallback, said in a
    note): the resumed run reads the rest with PyAV too (torchcodec, which reads the rest, gives
    other pixels), says the same note, and stores what an uninterrupted run does."""
    from vmr_cli.decode import TorchcodecReader

    real = TorchcodecReader._frames

    def fails(self, times):
        if min(times) < 5.0:
            raise RuntimeError("could not decode")
        return real(self, times)

    monkeypatch.setattr(TorchcodecReader, "_frames", fails)
    whole = vmr_json("--library", tmp_path / "whole", "index", tmp_path / "v", "--model", tiny_model)
    assert [f["path"] for f in whole["fallbacks"]] == [str(long_video)]
    library = tmp_path / "lib"
    interrupt(library, tmp_path / "v", tiny_model, encoded)
    encoded.update(frames=0)
    summary = vmr_json("--library", library, "index", tmp_path / "v")
    assert summary["resumed"][0]["from_clip"] == 2 * CHUNK and encoded["frames"] == 2 * (CLIPS - 2 * CHUNK)
    assert summary["fallbacks"] == whole["fallbacks"]
    assert_same(stored(library), stored(tmp_path / "whole"))


# -- the saved state alone: partial.Store on a temporary library, no decoding ---------------------
@pytest.fixture
def store(tmp_path):
    """(library, Store, a planned file, its state's arrays) with the library's encoder recorded."""
    import torch

    from vmr_cli.scan import Found

    lib = Library(str(tmp_path / "lib"))
    lib.record_encoder("m", 8, 16, 2.0, weights={"sha256": "a" * 64, "files": {}},
                       preprocessing={"image_size": 16, "mean": [0.5] * 3, "std": [0.5] * 3})
    path = tmp_path / "video.mp4"
    path.write_bytes(os.urandom(4096))
    st = path.stat()
    item = Found(str(path), st.st_size, st.st_mtime_ns)
    arrays = (torch.randn(9, 8), torch.rand(4, 3, 3, 16), torch.rand(4), [0.5 * k for k in range(21)])
    store = partial.Store(lib, "vmr 0.2.0; torchcodec 0.1", "torchcodec", 4)
    store.save(item, *arrays, None, 10)
    yield lib, store, item, arrays
    lib.close()


def test_a_saved_state_is_read_back_as_saved(store):
    lib, saved_by, item, (frames, hists, motion, times) = store
    saved = partial.Store(lib, "vmr 0.2.0; torchcodec 0.1", "torchcodec", 4).load(item, 16, 10)
    assert saved.clips == 4 and saved.times == times and saved.fallback is None
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in
               ((saved.embeddings, frames), (saved.hists, hists), (saved.motion, motion)))


@pytest.mark.parametrize("change", ["weights", "preprocessing", "clip seconds", "decoder signature", "backend",
                                    "chunk size", "input size", "clips"])
def test_a_state_of_other_weights_settings_or_decoder_is_deleted_not_used(store, change):
    """What the saved embeddings depend on, changed: the library's weights (a library re-embedded
    with a model of the same size), its preprocessing or clip length, the decoder's signature
    (vmr, decoder or ffmpeg upgraded), the backend, the chunk size, the input size, the clips."""
    from vmr_cli.library import PREPROCESSING, WEIGHTS

    lib, _store, item, _arrays = store
    run = {"signature": "vmr 0.2.0; torchcodec 0.1", "backend": "torchcodec", "chunk_clips": 4}
    size, clips = 16, 10
    with lib.catalog.transaction():
        if change == "weights":
            lib.catalog.set_meta(WEIGHTS, json.dumps({"sha256": "b" * 64, "files": {}}))
        elif change == "preprocessing":
            lib.catalog.set_meta(PREPROCESSING, json.dumps({"image_size": 16, "mean": [0.4] * 3, "std": [0.5] * 3}))
        elif change == "clip seconds":
            lib.catalog.set_meta("clip_seconds", 1.0)
    if change == "decoder signature":
        run["signature"] = "vmr 0.2.1; torchcodec 0.1"
    elif change == "backend":
        run["backend"] = "pyav"
    elif change == "chunk size":
        run["chunk_clips"] = 8
    elif change == "input size":
        size = 32
    elif change == "clips":
        clips = 11
    path = partial.state_path(lib.directory, item.path)
    assert os.path.exists(path)
    assert partial.Store(lib, run["signature"], run["backend"], run["chunk_clips"]).load(item, size, clips) is None
    assert not os.path.exists(path)


def test_the_sweep_keeps_a_state_that_applies_and_deletes_the_others(store, tmp_path):
    """A state of an unchanged file not indexed stays; of another model, of a file deleted or
    changed, or of a file indexed as it is, goes; a file of another name in partial/ stays."""
    from vmr_cli.library import WEIGHTS

    lib, saved_by, item, _arrays = store
    path = partial.state_path(lib.directory, item.path)
    mine = os.path.join(lib.directory, partial.FOLDER, "notes.txt")
    open(mine, "w").close()
    saved_by.sweep()
    assert os.path.exists(path)
    with lib.catalog.transaction():  # the library's model another (same size)
        lib.catalog.set_meta(WEIGHTS, json.dumps({"sha256": "b" * 64, "files": {}}))
    saved_by.sweep()
    assert not os.path.exists(path) and os.path.exists(mine)
    for change in ("deleted", "touched", "indexed"):
        with lib.catalog.transaction():
            lib.catalog.set_meta(WEIGHTS, json.dumps({"sha256": "a" * 64, "files": {}}))
        store = partial.Store(lib, "vmr 0.2.0; torchcodec 0.1", "torchcodec", 4)
        store.save(item, *_arrays, None, 10)
        assert os.path.exists(path)
        if change == "deleted":
            os.rename(item.path, item.path + ".away")
        elif change == "touched":
            os.utime(item.path, ns=(item.mtime_ns, item.mtime_ns + 10**9))
        else:
            with lib.catalog.transaction():
                lib.catalog.upsert_video({"path": item.path, "root": str(tmp_path), "size": item.size,
                                          "mtime_ns": item.mtime_ns, "fingerprint": "x", "status": "failed",
                                          "error": "e", "n_clips": 0, "bad_frames": 0, "indexed_at": 0.0})
        store.sweep()
        assert not os.path.exists(path), change
        if change == "deleted":
            os.rename(item.path + ".away", item.path)
        elif change == "touched":
            os.utime(item.path, ns=(item.mtime_ns, item.mtime_ns))


def test_forget_drops_the_progress_saved_on_a_video(tiny_model, long_video, encoded, tmp_path):
    """'vmr forget' of a video an index was stopped in (or of its folder) drops its saved progress,
    which status counts: it said 'the library holds nothing at or under' it, and the progress
    stayed as long as the file did, with no command to drop it.  A state elsewhere stays."""
    library = tmp_path / "lib"
    interrupt(library, tmp_path / "v", tiny_model, encoded)
    other = shutil.copy2(long_video, tmp_path / "w.mp4")
    vmr_json("--library", library, "index", other)  # (a library of one video: no second state)
    assert len(states(library)) == 1
    (library / "partial" / ("0" * 40 + ".safetensors")).write_bytes(b"not ours")  # unreadable: left
    _code, out, _err = vmr("--library", library, "forget", tmp_path / "v")
    assert "forgot 0 entries under" in out and "the progress an index saved on 1 video there" in out
    assert states(library) == ["0" * 40 + ".safetensors"]
    vmr("--library", library, "forget", long_video, expect=1)  # nothing left there
    assert vmr_json("--library", library, "forget", other) == {
        "forgotten": [{"path": str(other), "videos": 1, "saved_progress": 0}], "videos": 1}


def test_a_save_that_fails_for_lack_of_space_does_not_stop_the_index(tiny_model, reference, long_video, encoded,
                                                                      tmp_path, monkeypatch):
    """The progress is a convenience: a save that cannot be written (a full disk, an unwritable
    partial/ folder) stopped the whole index with the disk's error, though the video's own
    commit might still fit.  Now the index goes on without saving, and stores what it stores."""
    import errno

    calls = []

    def full(self, *args, **kwargs):
        calls.append(1)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(partial.Store, "save", full)
    library = tmp_path / "lib"
    summary = vmr_json("--library", library, "index", tmp_path / "v", "--model", tiny_model)
    assert summary["added"] == 1 and summary["failed"] == [] and len(calls) == 1  # tried once, then not again
    assert_same(stored(library), reference[1])
    assert states(library) == []


def test_the_time_left_of_a_resumed_video_is_reckoned_from_this_run_s_work(monkeypatch, capsys):
    """A video resumed at 90 %, 1 % more done in 20 s: about 3 min left.  Counted as done in this
    run, the resumed 90 % made it 'about 2 s left' (and on a terminal, tqdm's 0:00 left)."""
    from vmr_cli import progress

    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    bar = progress.by_size([1_000_000], "indexing", "video")
    bar.resumed(90, 100)
    bar.set_postfix_str("long.mp4 90/100 clips (resumed at 90)")
    clock[0] += 20
    bar.within(91, 100)
    bar.set_postfix_str("long.mp4 91/100 clips (resumed at 90)")
    assert capsys.readouterr().err == ("indexing: 91 % (0/1 video, long.mp4 91/100 clips (resumed at 90)), 20 s, "
                                       "about 3 min left\n")


def test_a_clip_trimmed_without_re_encoding_resumes(tiny_model, encoded, tmp_path, monkeypatch):
    """A clip trimmed from inside a GOP (ffmpeg -c copy, a phone's trim) is read by PyAV from its
    key frames, its times on them; the resumed run opened PyAV without them, took other times
    and started over.  It resumes now, and stores what an uninterrupted run does."""
    from test_edit_lists import _phone_video

    monkeypatch.setattr(indexer, "CHUNK_CLIPS", CHUNK)
    monkeypatch.setattr(partial, "SAVE_EVERY_SECONDS", 0.0)
    source = _phone_video(tmp_path / "source.mp4", 64)
    (tmp_path / "v").mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-ss", "1.3", "-i", source, "-t", "60", "-c", "copy",
                    str(tmp_path / "v" / "trimmed.mp4")], check=True)
    whole = vmr_json("--library", tmp_path / "whole", "index", tmp_path / "v", "--model", tiny_model)
    assert "begins inside a GOP" in whole["fallbacks"][0]["reason"], whole["fallbacks"]
    library = tmp_path / "lib"
    interrupt(library, tmp_path / "v", tiny_model, encoded)
    encoded.update(frames=0)
    summary = vmr_json("--library", library, "index", tmp_path / "v")
    assert summary["resumed"] and summary["resumed"][0]["from_clip"] == 2 * CHUNK, summary
    assert summary["fallbacks"] == whole["fallbacks"]
    assert_same(stored(library), stored(tmp_path / "whole"))


def _twin(tmp_path, item, name: str):
    """Another file of item's size and mtime (a camera's clips at a fixed bitrate, stamped alike)."""
    from vmr_cli.scan import Found

    other = tmp_path / name
    other.write_bytes(os.urandom(item.size))
    os.utime(other, ns=(item.mtime_ns, item.mtime_ns))
    return Found(str(other), item.size, item.mtime_ns)


def test_two_videos_moved_alike_each_resume_from_their_own_progress(store, tmp_path):
    """Two stopped videos of the same size and mtime, both moved: each takes its own progress
    (the first state of that size and time was tried alone: its fingerprint did not match the
    other's file, and that file started over)."""
    from vmr_cli.scan import Found

    lib, saved_by, item, arrays = store
    twin = _twin(tmp_path, item, "twin.mp4")
    saved_by.save(twin, *arrays, None, 10)
    (tmp_path / "moved").mkdir()
    for found in (item, twin):
        os.rename(found.path, tmp_path / "moved" / os.path.basename(found.path))
    reader = partial.Store(lib, "vmr 0.2.0; torchcodec 0.1", "torchcodec", 4)
    for found in (item, twin):
        moved = Found(str(tmp_path / "moved" / os.path.basename(found.path)), found.size, found.mtime_ns)
        saved = reader.load(moved, 16, 10)
        assert saved is not None and saved.clips == 4, found.path


def test_a_video_moved_over_another_stopped_one_resumes_from_its_own_progress(store, tmp_path):
    """Stopped in video.mp4, then in twin.mp4; twin.mp4 moved over video.mp4 (mv twin.mp4
    video.mp4): it resumes from its own progress, not stopped at video.mp4's state, which no
    longer applies (that one goes, with the run's sweep)."""
    lib, saved_by, item, arrays = store
    twin = _twin(tmp_path, item, "twin.mp4")
    os.utime(twin.path, ns=(item.mtime_ns + 10**9, item.mtime_ns + 10**9))
    twin = type(twin)(twin.path, twin.size, item.mtime_ns + 10**9)
    saved_by.save(twin, *arrays, None, 10)
    os.replace(twin.path, item.path)
    reader = partial.Store(lib, "vmr 0.2.0; torchcodec 0.1", "torchcodec", 4)
    saved = reader.load(type(twin)(item.path, twin.size, twin.mtime_ns), 16, 10)
    assert saved is not None and saved.clips == 4
    reader.sweep()
    assert partial.state_files(lib.directory) == []


def test_a_moved_video_resumes_though_a_new_file_took_its_old_name(store, tmp_path):
    """Stopped in video.mp4, the user files it in trip/ and a new recording is saved as
    video.mp4 (a camera's numbering restarted): the moved video resumes though the new file was
    read and committed first, and the new file is indexed from its start."""
    from vmr_cli.scan import Found

    lib, saved_by, item, arrays = store
    (tmp_path / "trip").mkdir()
    moved = Found(str(tmp_path / "trip" / "video.mp4"), item.size, item.mtime_ns)
    os.rename(item.path, moved.path)
    with open(item.path, "wb") as handle:
        handle.write(os.urandom(5000))
    st = os.stat(item.path)
    new = Found(item.path, st.st_size, st.st_mtime_ns)
    reader = partial.Store(lib, "vmr 0.2.0; torchcodec 0.1", "torchcodec", 4)
    assert reader.load(new, 16, 10) is None
    reader.forget(new.path, new)  # the new file indexed and committed first
    saved = reader.load(moved, 16, 10)
    assert saved is not None and saved.clips == 4


@pytest.mark.parametrize("where", ["a/long.mp4", "z/long.mp4"])
def test_a_video_moved_whose_old_name_took_a_new_file_resumes(tiny_model, reference, long_video, encoded, tmp_path,
                                                             where):
    """Stopped in long.mp4; the user files it in a folder and a new recording takes its name:
    'vmr index' resumes the moved video, whether the new file comes before it or after (it was
    indexed from its start, its old path taken), and indexes the new file from its start."""
    library = tmp_path / "lib"
    interrupt(library, tmp_path / "v", tiny_model, encoded)
    moved = tmp_path / "v" / where
    moved.parent.mkdir()
    os.rename(long_video, moved)
    make_video(tmp_path / "v" / "long.mp4", [("testsrc", 3.0)])
    summary = vmr_json("--library", library, "index", tmp_path / "v")
    assert summary["resumed"] == [{"path": str(moved), "from_clip": 2 * CHUNK, "clips": CLIPS}], summary
    assert summary["added"] == 2 and states(library) == []
