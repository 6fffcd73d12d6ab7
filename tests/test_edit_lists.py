"""Clips trimmed without re-encoding (an edit list that starts inside a GOP), and PyAV taking over
an index from torchcodec: the frames each time shows, and how many are decoded for them."""

from __future__ import annotations

import subprocess

import pytest
import torch

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


def _index_frames(reader, info):
    """The times an index takes on this reader and the frames it reads there, chunk by chunk."""
    times = on_key_frames(grid_times(clip_grid(info.duration, 2.0), info.fps), reader.key_frames(), 0.5)
    reader.expect(times)
    return times, torch.cat([reader.frames_at(times[k:k + 20]) for k in range(0, len(times), 20)])


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
