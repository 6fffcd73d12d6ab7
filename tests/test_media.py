"""Decoding: rotation, agreement between backends, real camera footage from Debian packages."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy
import pytest
import torch
from conftest import PHONE, ROOT, VTEST, make_hdr_video, make_video, saturation, sdr_source_frames, vmr_json

from vmr_cli.decode import import_torchcodec, open_reader
from vmr_cli.frames import resize_center_crop
from vmr_cli.probe import probe

needs_media = pytest.mark.skipif(
    not (VTEST.exists() and PHONE.exists()),
    reason="real test media missing: run scripts/fetch_test_media.sh (CI does)")


def test_rotated_phone_video_is_decoded_upright(tmp_path):
    # 320x180 landscape, left half red, right half blue, stored with a 90 degree display rotation.
    plain = tmp_path / "plain.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-t", "2", "-i",
                    "color=red:size=320x180:rate=10,drawbox=x=160:y=0:w=160:h=180:color=blue:t=fill",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(plain)], check=True)
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(plain), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(rotated)], check=True)
    info = probe(str(rotated))
    assert (info.width, info.height, info.rotation) == (180, 320, 90)
    # Displayed upright: blue is the top half, red the bottom half. Without rotation it would be
    # left/right, so the test fails if rotation is ignored.
    for backend in ("torchcodec", "pyav"):
        reader = open_reader(str(rotated), info, 16, backend=backend)
        frame = reader.frames_at([1.0])[0].float()
        top, bottom = frame[:, :4], frame[:, -4:]
        assert top[2].mean() > 200 and top[0].mean() < 50, backend
        assert bottom[0].mean() > 200 and bottom[2].mean() < 50, backend


def test_torchcodec_and_sequential_pyav_pick_the_same_frames(tmp_path):
    path = make_video(tmp_path / "pattern.mp4", [("testsrc", 6.0)], size="320x240", fps=25, gop=30)
    info = probe(str(path))
    times = [0.0, 5.9, 0.37, 2.0, 3.99, 1.04]
    # At the native height only the centre crop happens: the frames must be identical.
    a = open_reader(str(path), info, 240, backend="torchcodec").frames_at(times)
    b = open_reader(str(path), info, 240, backend="pyav").frames_at(times)
    assert a.shape == b.shape == (6, 3, 240, 240)
    assert torch.equal(a, b)
    assert (a[0].float() - a[1].float()).abs().mean() > 3.0  # different times, different frames
    # Scaled, the two resamplers differ a little on smooth content (test patterns alias).
    smooth = make_video(tmp_path / "smooth.mp4", [("red", 1.0), ("blue", 1.0)], size="320x240")
    info = probe(str(smooth))
    a = open_reader(str(smooth), info, 32, backend="torchcodec").frames_at([0.5, 1.5])
    b = open_reader(str(smooth), info, 32, backend="pyav").frames_at([0.5, 1.5])
    assert (a.float() - b.float()).abs().mean() < 3.0


@needs_media
def test_real_camera_videos_index_and_search(tiny_model, tmp_path):
    folder = tmp_path / "camera"
    folder.mkdir()
    (folder / "vtest.avi").symlink_to(VTEST)
    (folder / "phone.mp4").symlink_to(PHONE)
    summary = vmr_json("index", folder, "--model", tiny_model)
    assert summary["added"] == 2 and summary["failed"] == []
    # vtest.avi: 79.5 s at 2 s clips = 40 clips; the phone clip: 1.6 s = 1 clip
    assert summary["clips"] == 41
    found = vmr_json("search", "people walking on a path", "--top-k", "5")
    duration = {"vtest.avi": 79.5, "phone.mp4": 1.7}
    for r in found["results"]:
        name = r["video"].rsplit("/", 1)[1]
        assert 0 <= r["start"] < r["end"] <= duration[name]


def test_end_to_end_in_a_subprocess(tiny_model, tmp_path, isolated_library):
    """The real entry point, as a user runs it."""
    folder = tmp_path / "v"
    make_video(folder / "clip.mp4", [("red", 2.0), ("blue", 2.0)])
    env_cmd = [sys.executable, "-m", "vmr_cli", "--library", str(isolated_library)]
    run = lambda *a: subprocess.run(env_cmd + list(a), capture_output=True, text=True, cwd=ROOT)  # noqa: E731
    done = run("index", str(folder), "--model", tiny_model)
    assert done.returncode == 0, done.stderr
    found = run("search", "blue", "--json")
    assert found.returncode == 0 and '"results"' in found.stdout
    bad = run("search", "")
    assert bad.returncode == 1 and bad.stderr.startswith("Error:") and "Traceback" not in bad.stderr


def test_mpeg1_program_stream_is_decoded_sequentially_and_exactly(tmp_path):
    """torchcodec's random access picked frames 0.5-1 s late on this file; vmr must not."""
    import json

    import numpy as np

    from vmr_cli.frames import resize_center_crop

    path = tmp_path / "old camera.mpg"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
                    "-t", "6", "-c:v", "mpeg1video", "-f", "mpeg", str(path)], check=True)
    shown = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_frames", "-show_entries",
         "frame=best_effort_timestamp_time", "-of", "json", str(path)], capture_output=True, check=True).stdout)
    pts = [float(f.get("best_effort_timestamp_time", "nan")) for f in shown["frames"]]
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-fps_mode", "passthrough", "-f",
                          "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    frames = torch.from_numpy(np.frombuffer(raw, np.uint8).reshape(-1, 240, 320, 3).copy()).permute(0, 3, 1, 2)
    times = [0.5, 2.0, 4.1]
    expected = torch.stack([frames[max(k for k, p in enumerate(pts) if p - pts[0] <= t + 1e-6)] for t in times])
    info = probe(str(path))
    got = open_reader(str(path), info, 240).frames_at(times)  # asks for the default backend
    assert torch.equal(got, resize_center_crop(expected, 240))


