"""Bad input files: each is indexed correctly or skipped with a recorded reason, never a traceback.

Empty, random-bytes, truncated files and broken links are in test_index.py
(test_corrupt_files_are_recorded_and_the_run_goes_on); TESTING.md lists every case.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, make_video, vmr, vmr_json, vmr_subprocess

from vmr_cli import indexer
from vmr_cli.library import Library


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def failures(summary) -> dict:
    return {os.path.basename(f["path"]): f["error"] for f in summary["failed"]}


def test_media_that_is_not_a_video_is_skipped_with_its_reason(tiny_model, tmp_path):
    folder = tmp_path / "v"
    make_video(folder / "good.mp4", [("red", 2.0)])
    ffmpeg("-f", "lavfi", "-t", "2", "-i", "sine=frequency=440", "-c:a", "aac", folder / "audio.mp4")
    for ext, name in (("png", "png.mp4"), ("jpg", "jpeg.mp4")):
        ffmpeg("-f", "lavfi", "-i", "color=red:size=64x48", "-frames:v", "1", folder / f"still.{ext}")
        os.rename(folder / f"still.{ext}", folder / name)
    ffmpeg("-f", "lavfi", "-t", "2", "-i", "color=red:size=64x48:rate=10", "-frames:v", "0",
           "-c:v", "libx264", folder / "zero frames.mp4")
    summary = vmr_json("index", folder, "--model", tiny_model, expect=1)
    failed = failures(summary)
    assert failed == {
        "audio.mp4": "no video stream (audio-only, image or not a media file)",
        "png.mp4": "a still image (png), not a video",
        "jpeg.mp4": "a still image (mjpeg), not a video",
        "zero frames.mp4": "no video stream (audio-only, image or not a media file)",
    }
    assert summary["added"] == 1 and summary["clips"] == 1
    assert vmr_json("status")["failed"] == 4
    # A photo named on purpose: ffmpeg's image2 gave it a 0.04 s duration, so it was a 'video'
    ffmpeg("-f", "lavfi", "-i", "color=red:size=64x48", "-frames:v", "1", tmp_path / "photo.jpg")
    named = vmr_json("index", tmp_path / "photo.jpg", expect=1)
    assert failures(named) == {"photo.jpg": "a still image (mjpeg), not a video"}
    # An animated WebP (a sticker, a saved GIF) is a still image to ffmpeg 5-7: it says which
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=5:d=2", "-c:v", "libwebp_anim", "-loop", "0",
           tmp_path / "sticker.webp")
    ffmpeg("-f", "lavfi", "-i", "color=red:size=64x48", "-frames:v", "1", "-c:v", "libwebp", tmp_path / "still.webp")
    decodes = subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "sticker.webp"), "-f", "null", "-"],
                             capture_output=True).returncode == 0
    named = vmr_json("index", tmp_path / "sticker.webp", tmp_path / "still.webp", expect=1)
    expected = {"still.webp": "a still image (webp), not a video"}
    if not decodes:
        expected["sticker.webp"] = "an animated WebP, which this ffmpeg reads as one image and cannot decode"
    assert failures(named) == expected
    # A motion-JPEG stream is read by the same demuxer as one JPEG, frame after frame: a video
    ffmpeg("-f", "lavfi", "-t", "2", "-i", "testsrc2=size=320x240:rate=10", "-c:v", "mjpeg", "-f", "mjpeg",
           tmp_path / "camera.mjpeg")
    assert vmr_json("index", tmp_path / "camera.mjpeg")["added"] == 1
    os.utime(folder / "audio.mp4")  # changed: tried again, reported again in the table form
    code, out, err = vmr("index", folder, expect=1)
    assert err.strip() == (f"failed: {folder / 'audio.mp4'}: "
                           "no video stream (audio-only, image or not a media file)")


def test_a_failed_files_reason_holds_no_piece_of_its_odd_name(tiny_model, tmp_path):
    """ffprobe starts its error with the file name, which vmr cuts off; a name that is not UTF-8
    or holds a newline was compared line by line in decoded text and kept a garbled piece:
    'caf\\xe9.mp4: file:/.../caf\ufffd.mp4: Invalid data ...', 'evil\\nname.mp4: name.mp4: ...'."""
    folder = os.path.join(os.fsencode(str(tmp_path)), b"v")
    os.mkdir(folder)
    for name in (b"caf\xe9.mp4", b"evil\nname.mp4", b"plain.mp4"):
        with open(os.path.join(folder, name), "wb") as junk:
            junk.write(b"not a video at all")
    summary = vmr_json("index", os.fsdecode(folder), "--model", tiny_model, expect=1)
    assert len(summary["failed"]) == 3
    assert {f["error"] for f in summary["failed"]} == {"Invalid data found when processing input"}


@pytest.mark.parametrize("ext, codecs", [("mkv", ["-c:v", "libx264", "-c:a", "libvorbis"]),
                                         ("webm", ["-c:v", "libvpx-vp9", "-c:a", "libopus"])])
def test_a_matroska_video_with_longer_sound_lasts_as_long_as_its_picture(tiny_model, tmp_path, ext, codecs):
    """Matroska and WebM keep a stream's length in a DURATION tag: the container's, the sound's,
    was taken.  4 s of picture with 60 s of sound was refused as 'a damaged or crafted file'."""
    folder = tmp_path / "v"
    folder.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=4", "-f", "lavfi", "-i",
           "sine=duration=60", "-pix_fmt", "yuv420p", *codecs, folder / f"talk.{ext}")
    summary = vmr_json("index", folder, "--model", tiny_model)
    assert summary["added"] == 1 and summary["failed"] == [], summary
    (row,) = Library(str(vmr_json("status")["library"])).catalog.videos()
    assert 3.9 < row["duration"] < 4.2 and summary["clips"] <= 3  # not the 30 clips of 60 s


def test_extreme_sizes_variable_frame_rate_and_rotation(tiny_model, tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    ffmpeg("-f", "lavfi", "-t", "3", "-i", "color=blue:size=16x16:rate=10", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", folder / "tiny16.mp4")
    ffmpeg("-f", "lavfi", "-t", "1", "-i", "testsrc2=size=7680x4320:rate=2", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", folder / "8k.mp4")
    # 2 s at 20 fps, then 4 fps: 21.75 s in all
    ffmpeg("-f", "lavfi", "-t", "6", "-i", "testsrc2=size=160x120:rate=20",
           "-vf", "setpts='if(lt(N,40),N/20,2+(N-40)/4)/TB'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", folder / "vfr.mp4")
    make_video(folder / "phone.mp4", [("green", 2.0)], size="320x180", rotate=90)
    summary = vmr_json("index", folder, "--model", tiny_model)
    assert summary["failed"] == [] and summary["added"] == 4
    lib = Library()
    rows = {os.path.basename(v["path"]): v for v in lib.catalog.videos()}
    assert (rows["tiny16.mp4"]["width"], rows["tiny16.mp4"]["n_clips"]) == (16, 2)
    assert (rows["8k.mp4"]["width"], rows["8k.mp4"]["height"], rows["8k.mp4"]["n_clips"]) == (7680, 4320, 1)
    assert rows["vfr.mp4"]["n_clips"] == 11 and 21.3 < rows["vfr.mp4"]["duration"] < 21.9
    phone = rows["phone.mp4"]
    assert (phone["width"], phone["height"], phone["rotation"]) == (180, 320, 90)  # as displayed
    assert all(v["codec"] == "h264" for v in rows.values())  # schema 2 keeps the codec
    lib.close()
    found = vmr_json("search", "a blue screen", "--top-k", "20", "--exhaustive")
    assert {os.path.basename(r["video"]) for r in found["results"]} == set(rows)


def test_three_hour_video_indexes_in_bounded_memory(tiny_model, tmp_path):
    """3 h at 1 fps, 32x32: 5400 clips; the indexer keeps memory far below a full decode."""
    folder = tmp_path / "v"
    folder.mkdir()
    ffmpeg("-f", "lavfi", "-t", "10800", "-i", "color=green:size=32x32:rate=1", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", folder / "long.mp4")
    script = ("import resource, sys\n"
              "from vmr_cli.cli import cli\n"
              "try:\n    cli(sys.argv[1:])\n"
              "finally:\n"
              "    print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", script, "--library", str(tmp_path / "lib"), "index",
                           str(folder), "--model", tiny_model, "--json"],
                          cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.returncode == 0, done.stderr
    assert '"clips": 5400' in done.stdout
    maxrss_mb = int(done.stderr.rsplit("maxrss", 1)[1]) / 1024
    assert maxrss_mb < 2000, maxrss_mb  # about 900 MB here: interpreter, torch, model, decoder


def test_unreadable_file_is_recorded_and_the_run_goes_on(tiny_model, tmp_path):
    folder = tmp_path / "v"
    make_video(folder / "good.mp4", [("red", 2.0)])
    make_video(folder / "secret.mp4", [("blue", 2.0)])
    os.chmod(folder / "secret.mp4", 0)
    done = vmr_subprocess(tmp_path / "lib", "index", folder, "--model", tiny_model, "--json")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    summary = json.loads(done.stdout)
    assert failures(summary) == {"secret.mp4": "Permission denied"}
    assert summary["added"] == 1


def test_symlink_loops_are_recorded(tiny_model, tmp_path):
    folder = tmp_path / "v"
    make_video(folder / "good.mp4", [("red", 2.0)])
    os.symlink("self.mp4", folder / "self.mp4")
    os.symlink("b.mp4", folder / "a.mp4")
    os.symlink("a.mp4", folder / "b.mp4")
    os.symlink(".", folder / "folder loop")  # symlinked folders are never entered
    summary = vmr_json("index", folder, "--model", tiny_model, expect=1)
    assert failures(summary) == {name: "symbolic link loop" for name in ("self.mp4", "a.mp4", "b.mp4")}
    assert summary["added"] == 1


def _patch_stat(mp, before=None, after=None):
    """Run before(path) / after(path) around the indexer's re-stat, between decode and commit."""
    real = indexer._stat

    def stat(path):
        if before:
            before(path)
        st = real(path)
        if after:
            after(path)
        return st

    mp.setattr(indexer, "_stat", stat)


