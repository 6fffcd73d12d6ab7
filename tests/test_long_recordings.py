"""Round 9: long recordings (a dashcam's, a lecture's, a wedding's: 1-3 hours in one file).

The files here are long in time and small in everything else (low frame rates, tiny frames),
so that each test takes seconds; what they show held on 3-hour 640x360 and 1080p files
(bench/RESULTS.md, "Long recordings").
"""

from __future__ import annotations

import subprocess

import pytest


def _read_bytes() -> int:
    """Bytes this process has read through read() and its kin so far (/proc/self/io's rchar)."""
    with open("/proc/self/io") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("rchar:"))


@pytest.fixture(scope="module")
def hour(tmp_path_factory):
    """An hour of a test pattern at 2 fps, 160x120, a key frame every 5 s: 7,200 frames, about
    20 MB, most of it frames (its MP4 header, the table of every frame, is some 100 KB)."""
    path = tmp_path_factory.mktemp("long") / "lecture.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=2", "-t", "3600",
                    "-c:v", "libx264", "-preset", "ultrafast", "-qp", "10", "-g", "10", "file:" + str(path)], check=True)
    return path


def _read_as_search(path):
    """(reader, frames, expected, bytes read) of 12 frames around three moments of path, read as a
    search reads them; ``expected``: the same frames as the index's reader (which scans) gives."""
    from vmr_cli.decode import open_reader
    from vmr_cli.probe import probe

    info = probe(str(path))
    times = [t + k * 0.5 for t in (600.2, 1800.7, 3300.1) for k in range(4)]
    index_reader = open_reader(str(path), info, 32, whole=True)
    expected = index_reader.frames_at(times)
    index_reader.close()
    reader = open_reader(str(path), info, 32)  # as search opens it
    before = _read_bytes()
    frames = reader.frames_at(times)
    read = _read_bytes() - before
    reader.close()
    return reader, frames, expected, read


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/io"), reason="needs Linux's /proc/self/io")
def test_a_search_reads_a_few_frames_of_a_long_file_without_reading_all_of_it(hour):
    """A search decodes some 10 frames around its best windows' edges.  torchcodec first scanned
    every packet of the file to build its own frame table: a search refining a moment in a
    3-hour MP4 (2.5 GB) read all of it, 1.2-1.5 s from the page cache and 13.6 s from the disk,
    per video refined.  Now a search's reader takes the container's index, and reads what the
    frames need; its frames are those the index's reader (which scans) gives."""
    reader, frames, expected, read = _read_as_search(hour)
    size = hour.stat().st_size
    assert read < size / 10, f"read {read / 1e6:.1f} MB of a {size / 1e6:.1f} MB file for {len(frames)} frames"
    assert reader.fallback is None and bool((frames == expected).all())


def test_where_seeks_land_after_the_time_a_search_lets_the_scan_decide_and_does_not_decode_from_the_start(
        hour, monkeypatch):
    """Where a seek lands after the time asked (ffmpeg's seek in some HEVC files, a container
    index that points too far), the reader seeks further back each time, and it went on back as
    far as a seek landed before the time, up to the file's start, decoding (and converting) every
    frame from there: here 11,433 frames for 12 at 10, 30 and 55 minutes.  Now it goes back 10 s
    at most, then lets torchcodec's scan decide (its own table of key frames)."""
    from torchcodec._core import ops

    seek, decoded = ops.seek_to_pts, []
    next_frame = ops.get_next_frame

    def lands_after(decoder, seconds):  # past the first minute, every seek lands near the end
        seek(decoder, 3500.0 if seconds > 60 else seconds)

    def counted(decoder):
        decoded.append(1)
        return next_frame(decoder)

    monkeypatch.setattr(ops, "seek_to_pts", lands_after)
    monkeypatch.setattr(ops, "get_next_frame", counted)
    reader, frames, expected, _read = _read_as_search(hour)
    assert reader.fallback is None and reader.reader._scanned and bool((frames == expected).all())
    assert len(decoded) < 100, f"{len(decoded)} frames decoded and converted for 12"


