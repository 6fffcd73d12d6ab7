"""Clips trimmed without re-encoding (an edit list that starts inside a GOP), and PyAV taking over
an index from torchcodec: the frames each time shows, and how many are decoded for them."""

from __future__ import annotations

import os
import subprocess

import pytest
import torch
from conftest import vmr_json

from vmr_cli.decode import PyAVReader, TorchcodecReader, open_reader
from vmr_cli.indexer import clip_grid, grid_times, on_key_frames
from vmr_cli.probe import probe

FPS = 30000 / 1001
START = 1.3  # where the trim starts: 0.3 s after a key frame (one every 30 frames, as phones record)
FIRST = 39 / FPS  # the source's first frame at or after START: the trimmed clip's time 0


def _phone_video(path, seconds: float) -> str:
    """H.264 at 29.97 fps with B-frames and a key frame every 30 frames; every frame unlike the
    others (a counter, moving shapes), so a frame one off is seen."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=96x64:rate=30000/1001:duration={seconds}", "-c:v", "libx264", "-g", "30",
                    "-bf", "2", "-sc_threshold", "0", "-pix_fmt", "yuv420p", str(path)], check=True)
    return str(path)


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory):
    """(the source, the clip trimmed from it at START with `-c copy`, as LosslessCut and a phone's
    trim do): 62 s in all, so that nearly every time of an index lands on a key frame."""
    folder = tmp_path_factory.mktemp("trimmed")
    source = _phone_video(folder / "source.mp4", 64)
    clip = folder / "v" / "trimmed.mp4"
    clip.parent.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", str(START), "-i", source, "-t", "62", "-c", "copy",
                    str(clip)], check=True)
    return source, str(clip)


def _index_frames(reader, info):
    """The times an index takes on this reader and the frames it reads there, chunk by chunk."""
    times = on_key_frames(grid_times(clip_grid(info.duration, 2.0), info.fps), reader.key_frames(), 0.5)
    reader.expect(times)
    return times, torch.cat([reader.frames_at(times[k:k + 20]) for k in range(0, len(times), 20)])


def test_a_clip_trimmed_inside_a_gop_is_indexed_from_its_key_frames(trimmed):
    """torchcodec's scan returned the first key frame (0.70 s) for every time before it and PyAV
    took over, or (other encodings) decoded every frame up to each time: either way the index
    decoded every frame (14.2 s for 3 minutes of 720p, against 5.4 s for the untrimmed file).
    Now PyAV reads the clip's key frames from its packets, those hidden before its start left
    out, and decodes those alone; each frame is the one the untrimmed file shows at that time."""
    source, clip = trimmed
    info = probe(clip)
    reader = open_reader(clip, info, 48, whole=True)
    times, frames = _index_frames(reader, info)
    assert reader.backend == "pyav" and "begins inside a GOP" in reader.fallback, reader.fallback
    keys = reader.key_frames()
    assert min(a for a, _ in keys) > 0.5 and times[0] == 0.0 and min(times) == 0.0
    assert reader.reader._key_only and reader.good_frames <= len(keys) and reader.bad_frames == 0
    full = PyAVReader(clip, info, 48, whole=True)  # every frame decoded, as before
    assert torch.equal(frames, torch.cat([full.frames_at(times[k:k + 20]) for k in range(0, len(times), 20)]))
    assert full.good_frames > 1800
    inside = [k for k, t in enumerate(times) if t < 61]  # (the clip's last frame stays shown after its end)
    untrimmed = PyAVReader(source, probe(source), 48, whole=True).frames_at([times[k] + FIRST + 1e-4 for k in inside])
    assert len(inside) > 60 and torch.equal(frames[inside], untrimmed)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """62 s of phone-like video: nearly every time of an index lands on a key frame."""
    return _phone_video(tmp_path_factory.mktemp("source") / "source.mp4", 64)


def test_pyav_taking_over_an_index_midway_decodes_the_key_frames_of_the_times_expected(source, monkeypatch):
    """torchcodec failing on a file part way through an index (after 20 s here): PyAV took over
    and decoded every frame of the file, though the times were on key frames.  Now it reads the
    key frames and decodes those alone, as for MPEG-TS; its frames are a full decode's."""
    info = probe(source)
    real = TorchcodecReader._frames

    def fails_after_20_s(self, times):
        if max(times) > 20:
            raise RuntimeError("could not decode")
        return real(self, times)

    monkeypatch.setattr(TorchcodecReader, "_frames", fails_after_20_s)
    reader = open_reader(source, info, 48, whole=True)
    times, frames = _index_frames(reader, info)
    assert reader.backend == "pyav" and reader.fallback == "decoded with PyAV: torchcodec failed (could not decode)"
    assert reader.reader._key_only and reader.good_frames <= len(reader.reader.key_frames())
    full = PyAVReader(source, info, 48, whole=True)
    pyav = [k for k in range(len(times)) if max(times[k // 20 * 20:k // 20 * 20 + 20]) > 20]
    expected = torch.cat([full.frames_at(times[k:k + 20]) for k in range(0, len(times), 20)])
    assert len(pyav) > 40 and torch.equal(frames[pyav], expected[pyav])


def test_vmr_index_of_a_trimmed_clip_says_why_pyav_reads_it_and_a_search_reads_the_same_frames(
        tiny_model, trimmed, monkeypatch):
    """Through `vmr index`: the note says why (it said torchcodec returned the frame of 0.70 s for
    0.00 s, or nothing while every frame was decoded).  A search reads the clip with torchcodec
    (without its scan: a seek to the key frame before each time, decoding on): the frame at each
    time is the one the index read there, pixel for pixel at the clip's own size (scaled, the
    two decoders' scalers differ by a few levels, as on any file PyAV read for the index)."""
    _source, clip = trimmed
    decoded = {}
    close = PyAVReader.close

    def counted(self):
        decoded[self.whole] = max(self.good_frames, decoded.get(self.whole, 0))
        close(self)

    monkeypatch.setattr(PyAVReader, "close", counted)
    summary = vmr_json("index", os.path.dirname(clip), "--model", tiny_model)
    assert summary["added"] == 1 and summary["damaged"] == [] and summary["failed"] == []
    (note,) = summary["fallbacks"]
    assert note["reason"].startswith("decoded with PyAV: torchcodec failed (its video begins inside a GOP, "), note
    assert decoded[True] <= 65, decoded  # the key frames of 62 s (the three times off them: a reader that seeks)
    info = probe(clip)
    index = open_reader(clip, info, info.height, whole=True)
    times, frames = _index_frames(index, info)
    search = open_reader(clip, info, info.height)
    assert torch.equal(search.frames_at(times), frames) and search.backend == "torchcodec"
    between = [t + 0.37 for t in times[:-3]]  # off key frames, each decoded on from a seek
    assert torch.equal(search.frames_at(between), PyAVReader(clip, info, info.height).frames_at(between))


def test_an_index_decoding_key_frames_reads_the_last_frame_where_its_last_clip_is_shorter_than_a_frame(tmp_path):
    """A camcorder's .mts whose length is a hair past a clip's end (60.06 s, 2 s clips): the last
    clip's times lie after the last frame begins, and are read as that frame; when only key frames
    were decoded, they were read as the key frame before it (0.97 s earlier here), since the times
    left off key frames were taken before that move."""
    path = _phone_video(tmp_path / "camcorder.mts", 60.03)
    info = probe(path)
    reader = open_reader(path, info, 48, whole=True)
    times, frames = _index_frames(reader, info)
    assert times[-1] > info.duration - 1 / FPS and reader.reader._key_only, (times[-3:], info.duration)
    full = PyAVReader(path, info, 48, whole=True)
    assert torch.equal(frames, torch.cat([full.frames_at(times[k:k + 20]) for k in range(0, len(times), 20)]))


def test_an_index_with_backend_pyav_decodes_the_key_frames_of_its_times(source):
    """`--backend pyav` (where torchcodec does not load, as on a GPU machine without it) read a
    phone's MP4 without its key frames: its times stayed on the second, each the last frame of a
    GOP, and every frame of the file was decoded.  It now takes the key frames as torchcodec's
    index does, and decodes those alone; the frames are a full decode's at those times."""
    info = probe(source)
    reader = open_reader(source, info, 48, backend="pyav", whole=True)
    times, frames = _index_frames(reader, info)
    keys = reader.key_frames()
    assert reader.fallback is None and keys and reader.reader._key_only
    assert reader.good_frames <= len(keys)
    full = PyAVReader(source, info, 48, whole=True)
    assert torch.equal(frames, torch.cat([full.frames_at(times[k:k + 20]) for k in range(0, len(times), 20)]))
    assert full.good_frames > 1800
