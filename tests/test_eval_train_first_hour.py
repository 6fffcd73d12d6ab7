"""vmr eval and vmr train as a first-time user meets them (round 8): annotation files as people
have them, a NAS's snapshots beside the videos, a finished trimmer asked for its validation.
Each test failed on the code before its fix."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, make_video, vmr, vmr_json

from vmr_cli.errors import VmrError

MODEL = ROOT / "examples" / "models" / "tiny-clip"


def test_copies_in_a_snapshot_or_a_trash_under_videos_do_not_make_ids_ambiguous(tmp_path):
    """A NAS share's '#snapshot' (a copy of every file) or a drive's '.Trash-1000' under --videos:
    vmr index passes them over, but the ids were looked up there too, so every id of the share was
    'ambiguous' (write './clip' or '#snapshot/daily/clip')."""
    from vmr_cli.evaluate import video_files

    videos = tmp_path / "share"
    make_video(videos / "clip.mp4", [("green", 2.0)])
    make_video(videos / "#snapshot" / "daily" / "clip.mp4", [("green", 2.0)])
    make_video(videos / ".Trash-1000" / "files" / "other.mp4", [("red", 2.0)])
    make_video(videos / "other.mp4", [("red", 2.0)])
    assert video_files(str(videos), ["clip", "other.mp4"]) == {"clip": str(videos / "clip.mp4"),
                                                               "other.mp4": str(videos / "other.mp4")}
    (tmp_path / "ann.txt").write_text("clip 0 2##a green screen\nother 0 2##a red screen\n")
    report = vmr_json("eval", tmp_path / "ann.txt", "--videos", videos, "--model", MODEL)
    assert report["n_queries"] == 2
    with pytest.raises(VmrError, match="1 annotated video not found"):  # only there: as index sees it
        video_files(str(videos), ["#snapshot/daily/clip"])