def _clock_video(path, seconds: int, *args: str):
    """A video whose red level tells the second it was made in (20 + 20 * s for s < 10, then
    the tens in green), so a decoded frame says which time it shows."""
    source = (f"color=c=black:s=64x48:r=25:d={seconds},format=gbrp,"
              "geq=r='20+20*mod(floor(T+0.0001),10)':g='20+40*floor(T/10+0.00001)':b=128")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-pix_fmt", "yuv420p",
                    *args, str(path)], check=True)
    return str(path)


def _seconds_shown(frames) -> list[int]:
    r, g = frames[:, 0].float().mean((1, 2)), frames[:, 1].float().mean((1, 2))
    return [int(round((gg - 20) / 40)) * 10 + int(round((rr - 20) / 20)) for rr, gg in zip(r.tolist(), g.tolist())]


@pytest.mark.parametrize("gop", [25, 250])
def test_an_mpeg_ts_with_b_frames_gives_the_frame_shown_at_each_time(tmp_path, gop):
    """MPEG-TS (.ts; .m2ts/.mts from camcorders): torchcodec returned the next key frame for
    every time (with key frames 10 s apart, the frame of 10 s for 0, 2, 6 and 9.9 s), so the
    index embedded the wrong frames and search reported the wrong moment.  Each time is asked
    alone too: far ahead of the last one, PyAV seeks, and lands again where ffmpeg's MPEG-TS
    seek went past the time."""
    path = _clock_video(tmp_path / "camcorder.mts", 30, "-c:v", "libx264", "-g", str(gop), "-bf", "3",
                        "-sc_threshold", "0", "-f", "mpegts")
    info = probe(path)
    times = [0.5, 2.5, 6.5, 9.5, 12.5, 21.5, 27.5]
    reader = open_reader(path, info, 48)
    assert _seconds_shown(reader.frames_at(times)) == [int(t) for t in times]
    for t in [21.5, 12.5, 27.5, 3.5, 25.5, 14.5]:
        assert _seconds_shown(reader.frames_at([t])) == [int(t)], t
    assert reader.fallback is None  # PyAV by design, as for MPEG-1/2