@pytest.fixture(scope="module")
def phone_hour(tmp_path_factory):
    """An hour whose frame times jitter by a few milliseconds, as a phone's do, with B-frames, at
    2 fps, 160x120: some 20 MB."""
    path = tmp_path_factory.mktemp("long") / "VID_20260101_120000.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=2", "-t", "3600",
                    "-vf", "settb=1/90000,setpts='(N/2+0.004*sin(N*2.3))/TB'", "-c:v", "libx264", "-preset",
                    "ultrafast", "-bf", "3", "-qp", "10", "-g", "10", "-fps_mode", "passthrough", "-enc_time_base",
                    "1/90000", "-video_track_timescale", "90000", "file:" + str(path)], check=True)
    return path


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/io"), reason="needs Linux's /proc/self/io")
def test_a_search_reads_a_few_frames_of_a_long_phone_recording_without_reading_all_of_it(phone_hour):
    """The reader without the scan trusted each frame's duration, and where the next frame did
    not begin where it said (a phone's jittering frame times with B-frames, whose decoded frames
    carry no duration) it let torchcodec scan every packet of the file first: 30 minutes of such
    a recording at 720p, 1.2 GB, read whole for each video a search refined.  Now only the
    frames' start times are used, and the file is read where the frames are."""
    reader, frames, expected, read = _read_as_search(phone_hour)
    size = phone_hour.stat().st_size
    assert read < size / 10, f"read {read / 1e6:.1f} MB of a {size / 1e6:.1f} MB file for {len(frames)} frames"
    assert reader.fallback is None and not reader.reader._scanned and bool((frames == expected).all())


def _irregular_files(folder):
    """Short files whose frames' durations do not tell where the next frame begins."""
    jitter = ["-vf", "settb=1/90000,setpts='(N/30+0.004*sin(N*2.3))/TB'", "-fps_mode", "passthrough"]
    steps = ["-vf", "settb=1/90000,setpts='(if(lt(N,90),N/30,3+(N-90)/8))/TB'", "-fps_mode", "passthrough"]
    made = {"jitter, B-frames.mp4": [*jitter, "-c:v", "libx264", "-bf", "3", "-video_track_timescale", "90000"],
            "jitter, B-frames.mov": [*jitter, "-c:v", "libx264", "-bf", "3", "-video_track_timescale", "90000"],
            "30 fps, then 8 fps.mp4": [*steps, "-c:v", "libx264", "-bf", "3", "-video_track_timescale", "90000"],
            "jitter.mkv": [*jitter, "-c:v", "libx264", "-bf", "3"],
            "jitter, HEVC open GOP.mp4": [*jitter, "-c:v", "libx265", "-x265-params", "open-gop=1:log-level=0",
                                          "-video_track_timescale", "90000"],
            "jitter.webm": [*jitter, "-c:v", "libvpx"],
            "theora.ogv": ["-c:v", "libtheora"],
            "motion jpeg.avi": ["-c:v", "mjpeg"]}
    for name, args in made.items():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=30:d=12",
                        "-g", "30", *args, "file:" + str(folder / name)], check=True)
    return sorted(folder.iterdir())


def test_a_search_reads_files_with_irregular_frame_times_without_the_scan_and_as_the_index_does(tmp_path):
    """Each of these was scanned whole for every search that refined a moment in it (the frame a
    time falls in was found by the frames' durations, which these files do not give, or give
    wrong); now each is read where the frames are, and every frame is the one the index's reader
    (which scans) gives: 40 times each, in and between frames, at the start and the middle."""
    import random

    from conftest import PHONE
    from vmr_cli.decode import open_reader
    from vmr_cli.probe import probe

    files = _irregular_files(tmp_path) + ([PHONE] if PHONE.exists() else [])
    for path in files:
        info = probe(str(path))
        rng = random.Random(0)
        # (not the last frame's slot: the scan takes a stream to end where its last frame begins
        # when frames carry no duration, and gives the frame before there)
        times = [0.0, 0.001, info.duration / 2] + [rng.uniform(0, info.duration - 0.1) for _ in range(37)]
        index_reader = open_reader(str(path), info, 32, whole=True)
        expected = index_reader.frames_at(times)
        index_reader.close()
        reader = open_reader(str(path), info, 32)
        frames = reader.frames_at(times)
        assert reader.fallback is None and not reader.reader._scanned, path.name
        wrong = [round(t, 3) for t, a, b in zip(times, frames, expected) if not bool((a == b).all())]
        assert not wrong, f"{path.name}: other frames than the index's at {wrong}"
        reader.close()


@pytest.fixture(scope="module")
def dashcam(tmp_path_factory):
    """An hour at 1 fps, 32x32 (some 100 KB): 1,800 clips."""
    path = tmp_path_factory.mktemp("long") / "dashcam.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-t", "3600", "-i", "testsrc2=size=32x32:rate=1",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "file:" + str(path)], check=True)
    return path


def test_indexing_one_long_video_says_how_far_it_is_and_the_time_left(dashcam, tiny_model, monkeypatch):
    """Progress counted videos only: a run indexing one 3-hour video said '0/1 video (dashcam.mp4
    320/5400 clips)' on a pipe, and on a terminal '0%| 0/1 [00:04<?, ?video/s, ...]', for as long
    as it ran (half an hour with ViT-B/32 on a laptop's CPU).  Now the share of the run done,
    also inside a video, and the time left."""
    import re

    from conftest import vmr
    from vmr_cli import progress

    monkeypatch.setattr(progress, "LINE_EVERY_SECONDS", 0.0)
    monkeypatch.setattr(progress, "SHOW_AFTER_SECONDS", 0.0)
    _code, _out, err = vmr("index", dashcam, "--model", tiny_model)
    inside = [line for line in err.splitlines() if line.startswith("indexing: ") and "(0/1 video" in line]
    shares = [int(re.match(r"indexing: (\d+) % \(0/1 video, dashcam\.mp4 \d+/1800 clips\), \d+ s", line).group(1))
              for line in inside]
    assert shares and shares == sorted(shares) and any(0 < share < 100 for share in shares), err[-2000:]
    assert any(re.search(r", about \d+ (s|min) left$", line) for line in inside), err[-2000:]