def test_file_that_changes_while_being_indexed_is_retried(tiny_model, tmp_path):
    folder = tmp_path / "v"
    make_video(folder / "a.mp4", [("red", 2.0)])
    make_video(folder / "b.mp4", [("blue", 2.0)])
    with pytest.MonkeyPatch.context() as mp:
        _patch_stat(mp, before=lambda p: p.endswith("a.mp4") and os.utime(p, ns=(1, 1)))
        summary = vmr_json("index", folder, "--model", tiny_model, expect=1)
    assert failures(summary) == {"a.mp4": indexer.CHANGED} and summary["added"] == 1
    assert [f["recorded"] for f in summary["failed"]] == [False]
    again = vmr_json("index", folder)
    assert (again["added"], again["unchanged"], again["failed"]) == (1, 1, [])


def test_a_file_moved_away_and_back_during_an_index_is_read_next_time(tiny_model, tmp_path):
    """A folder renamed and renamed back while an index ran: its file was recorded as failed with
    its unchanged size and time, so it was never read again; an indexed one lost its vectors."""
    folder = tmp_path / "v"
    make_video(folder / "a.mp4", [("red", 2.0)])
    make_video(folder / "b.mp4", [("blue", 2.0)])
    vmr_json("index", folder / "b.mp4", "--model", tiny_model)
    lib = Library()
    b_before = lib.catalog.video_by_path(str(folder / "b.mp4"))
    lib.close()
    (folder / "b.mp4").write_bytes((folder / "b.mp4").read_bytes() + b"\0")  # changed: to be updated

    def before(path):  # a.mp4 away at the check, b.mp4 given a new time
        if path.endswith("a.mp4"):
            os.rename(path, path + ".away")
        elif path.endswith("b.mp4"):
            os.utime(path, ns=(1, 1))

    def after(path):  # a.mp4 back, as it was
        if path.endswith("a.mp4"):
            os.rename(path + ".away", path)

    with pytest.MonkeyPatch.context() as mp:
        _patch_stat(mp, before=before, after=after)
        summary = vmr_json("index", folder, expect=1)
    assert failures(summary) == {"a.mp4": indexer.CHANGED, "b.mp4": indexer.CHANGED}
    lib = Library()
    assert lib.catalog.video_by_path(str(folder / "a.mp4")) is None  # nothing recorded
    b_now = lib.catalog.video_by_path(str(folder / "b.mp4"))
    assert (b_now["status"], b_now["vectors_token"]) == ("ok", b_before["vectors_token"])  # kept
    lib.close()
    again = vmr_json("index", folder)
    assert (again["added"], again["updated"], again["failed_before"], again["failed"]) == (1, 1, 0, [])
    assert vmr_json("status")["consistent"]