def test_pyav_gives_the_frame_beginning_exactly_at_the_time_asked(tmp_path):
    """A transport stream starts at 1.4 s: a frame's time, 2.4 s less 1.4 s in floats, came to
    1.0000000000000002, so the frame beginning at 1.0 s was taken for one beginning after it and
    the frame before was shown (27 of 50 frame starts here; an index asks at whole and half
    seconds, where this happened for 3 of 3,600 times of a test file).  Every frame asked at its
    start is now the frame asked in its middle."""
    path = str(tmp_path / "clip.ts")
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=2",
                    "-c:v", "libx264", "-g", "25", "-bf", "0", "-f", "mpegts", path], check=True)
    info = probe(path)
    starts = [k / 25 for k in range(50)]
    middles = open_reader(path, info, 48).frames_at([t + 0.02 for t in starts])
    assert torch.equal(open_reader(path, info, 48).frames_at(starts), middles)


def test_torchcodec_frames_are_checked_and_a_late_one_reads_the_file_with_pyav(tmp_path, monkeypatch):
    """Where torchcodec returns a frame shown after the time asked for (its seek went past, no
    error), the file is read by PyAV and the reader says why."""
    from vmr_cli import decode

    path = _clock_video(tmp_path / "camcorder.ts", 20, "-c:v", "libx264", "-g", "250", "-bf", "3",
                        "-sc_threshold", "0", "-f", "mpegts")
    monkeypatch.setattr(decode, "is_mpeg_ts", lambda path: False)  # as for a container not known to do this
    reader = open_reader(path, probe(path), 48)
    assert _seconds_shown(reader.frames_at([2.5, 6.5])) == [2, 6]
    assert reader.backend == "pyav" and reader.fallback.startswith(
        "decoded with PyAV: torchcodec failed (it returned the frame of 10.00 s for 2.50 s")


def test_pyav_seeks_to_a_time_far_ahead_instead_of_decoding_up_to_it(tmp_path):
    """A search refines one edge near the end of an hour of MPEG-2 or .mts: PyAV decoded every
    frame before it.  Now it seeks to a key frame before the time and decodes from there."""
    path = _clock_video(tmp_path / "dvd.mpg", 60, "-c:v", "mpeg2video", "-g", "12", "-f", "mpeg")
    reader = open_reader(path, probe(path), 48)
    assert _seconds_shown(reader.frames_at([55.5])) == [55]
    assert reader.good_frames < 3 * 25  # about a second of frames decoded, not 55
    assert _seconds_shown(reader.frames_at([40.2, 41.7])) == [40, 41]  # back again: a seek too
    assert _seconds_shown(reader.frames_at([0.3, 5.5])) == [0, 5]  # near the start: a pass from it


@pytest.mark.parametrize("name, args", [
    ("camcorder.mts", ["-c:v", "libx264", "-g", "12", "-bf", "2", "-f", "mpegts", "-mpegts_m2ts_mode", "1"]),
    ("dvd.mpg", ["-c:v", "mpeg2video", "-g", "15", "-bf", "2", "-f", "mpeg"])])
