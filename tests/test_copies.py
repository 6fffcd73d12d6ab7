"""Copies in one library, as a search and vmr eval see them (review round: copies)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from conftest import make_video, vmr_json

MODEL = Path(__file__).resolve().parents[1] / "examples" / "models" / "tiny-clip"  # trained: finds "a red screen"


def _y4m(path, colour):
    """A raw .y4m (every frame the same size): 4 s black, 20 s of colour, 4 s black; two such
    files have one size and the same first and last 256 KiB, and differ between."""
    subprocess.run(["ffmpeg", "-v", "error", "-y"] + sum(
        (["-f", "lavfi", "-t", str(t), "-i", f"color=c={c}:size=160x120:rate=10"]
         for c, t in (("black", 4), (colour, 20), ("black", 4))), []) + [
        "-filter_complex", "[0:v][1:v][2:v]concat=n=3:v=1[v]", "-map", "[v]", "-pix_fmt", "yuv420p",
        "-fflags", "+bitexact", str(path)], check=True)
    return path


def test_files_of_one_fingerprint_but_another_middle_are_both_searched(tiny_model, tmp_path):
    """'vmr index' embeds each as itself (their middles differ); a search took them for copies
    and showed only one: the red video's moments were never found ('blue.y4m (+1 copy)')."""
    from vmr_cli.scan import fingerprint

    folder = tmp_path / "v"
    folder.mkdir()
    red, blue = _y4m(folder / "red.y4m", "red"), _y4m(folder / "blue.y4m", "blue")
    assert fingerprint(str(red), red.stat().st_size) == fingerprint(str(blue), blue.stat().st_size)
    summary = vmr_json("index", folder, "--model", tiny_model)
    assert summary["added"] == 2 and summary["copies"] == []
    for query in ("a red screen", "a blue screen"):
        results = vmr_json("search", query)["results"]
        assert {r["video"] for r in results} == {str(red), str(blue)} and all(r["copies"] == [] for r in results)


def test_a_copy_answers_when_the_file_shown_changed_since_it_was_indexed(tiny_model, tmp_path):
    """README: 'when one is deleted or changed, the other answers alone'.  The changed one (other
    content now, not indexed again yet) was still shown, with the moments of what it held."""
    folder = tmp_path / "v"
    make_video(folder / "a.mp4", [("red", 4.0), ("blue", 4.0)])
    make_video(folder / "other.mp4", [("green", 6.0)])
    (folder / "deeper").mkdir()
    shutil.copy2(folder / "a.mp4", folder / "deeper" / "a.mp4")
    summary = vmr_json("index", folder, "--model", tiny_model)
    assert [c["path"] for c in summary["copies"]] == [str(folder / "deeper" / "a.mp4")]
    assert vmr_json("search", "red")["results"][0]["video"] == str(folder / "a.mp4")
    make_video(folder / "a.mp4", [("green", 5.0)])  # edited in place, not indexed since
    results = vmr_json("search", "red")["results"]
    assert results[0]["video"] == str(folder / "deeper" / "a.mp4")


def test_eval_counts_a_moment_shown_under_a_copy_of_the_annotated_video(tmp_path):
    """Two annotated copies: a search shows their moments once, under one of them; corpus eval
    scored the other's queries as a wrong video (R5@0.5 0.75 became 0.25 on the example videos)."""
    folder = tmp_path / "v"
    folder.mkdir()
    _y4m(folder / "a.y4m", "red")
    make_video(folder / "b.mp4", [("blue", 8.0)])
    shutil.copy2(folder / "a.y4m", folder / "a_copy.y4m")
    annotations = tmp_path / "ann.jsonl"
    annotations.write_text("".join(json.dumps({"qid": i, "query": "a red screen", "vid": vid,
                                               "duration": 28.0, "relevant_windows": [[4.0, 24.0]]}) + "\n"
                                   for i, vid in enumerate(("a", "a_copy"))))
    report = vmr_json("--library", tmp_path / "lib", "eval", annotations, "--videos", folder, "--model", MODEL)
    assert report["single"]["R5@0.5"] == 1.0, report
    assert report["corpus"]["R5@0.5"] == 1.0, report  # was 0.5: a_copy's query found a.mp4, "another video"