def test_a_deleted_folder_of_failed_files_is_not_kept_as_an_unmounted_drive(tiny_model, tmp_path):
    """Entries of files that failed made their deleted folder look like an unmounted drive: kept
    (and counted as failed) for good."""
    folder = tmp_path / "v"
    make_video(folder / "good.mp4", [("red", 2.0)])
    (folder / "junk").mkdir()
    for name in ("a.mp4", "b.mp4"):
        (folder / "junk" / name).write_bytes(b"not a video")
    assert len(vmr_json("index", folder, "--model", tiny_model, expect=1)["failed"]) == 2
    shutil.rmtree(folder / "junk")
    again = vmr_json("index", folder)
    assert (again["removed"], again["kept"]) == (2, [])
    assert vmr_json("status")["failed"] == 0


def test_file_that_vanishes_while_being_indexed(tiny_model, tmp_path):
    folder = tmp_path / "v"
    for name, colour in (("a.mp4", "red"), ("b.mp4", "green"), ("c.mp4", "blue")):  # not copies
        make_video(folder / name, [(colour, 2.0)])
    # a.mp4 is gone before the re-stat; b.mp4 right after it (the fingerprint then fails).
    with pytest.MonkeyPatch.context() as mp:
        _patch_stat(mp, before=lambda p: p.endswith("a.mp4") and os.unlink(p),
                    after=lambda p: p.endswith("b.mp4") and os.unlink(p))
        summary = vmr_json("index", folder, "--model", tiny_model, expect=1)
    assert failures(summary) == {"a.mp4": indexer.CHANGED, "b.mp4": indexer.CHANGED}
    assert summary["added"] == 1
    again = vmr_json("index", folder)
    assert again["removed"] == 0 and again["failed"] == []  # nothing was recorded for them
    assert vmr_json("status")["consistent"]