def test_an_index_of_a_camcorders_mts_or_a_dvds_mpeg2_decodes_only_the_key_frames_it_uses(tmp_path, name, args):
    """PyAV reads MPEG-TS and MPEG-1/2 from the start, and an index decoded every frame of them:
    a camcorder's 1080i .mts (a key frame every 12 frames) cost 16.1 s of decoding for 2 minutes,
    for the 121 frames used.  Now its key frames are read from its packets first, the index's
    times move onto them as they do for other files (within a quarter clip), and only key frames
    are decoded (4.3 s); a time left off key frames (the DVD's last, where the next key frame
    is past the time after it) is read by seeking to it.  The frames are those a full decode
    gives at the same times."""
    from vmr_cli.decode import PyAVReader
    from vmr_cli.indexer import clip_grid, grid_times, on_key_frames

    path = _clock_video(tmp_path / name, 50, *args)  # (30 s: 2 of 31 times off key frames, over the 5 %)
    info = probe(path)
    reader = open_reader(path, info, 48, whole=True)
    keys = reader.key_frames()
    times = on_key_frames(grid_times(clip_grid(info.duration, 2.0), info.fps), keys, 0.5)
    off = [t for t in times if not any(a <= t < b for a, b in keys)]
    assert len(keys) >= 45 and len(off) == (0 if name.endswith(".mts") else 1)
    reader.expect(times)
    frames = torch.cat([reader.frames_at(times[k:k + 20]) for k in range(0, len(times), 20)])
    full = PyAVReader(path, info, 48, whole=True)  # every frame decoded, as before
    assert torch.equal(frames, torch.cat([full.frames_at(times[k:k + 20]) for k in range(0, len(times), 20)]))
    assert _seconds_shown(frames) == [int(t) for t in times]
    assert reader.good_frames <= len(keys) and full.good_frames > 700 and reader.bad_frames == 0
    assert reader.fallback is None


def test_a_key_frame_the_decoder_skips_makes_the_index_decode_every_frame(tmp_path, monkeypatch):
    """Where a frame the packets call key is not one to the decoder (it skips it with the other
    frames), the frame shown for its time would be the key frame before: the reader sees it, and
    decodes every frame from the start instead."""
    from vmr_cli.decode import PyAVReader
    from vmr_cli.indexer import clip_grid, grid_times, on_key_frames

    path = str(tmp_path / "camcorder.mts")  # (every frame unlike the others: a counter, moving shapes)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:d=30",
                    "-c:v", "libx264", "-g", "12", "-bf", "2", "-f", "mpegts", path], check=True)
    info = probe(path)
    real = PyAVReader.key_frames

    def also_a_frame_that_is_not(self):  # the frame 0.2 s after each of the first 10 s of key frames
        if self._keys is None:
            keys = real(self)
            self._keys = sorted(keys + [(a + 0.2, a + 0.24) for a, _ in keys if a < 10])
        return self._keys

    monkeypatch.setattr(PyAVReader, "key_frames", also_a_frame_that_is_not)
    reader = open_reader(path, info, 48, whole=True)
    times = on_key_frames(grid_times(clip_grid(info.duration, 2.0), info.fps), reader.key_frames(), 0.5)
    fake = [(a, b) for a, b in reader.key_frames() if round(a / 0.04) % 12 == 5]
    assert sum(a <= t < b for t in times for a, b in fake) > 3  # times moved onto frames that are not key
    reader.expect(times)
    frames = torch.cat([reader.frames_at(times[k:k + 20]) for k in range(0, len(times), 20)])
    full = PyAVReader(path, info, 48, whole=True)
    assert torch.equal(frames, torch.cat([full.frames_at(times[k:k + 20]) for k in range(0, len(times), 20)]))
    assert not reader.reader._key_only and reader.good_frames > 700 and reader.bad_frames == 0


def test_vmr_index_of_an_mts_decodes_its_key_frames_only_and_a_long_gop_every_frame(tiny_model, tmp_path, monkeypatch):
    """The same through `vmr index`; where key frames are too far apart for the times to move
    onto them (a screen recorder's .ts, one every 10 s) every frame is decoded, as before."""
    from conftest import vmr_json

    from vmr_cli.decode import PyAVReader

    (tmp_path / "v").mkdir()
    _clock_video(tmp_path / "v" / "camcorder.mts", 30, "-c:v", "libx264", "-g", "12", "-bf", "2", "-f", "mpegts")
    _clock_video(tmp_path / "v" / "screen.ts", 30, "-c:v", "libx264", "-g", "250", "-bf", "2", "-f", "mpegts")
    decoded = {}
    close = PyAVReader.close

    def counted(self):
        decoded[os.path.basename(self.path)] = max(self.good_frames, decoded.get(os.path.basename(self.path), 0))
        close(self)

    monkeypatch.setattr(PyAVReader, "close", counted)
    summary = vmr_json("index", tmp_path / "v", "--model", tiny_model)
    assert summary["added"] == 2 and summary["damaged"] == [] and summary["fallbacks"] == []
    assert decoded["camcorder.mts"] <= 65 and decoded["screen.ts"] >= 740, decoded
    found = vmr_json("search", "a dark red screen", "--top-k", "3")
    assert {os.path.basename(r["video"]) for r in found["results"]} <= {"camcorder.mts", "screen.ts"}


