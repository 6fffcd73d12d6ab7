"""Round 10: files as cameras and apps write them, as they sit on a user's disk.

Stand-ins made with ffmpeg, small and short: a screen recording's variable frame rate (a frame
only when the screen changes), an OBS/browser recording that was never finished (Matroska or WebM
with no duration), a dashcam's file cut off by the power (no moov atom).
"""

from __future__ import annotations

import subprocess

import pytest

from conftest import vmr, vmr_json


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def screen_recording(path, shown, size="64x48"):
    """A screen recorder's file: one frame each time the screen changes, ``shown`` [(colour,
    seconds on screen)], the last one held to the end (variable frame rate, no B-frames, a
    600 Hz time base: as iOS's and Android's recorders write)."""
    folder = path.parent
    listing = folder / (path.name + ".txt")
    lines = []
    for k, (colour, seconds) in enumerate(shown):
        image = folder / f"{path.name}.{k}.png"
        _ffmpeg("-f", "lavfi", "-i", f"color=c={colour}:size={size}", "-frames:v", "1", image)
        lines += [f"file '{image}'", f"duration {seconds}"]
    lines.append(f"file '{image}'")  # (the concat demuxer's way to give the last one its duration)
    listing.write_text("\n".join(lines) + "\n")
    _ffmpeg("-f", "concat", "-safe", "0", "-i", listing, "-fps_mode", "vfr", "-c:v", "libx264", "-bf", "0",
            "-pix_fmt", "yuv420p", "-video_track_timescale", "600", path)
    for k in range(len(shown)):
        (folder / f"{path.name}.{k}.png").unlink()
    listing.unlink()
    return path


@pytest.mark.parametrize("backend,whole", [("torchcodec", True), ("torchcodec", False), ("pyav", True)])
def test_the_last_seconds_of_a_screen_recording_are_the_frames_shown_there(tmp_path, backend, whole):
    """A screen recording that held one screen for a minute has a low average frame rate (4
    frames in 65 s: 0.06 fps); times were kept a frame of that rate (16 s) before the end, so its
    last 16 s were read as the frame shown 16 s before the end: the blue screen of its last 3 s
    was never indexed, nor searched.  Each time now gets the frame on screen there."""
    from vmr_cli.decode import open_reader
    from vmr_cli.probe import probe

    path = screen_recording(tmp_path / "RPReplay_Final1733130000.MP4", [("white", 2), ("red", 60), ("blue", 3)])
    info = probe(str(path))
    assert info.fps < 0.1 and info.duration > 64.9
    reader = open_reader(str(path), info, 16, backend=backend, whole=whole)
    frames = reader.frames_at([1.0, 30.0, 62.5, 64.0, info.duration]).float().mean((2, 3))
    reader.close()
    colours = ["blue" if b > 200 and r < 50 else "red" if r > 200 and b < 50 else "white" if min(r, g, b) > 200
               else "?" for r, g, b in frames.tolist()]
    assert colours == ["white", "red", "blue", "blue", "blue"]


def unfinished_recording(path, fmt: str, codecs, seconds=6, keep=0.9):
    """A recording never finished: written as a stream (no duration in its header, no cues) and
    cut off at ``keep`` of its bytes, as OBS's Matroska or FLV is after a crash or a power cut,
    and as a browser's MediaRecorder writes WebM (video calls, screen capture)."""
    data = subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size=96x64:rate=10:d={seconds}",
                           "-f", "lavfi", "-i", f"sine=d={seconds}", *codecs, "-g", "10", "-f", fmt, "-"],
                          check=True, capture_output=True).stdout
    path.write_bytes(data[:int(len(data) * keep)])
    return path


UNFINISHED = [("obs.mkv", "matroska", ["-c:v", "libx264", "-c:a", "aac"]),
              ("meet.webm", "webm", ["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus"]),
              ("obs.flv", "flv", ["-c:v", "libx264", "-c:a", "aac"])]


def test_a_recording_that_was_never_finished_is_indexed_to_its_last_frame(tiny_model, tmp_path):
    """OBS records to Matroska so that a crash leaves a playable file; a browser's recorder writes
    WebM with no length at all.  Such files say no duration, and were failed as 'no duration:
    zero frames or a still image'; the video's packets say where it ends."""
    from vmr_cli.probe import probe

    folder = tmp_path / "recordings"
    folder.mkdir()
    for name, fmt, codecs in UNFINISHED:
        path = unfinished_recording(folder / name, fmt, codecs)
        info = probe(str(path))
        assert 4.0 < info.duration < 6.1 and info.fps == 10, (name, info)
    summary = vmr_json("index", folder, "--model", tiny_model)
    assert summary["failed"] == [] and summary["added"] == 3, summary
    found = vmr_json("search", "a test pattern", "--in", folder / "obs.mkv")
    assert found["results"] and all(r["end"] <= 6.1 for r in found["results"])


@pytest.mark.parametrize("name,fmt,codecs", UNFINISHED[:2])
def test_a_search_reads_a_recording_that_was_never_finished_with_torchcodec(tmp_path, name, fmt, codecs):
    """torchcodec opens a file for a search without its scan, which needs the file's length: one
    that says none was read by PyAV instead, with a note at every search of it."""
    from vmr_cli.decode import open_reader
    from vmr_cli.probe import probe

    path = unfinished_recording(tmp_path / name, fmt, codecs)
    info = probe(str(path))
    times = [0.3, 1.0, 2.55, 4.0]
    index_reader = open_reader(str(path), info, 32, whole=True)
    expected = index_reader.frames_at(times)
    index_reader.close()
    reader = open_reader(str(path), info, 32)
    frames = reader.frames_at(times)
    reader.close()
    assert reader.fallback is None and bool((frames == expected).all())


def test_a_dashcams_file_cut_off_by_the_power_says_so(tiny_model, tmp_path):
    """A dashcam writes an MP4/MOV's header (its moov atom) when a file ends: the file it was
    writing when the power went has none.  It failed as 'Invalid data found when processing
    input' (ffprobe's last line), which does not say that the file is whole but unfinished."""
    folder = tmp_path / "DCIM" / "Movie"
    folder.mkdir(parents=True)
    whole = folder / "2026_1202_100000_001.MOV"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:d=3", "-f", "lavfi", "-i", "sine=d=3",
            "-c:v", "libx264", "-c:a", "pcm_s16le", whole)
    data = whole.read_bytes()
    (folder / "2026_1202_100300_002.MOV").write_bytes(data[:data.rfind(b"moov") - 4])  # the moov comes last
    summary = vmr_json("index", tmp_path / "DCIM", "--model", tiny_model, expect=1)
    assert summary["added"] == 1
    (failed,) = summary["failed"]
    assert failed["path"].endswith("_002.MOV") and failed["recorded"]
    assert failed["error"].startswith("moov atom not found: the recording was never finished"), failed
    code, out, err = vmr("index")  # recorded: said once, then counted as failed before
    assert "1 file that failed before" in out and "never finished" not in err
    (folder / "noise.MOV").write_bytes(b"\x00\x01" * 3000)  # (no moov either, but no MP4 at all)
    summary = vmr_json("index", tmp_path / "DCIM", expect=1)
    assert [f["error"] for f in summary["failed"]] == ["Invalid data found when processing input"]