def test_ffprobe_missing_is_one_clear_error(tiny_model, tmp_path, monkeypatch):
    make_video(tmp_path / "v" / "a.mp4", [("red", 2.0)])
    bin_dir = tmp_path / "bin"  # a PATH without ffmpeg or ffprobe
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    code, out, err = vmr("index", tmp_path / "v", "--model", tiny_model, expect=1)
    assert err.strip() == ("Error: ffprobe not found on PATH; install ffmpeg "
                           "(e.g. 'apt-get install ffmpeg' or 'brew install ffmpeg')")


def test_decode_thread_errors_reach_the_caller(tiny_model, tmp_path, monkeypatch):
    """An unexpected error while decoding used to die in the thread: exit 0, nothing indexed."""
    make_video(tmp_path / "v" / "a.mp4", [("red", 2.0)])

    def broken(path, *args):
        raise MemoryError("decoder exploded")

    monkeypatch.setattr(indexer, "probe", broken)
    with pytest.raises(MemoryError):
        vmr("index", tmp_path / "v", "--model", tiny_model, expect=None)


def test_pickle_only_model_folder_is_refused(tiny_model, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model, folder)
    os.unlink(folder / "model.safetensors")
    (folder / "pytorch_model.bin").write_bytes(b"not loaded: a pickle could run code here")
    make_video(tmp_path / "v" / "a.mp4", [("red", 2.0)])
    code, out, err = vmr("index", tmp_path / "v", "--model", folder, expect=1)
    assert err.startswith(f"Error: model folder {folder} holds only pickle weights (pytorch_model.bin)")
    assert "safetensors" in err and len(err.strip().splitlines()) == 1