@pytest.mark.parametrize("container", ["mp4", "mkv"])
@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
def test_times_count_from_the_files_start_as_players_and_ffmpeg_count_them(tmp_path, container, backend):
    """A video that starts 2 s after its sound: vmr counted from the video's first frame, players
    and ffmpeg's -ss (vmr play, vmr export) from the file's start, so every moment was 2 s off
    between search and what play and export showed."""
    clock = _clock_video(tmp_path / "clock.mkv", 8, "-c:v", "libx264")
    late = tmp_path / f"late.{container}"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-itsoffset", "2", "-i", clock, "-f", "lavfi", "-i",
                    "sine=duration=10", "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac",
                    str(late)], check=True)
    info = probe(str(late))
    assert 9.9 < info.duration < 10.2  # to where the picture ends, in the file's time
    reader = open_reader(str(late), info, 48, backend)
    assert _seconds_shown(reader.frames_at([0.5, 2.5, 4.5, 9.5])) == [0, 0, 2, 7]  # the first frame until 2 s
    cut = subprocess.run(["ffmpeg", "-v", "error", "-ss", "6.5", "-i", str(late), "-frames:v", "1", "-f",
                          "rawvideo", "-pix_fmt", "rgb24", "-s", "48x48", "-"], capture_output=True, check=True).stdout
    assert _seconds_shown(torch.frombuffer(bytearray(cut), dtype=torch.uint8).view(1, 48, 48, 3).permute(0, 3, 1, 2)) \
        == _seconds_shown(reader.frames_at([6.5])) == [4]  # what export's ffmpeg cuts from


@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
def test_pixels_that_are_not_square_are_embedded_as_shown(tmp_path, backend):
    """Anamorphic video (a DVD's 720x480 shown 853 wide, HDV's 1440x1080 shown 1920) was
    embedded squeezed: the centre crop took 75 % of this frame's stored width (its red and blue
    edges) where a player shows only the green middle there."""
    path = tmp_path / "anamorphic.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "color=green:size=64x48:rate=10:duration=2,drawbox=x=0:y=0:w=16:h=48:color=red:t=fill,"
                    "drawbox=x=48:y=0:w=16:h=48:color=blue:t=fill,setsar=2", "-c:v", "libx264",
                    "-pix_fmt", "yuv444p", str(path)], check=True)
    info = probe(str(path))
    assert (info.width, info.height) == (128, 48)
    frame = open_reader(str(path), info, 32, backend).frames_at([1.0])[0].float()
    red, green, blue = frame.mean((1, 2)).tolist()
    assert green > 100 and red < 30 and blue < 30, (red, green, blue)


def test_an_index_counts_a_files_damage_also_when_pyav_takes_over_midway(tmp_path):
    """torchcodec read a download cut short until it failed at 24 s; PyAV took over there and,
    seeking to the time asked for, counted no frame as lost: the index took the file as whole
    (its last frame standing for the missing 12 s) and would never read it again."""
    whole = _clock_video(tmp_path / "download.mp4", 40, "-c:v", "libx264", "-movflags", "+faststart")
    data = open(whole, "rb").read()
    cut_short = tmp_path / "cut short.mp4"
    cut_short.write_bytes(data[:int(len(data) * 0.7)])
    info = probe(str(cut_short))
    counted = {}
    for backend, is_index in (("pyav", True), ("torchcodec", True), ("torchcodec", False)):
        reader = open_reader(str(cut_short), info, 32, backend, whole=is_index)
        for start in range(0, 40, 8):  # chunks in order, as an index reads them
            reader.frames_at([start + k * 0.5 for k in range(16)])
        counted[backend, is_index] = (reader.backend, reader.bad_frames)
    assert counted["torchcodec", True] == counted["pyav", True] == ("pyav", counted["pyav", True][1])
    assert counted["pyav", True][1] > 50
    assert counted["torchcodec", False][1] == 0  # a search's few frames: it seeks, and counts nothing