def test_the_bar_on_a_terminal_shows_the_share_of_the_bytes_and_the_time_left(monkeypatch):
    """On a terminal: a 3-hour file (2.4 GB) before two short ones (10 MB each), a third through
    the long one: the bar is at a third, with the time left (it was '0%| 0/3 [00:04<?, ...]')."""
    import io
    import re
    import sys

    from vmr_cli import progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    monkeypatch.setattr(progress, "SHOW_AFTER_SECONDS", 0.0)
    bar = progress.by_size([2_400_000_000, 10_000_000, 10_000_000], "indexing", "video")
    bar.within(1800, 5400)
    bar.set_postfix_str("long.mp4 1800/5400 clips")
    shown = screen.getvalue().split("\r")[-1]
    bar.close()
    assert re.fullmatch(r"indexing:  33%\|.*\| \[\d\d:\d\d<\d\d:\d\d, 0/3 video, long\.mp4 1800/5400 clips\]", shown), shown


def test_thumbnails_of_a_transport_stream_show_the_frame_on_screen_at_their_time(tmp_path):
    """A camcorder's .mts, a DVB recording, a screen recorder's .ts: each thumbnail's input was
    sought (-ss before -i) to its time, and in MPEG-TS ffmpeg's seek lands on a packet and decoding
    begins at the next key frame.  A camcorder's 3-hour .mts (a key frame every 0.48 s) had two
    of four thumbnails 0.2 and 0.4 s late; here, a key frame every 10 s, the thumbnails of a red
    moment (26.0-29.6 s) all showed the blue after it, and two of 29.0-31.0 s none at all."""
    from vmr_cli.page import thumbnails

    ts = tmp_path / "recording.mts"  # red until 30 s, then blue
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=red:s=64x48:r=25:d=40", "-vf",
                    "drawbox=c=blue:t=fill:enable='gte(t,30)'", "-c:v", "libx264", "-g", "250", "-sc_threshold", "0",
                    "-pix_fmt", "yuv420p", "-f", "mpegts", "file:" + str(ts)], check=True)

    def colours(start, end):
        shown = []
        for jpeg in thumbnails(str(ts), start, end):
            rgb = jpeg and subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-vf", "scale=1:1", "-f", "rawvideo",
                                           "-pix_fmt", "rgb24", "pipe:1"], input=jpeg, capture_output=True,
                                          check=True).stdout
            shown.append(None if not rgb else "red" if rgb[0] > rgb[2] else "blue")
        return shown

    assert colours(26.0, 29.6) == ["red"] * 4  # at 26.45, 27.35, 28.25, 29.15 s
    assert colours(29.0, 31.0) == ["red", "red", "blue", "blue"]  # at 29.25, 29.75, 30.25, 30.75 s
    assert colours(11.0, 13.0) == ["red"] * 4


@pytest.fixture(scope="module")
def camcorder(tmp_path_factory):
    """An hour as a camcorder writes it (MPEG-TS, .mts, 192-byte packets), 2 fps, 160x120, a key
    frame every 6 s: some 20 MB."""
    path = tmp_path_factory.mktemp("long") / "00001.mts"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=2", "-t", "3600",
                    "-c:v", "libx264", "-preset", "ultrafast", "-qp", "10", "-g", "12", "-f", "mpegts",
                    "-mpegts_m2ts_mode", "1", "file:" + str(path)], check=True)
    return path


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/io"), reason="needs Linux's /proc/self/io")
def test_a_search_in_a_long_transport_stream_seeks_to_each_moment(camcorder):
    """MPEG-TS is read by PyAV, which sought to the key frame before the first time asked and
    then decoded every frame up to the last: a search refining three moments of a camcorder's
    3-hour .mts (at 46 min, 1 h 37 min and 1 h 50 min) decoded an hour of video for its 12
    frames, 15-22 s at 320x180.  Now each time more than 10 s ahead is sought to."""
    reader, frames, expected, read = _read_as_search(camcorder)
    size = camcorder.stat().st_size
    assert reader.backend == "pyav" and read < size / 10, f"read {read / 1e6:.1f} MB of {size / 1e6:.1f} MB"
    assert bool((frames == expected).all())