def test_per_chunk_clip_measures_match_the_whole_video():
    """The indexer keeps per-clip histograms and motion, chunk by chunk, not thumbnails;
    the shots and motion must equal those computed over the whole video's thumbnails.
    Adjacent clips share their boundary frame, so chunks overlap by one frame."""
    import torch
    from vmr_models.bam import motion_energy, shot_ids, shot_ids_from_histograms

    g = torch.Generator().manual_seed(0)
    n = 257  # clips; the video's frames are 2n+1 thumbnails: first and middle of each, then the last
    scenes = torch.randint(0, 256, (n // 5 + 1, 3, 1, 1), generator=g, dtype=torch.uint8)
    frames = scenes.repeat_interleave(11, 0)[:2 * n + 1].expand(2 * n + 1, 3, indexer.THUMB, indexer.THUMB)
    frames = frames.contiguous()
    frames[7::13] = 255 - frames[7::13]  # something moves now and then
    step = 32  # clips per chunk
    parts = [indexer.clip_measures(frames[2 * k0:2 * min(n, k0 + step) + 1]) for k0 in range(0, n, step)]
    hists = torch.cat([h for h, _ in parts])
    motion = torch.cat([m for _, m in parts])
    first, middle, last = frames[0:2 * n:2], frames[1:2 * n:2], frames[2::2]
    shots = shot_ids_from_histograms(hists[:, 0], hists[:, 1], hists[:, 2])
    assert hists.shape[0] == n and torch.equal(shots, shot_ids(first, middle, last))
    assert torch.allclose(motion, motion_energy(first, last))
    assert shots[-1] > 20  # the case has many cuts
    assert hists.element_size() * hists[0].numel() < 1000  # bytes kept per clip


def test_a_reader_that_closes_the_pipe_ends_vmr_quietly(tmp_path):
    """`vmr status | head`: once the reader is gone vmr stops, with no 'Error: Broken pipe' line."""
    proc = subprocess.Popen([sys.executable, "-m", "vmr_cli", "--library", str(tmp_path / "lib"), "status"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()  # before vmr writes anything: its first line meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == "", err


def test_a_full_device_under_the_output_is_not_told_as_the_library_s(tiny_model, tmp_path):
    """``vmr status --json > /dev/full`` said 'no space left on device; ... (what was committed is
    kept)', as if the library's disk were full."""
    vmr("index", make_video(tmp_path / "v" / "red.mp4", [("red", 1.0)]), "--model", tiny_model)
    for args in (["status", "--json"], ["search", "red"], ["status"]):
        with open("/dev/full", "w") as full:
            proc = subprocess.run([sys.executable, "-m", "vmr_cli", *args], stdout=full, stderr=subprocess.PIPE,
                                  cwd=ROOT, text=True)
        assert proc.returncode == 1
        assert proc.stderr.splitlines()[-1] == "Error: cannot write the output: No space left on device", proc.stderr


def _an_unreadable_shard(tiny_model, tmp_path):
    """A library of v/a.mp4 and v/b.mp4 whose shard of a.mp4 cannot be read (as after a 'sudo
    vmr index'): (videos folder, library, that shard)."""
    folder = tmp_path / "v"
    make_video(folder / "a.mp4", [("red", 2.0)])
    make_video(folder / "b.mp4", [("blue", 2.0)])
    library = tmp_path / "lib"
    assert vmr_subprocess(library, "index", folder, "--model", tiny_model).returncode == 0
    lib = Library(str(library))
    row = lib.catalog.video_by_path(str(folder / "a.mp4"))
    lib.close()
    shard = library / "shards" / f"{row['id']}.safetensors"
    os.chmod(shard, 0)
    return folder, library, shard


def test_forget_goes_on_beside_a_shard_that_cannot_be_read(tiny_model, tmp_path):
    """Clearing what a killed forget left first ran the whole library check, which stops at a
    shard it cannot read ('sudo vmr index') once the FAISS cache lags: every forget, a typo's too,
    then failed, where forget is the way out."""
    folder, library, shard = _an_unreadable_shard(tiny_model, tmp_path)
    os.unlink(library / "appearance.faiss")  # the cache lags: an index killed before its save
    typo = vmr_subprocess(library, "forget", folder / "typo.mp4")
    assert typo.returncode == 1 and typo.stderr.startswith("Error: the library holds nothing at or under"), \
        typo.stderr
    done = vmr_subprocess(library, "forget", folder / "b.mp4")
    assert done.returncode == 0 and done.stdout.startswith("forgot 1 entry"), done.stderr
    os.chmod(shard, 0o644)


def test_a_shard_that_cannot_be_read_is_not_taken_for_damage(tiny_model, tmp_path):
    """After a 'sudo vmr index', the shards it wrote are root's (mode 0600): the user's next index
    took each for missing, deleted it and re-embedded (or, with the source unreadable too, left the
    video unsearchable); now index stops with the reason and search skips just that video."""
    folder, library, shard = _an_unreadable_shard(tiny_model, tmp_path)
    lib = Library(str(library))
    token = lib.catalog.video_by_path(str(folder / "a.mp4"))["vectors_token"]
    lib.close()
    done = vmr_subprocess(library, "index", folder)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().startswith(f"Error: cannot read {shard} (Permission denied)"), done.stderr
    found = vmr_subprocess(library, "search", "blue", "--json")
    assert found.returncode == 0, found.stderr
    assert {r["video"] for r in json.loads(found.stdout)["results"]} == {str(folder / "b.mp4")}
    assert f"skipped {folder / 'a.mp4'}: cannot read" in found.stderr
    os.unlink(library / "appearance.faiss")  # a cache to rebuild from the shards: the same answer
    found = vmr_subprocess(library, "search", "blue", "--json")
    assert found.returncode == 0, found.stderr
    assert {r["video"] for r in json.loads(found.stdout)["results"]} == {str(folder / "b.mp4")}
    assert f"skipped {folder / 'a.mp4'}: cannot read" in found.stderr
    os.chmod(shard, 0o644)
    assert shard.exists()
    lib = Library(str(library))
    assert lib.catalog.video_by_path(str(folder / "a.mp4"))["vectors_token"] == token
    lib.close()
    again = json.loads(vmr_subprocess(library, "index", folder, "--json").stdout)
    assert (again["unchanged"], again["updated"]) == (2, 0)


def test_a_name_that_is_not_utf8_is_read_by_torchcodec(tiny_model, tmp_path):
    """torchcodec takes file names as UTF-8 only: every file whose name holds other bytes fell
    back to PyAV, with a note, at index and at every search that decoded it."""
    folder = tmp_path / "v"
    make_video(folder / "a.mp4", [("red", 3.0), ("blue", 3.0)])
    odd = os.path.join(os.fsencode(folder), b"caf\xe9.mp4")
    os.rename(os.fsencode(folder / "a.mp4"), odd)
    summary = vmr_json("index", folder, "--model", tiny_model)
    assert (summary["added"], summary["fallbacks"]) == (1, [])
    found = vmr_json("search", "blue")
    assert found["results"][0]["video"] == os.fsdecode(odd)
    assert found["stats"]["frames_decoded"] > 0 and "fallbacks" not in found["stats"], found["stats"]