def test_an_mp4_cut_short_is_indexed_up_to_where_it_ends_or_failed_when_most_is_gone(tiny_model, tmp_path):
    """A phone clip copied half-way (its MP4 header lists every frame) was indexed silently at
    the length it claims, under the 2 s of slack a stream's end is given: search found moments
    past its last frame and export could not cut them.  A longer one got 'N frames could not be
    decoded', N short by those 2 s."""
    videos = tmp_path / "v"
    videos.mkdir()
    # header first, as phones write; 'hour.mp4' stands for a long clip losing its last 1 % (a second
    # here, 72 s of an hour): under 2 % of slack it went unnoticed
    for name, seconds, kept in (("long.mp4", 8, 0.6), ("phone.mp4", 2, 0.4), ("hour.mp4", 60, 0.985)):
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=25:"
                        f"duration={seconds}", "-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p", "-movflags",
                        "+faststart", str(tmp_path / name)], check=True)
        whole = (tmp_path / name).read_bytes()
        (videos / name).write_bytes(whole[:int(len(whole) * kept)])
    # trimmed without re-encoding (an edit list): its header lists, and it holds, frames it never shows
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", "1.3", "-i", str(tmp_path / "long.mp4"), "-t", "3",
                    "-c", "copy", str(videos / "trimmed.mp4")], check=True)
    summary = vmr_json("index", videos, "--model", tiny_model, expect=1)
    (failed,) = summary["failed"]
    assert failed["path"] == str(videos / "phone.mp4") and failed["error"].startswith(
        "cut short: its video stream ends at 0:00:00.") and failed["error"].endswith(
        " of the 0:00:02.0 it claims (a copy or download that stopped?)"), failed
    damaged, hour = sorted(summary["damaged"], key=lambda d: d["claimed"])
    assert hour["claimed"] == 60.0 and 57.0 < hour["ends_at"] < 59.9, hour
    ends = damaged["ends_at"]
    assert damaged["claimed"] == 8.0 and 2.0 < ends < 7.0, damaged
    assert abs(damaged["bad_frames"] - (8.0 - ends) * 25) <= 5, damaged  # every missing frame, none spared
    from vmr_cli.cli import _damage_note

    assert _damage_note(damaged).endswith(" of the 0:00:08.0 it claims (cut short: a copy or download that "
                                          "stopped?); indexed up to there")
    assert [f["path"] for f in vmr_json("status", "--failed")["failed_files"]] == [str(videos / "phone.mp4")]
    found = vmr_json("search", "a test pattern", "--top-k", "30")["results"]
    limit = {"long.mp4": ends, "hour.mp4": hour["ends_at"], "trimmed.mp4": 3.0}
    assert found and all(r["end"] <= limit[os.path.basename(r["video"])] + 1e-3 for r in found), (limit, found)
    assert vmr_json("export", "1", "--out", tmp_path / "cuts")["exported"]  # cut from what is there


def test_a_fallback_to_pyav_is_reported_and_a_missing_backend_is_an_error(tmp_path, monkeypatch):
    from vmr_cli import decode
    from vmr_cli.errors import VmrError

    path = make_video(tmp_path / "clip.mp4", [("red", 2.0)])
    info = probe(str(path))
    assert sorted(decode.BACKENDS) == ["decord", "pyav", "torchcodec"]
    reader = open_reader(str(path), info, 32)
    reader.frames_at([0.5])
    assert reader.fallback is None and reader.backend == "torchcodec"

    def broken(self, times):
        raise RuntimeError("demuxer exploded\nsecond line")

    monkeypatch.setattr(decode.TorchcodecReader, "_frames", broken)
    reader = open_reader(str(path), info, 32)
    frames = reader.frames_at([0.5, 1.5])
    assert frames.shape == (2, 3, 32, 32) and reader.backend == "pyav"
    assert reader.fallback == "decoded with PyAV: torchcodec failed (demuxer exploded)"
    monkeypatch.setitem(sys.modules, "decord", None)  # as if not installed
    with pytest.raises(VmrError, match="decord backend is not installed"):
        open_reader(str(path), info, 32, backend="decord")


def test_a_name_that_is_not_utf8_opens_torchcodec_from_the_file_start_every_time(tmp_path):
    """Such a file is handed to torchcodec as a file object; a second open (after one that
    failed) got it already read, and failed with 'Invalid data found' instead of the reason."""
    import os

    odd = os.path.join(os.fsencode(tmp_path), b"caf\xe9.mp4")
    make_video(tmp_path / "a.mp4", [("red", 2.0)])
    os.rename(os.fsencode(tmp_path / "a.mp4"), odd)
    reader = open_reader(os.fsdecode(odd), probe(os.fsdecode(odd)), 32, backend="torchcodec")
    reader.reader._source().read(4096)
    assert reader.reader._source().tell() == 0
    assert reader.frames_at([0.5]).shape == (1, 3, 32, 32) and reader.fallback is None
    reader.close()


@pytest.fixture(scope="module")
def hdr_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hdr")
    return {transfer: make_hdr_video(folder / f"{transfer}.mov", transfer) for transfer in ("smpte2084", "arib-std-b67")}


@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
@pytest.mark.parametrize("transfer", ["smpte2084", "arib-std-b67"])
def test_hdr_video_is_embedded_as_an_sdr_screen_shows_it(hdr_videos, transfer, backend):
    """A phone's HDR video (PQ or HLG, BT.2020) was decoded as if it were SDR BT.709: grey and
    washed out (saturation 53-98 against 183, a mean difference of 45-66 of 255 to the SDR
    picture it shows).  Tone-mapped, it is close to that picture."""
    path = str(hdr_videos[transfer])
    frames = open_reader(path, probe(path), 64, backend=backend).frames_at([0.05, 0.45, 0.85]).float()
    source = torch.from_numpy(sdr_source_frames()[[0, 4, 8]].copy()).permute(0, 3, 1, 2)
    expected = resize_center_crop(source, 64).float()
    difference = float((frames - expected).abs().mean())
    assert difference < 24, difference
    assert saturation(frames.numpy(), 1) > 0.8 * saturation(expected.numpy(), 1)


def test_hdr_video_indexed_before_it_was_tone_mapped_is_embedded_again(hdr_videos, tmp_path, monkeypatch):
    """A library from before vmr tone-mapped HDR holds a phone's HDR video embedded grey, and
    nothing in its catalog said which video was HDR: the first index after the upgrade opens
    each unchanged video once (its header), and embeds again an HDR one whose stored frames,
    encoded again, differ; one the vmr of 2026-12-01 embedded (tone-mapped already) keeps its
    vectors (it was embedded again too: hours on an iPhone library); later runs open none."""
    import shutil
    import sqlite3

    from conftest import vmr
    from vmr_cli import frames, indexer

    folder, library = tmp_path / "v", tmp_path / "lib"
    folder.mkdir()
    shutil.copy(hdr_videos["arib-std-b67"], folder / "iphone.mov")
    shutil.copy(hdr_videos["smpte2084"], folder / "android.mov")
    make_video(folder / "sdr.mp4", [("red", 2.0)])
    with monkeypatch.context() as older:  # HLG embedded as an older vmr did, grey; PQ tone-mapped
        older.setattr(frames, "tone_map", lambda batch, transfer, primaries="bt2020", real=frames.tone_map:
                      batch if transfer == "arib-std-b67" else real(batch, transfer, primaries))
        # (the trained tiny CLIP: an untrained one's embeddings barely tell grey from tone-mapped)
        model = ROOT / "examples" / "models" / "tiny-clip"
        assert vmr_json("--library", library, "index", folder, "--model", model)["added"] == 3
    conn = sqlite3.connect(library / "catalog.db")
    assert sorted(conn.execute("SELECT CAST(path AS TEXT), transfer FROM videos")) == \
        [(str(folder / "android.mov"), "smpte2084"), (str(folder / "iphone.mov"), "arib-std-b67"),
         (str(folder / "sdr.mp4"), "")]
    before = dict(conn.execute("SELECT CAST(path AS TEXT), vectors_token FROM videos"))
    conn.execute("ALTER TABLE videos DROP COLUMN transfer")  # as the vmr before left it
    conn.execute("UPDATE meta SET value='4' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    opened = []
    monkeypatch.setattr(indexer, "file_transfer", lambda path, real=indexer.file_transfer: opened.append(path) or real(path))
    code, out, err = vmr("--library", library, "index", folder)
    assert out.startswith("added 0, updated 1, moved 0, unchanged 2, removed 0, failed 0")
    assert "note: 1 HDR video (PQ or HLG) indexed before vmr tone-mapped HDR was embedded again" in err
    assert sorted(opened) == [str(folder / "android.mov"), str(folder / "iphone.mov"), str(folder / "sdr.mp4")]
    conn = sqlite3.connect(library / "catalog.db")
    after = dict(conn.execute("SELECT CAST(path AS TEXT), vectors_token FROM videos"))
    assert sorted(conn.execute("SELECT CAST(path AS TEXT), transfer FROM videos")) == \
        [(str(folder / "android.mov"), "smpte2084"), (str(folder / "iphone.mov"), "arib-std-b67"),
         (str(folder / "sdr.mp4"), "")]
    conn.close()
    assert after[str(folder / "iphone.mov")] != before[str(folder / "iphone.mov")]
    assert after[str(folder / "android.mov")] == before[str(folder / "android.mov")]
    assert after[str(folder / "sdr.mp4")] == before[str(folder / "sdr.mp4")]
    opened.clear()
    again = vmr_json("--library", library, "index", folder)
    assert (again["unchanged"], again["updated"], again["embedded_again"]["hdr"], opened) == (3, 0, 0, [])


@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
def test_sdr_frames_are_not_touched_by_the_tone_mapping(tmp_path, backend):
    """SDR video, also 10-bit BT.2020 (a transfer that is not HDR's), is what the decoder gives."""
    import av

    from vmr_cli.frames import tone_map

    path = tmp_path / "sdr2020.mov"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=160x90:r=10:d=1",
                    "-vf", "format=yuv420p10le", "-c:v", "libx265", "-preset", "ultrafast", "-x265-params",
                    "log-level=error", "-color_primaries", "bt2020", "-color_trc", "bt2020-10",
                    "-colorspace", "bt2020nc", str(path)], check=True)
    frames = open_reader(str(path), probe(str(path)), 90, backend=backend).frames_at([0.0, 0.5])
    if backend == "pyav":
        with av.open(str(path)) as container:
            decoded = [f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(video=0)) if i in (0, 5)]
        plain = torch.from_numpy(numpy.stack(decoded)).permute(0, 3, 1, 2)[:, :, :, 35:125]
    else:
        from torchcodec.transforms import CenterCrop, Resize

        decoder = import_torchcodec().VideoDecoder(str(path), transforms=[Resize((90, 160)), CenterCrop((90, 90))])
        plain = decoder.get_frames_played_at([0.0, 0.5]).data
    assert torch.equal(frames, plain)
    assert tone_map(plain, "bt2020-10", "bt2020") is plain and tone_map(plain, None) is plain
