"""Copies in one library, as a search and vmr eval see them (review round: copies)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from conftest import make_video, vmr, vmr_json

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


# -- copies after a search (round 7): export, play and show of a logged search --------------------

def _searched_with_a_copy(tiny_model, tmp_path):
    """A library of a.mp4, its copy deeper/b.mp4 and another video, searched: result 1 is a.mp4
    (+1 copy).  Returns (folder, a, b)."""
    folder = tmp_path / "v"
    a = make_video(folder / "a.mp4", [("red", 4.0), ("blue", 4.0)])
    make_video(folder / "other.mp4", [("green", 6.0)])
    b = folder / "deeper" / "b.mp4"
    b.parent.mkdir()
    shutil.copy2(a, b)
    assert [c["path"] for c in vmr_json("index", folder, "--model", tiny_model)["copies"]] == [str(b)]
    result = vmr_json("search", "red")["results"][0]
    assert (result["video"], result["copies"]) == (str(a), [str(b)])
    return folder, a, b


def _export_one(tmp_path, out, expect=0):
    """vmr export --clip 1 --json into tmp_path/out: (document, stderr)."""
    code, stdout, err = vmr("export", "--clip", "1", "--out", tmp_path / out, "--json", expect=expect)
    assert "Traceback" not in err
    return (json.loads(stdout) if stdout else None), err


def test_export_cuts_the_copy_when_the_file_a_search_showed_is_deleted(tiny_model, tmp_path):
    """The user deletes the duplicate the search showed (a.mp4, +1 copy), then exports: it said
    'source no longer exists' (and, after 'vmr index', the same) though b.mp4 holds the moment."""
    folder, a, b = _searched_with_a_copy(tiny_model, tmp_path)
    a.unlink()
    for when in ("before", "after"):  # 'vmr index' since: a.mp4's entry is gone from the catalog
        if when == "after":
            assert vmr_json("index", folder)["removed"] == 1
        done, err = _export_one(tmp_path, when)
        [item] = done["exported"]
        assert (item["video"], item["source"]) == (str(b), str(b)), when
        assert os.path.getsize(item["path"]) > 0 and done["skipped"] == []
        [line] = [line for line in err.splitlines() if str(b) in line]
        assert line == (f"warning: result 1: {a} no longer exists; its copy {b}, unchanged since this search, "
                        "is used instead"), when
        assert item["warning"] == line[len("warning: "):]
        code, out, err = vmr("export", "--clip", "1", "--out", tmp_path / f"{when}-table")  # the table's run
        assert "/b_0h00m" in out and f"its copy {b}" in err


def test_export_follows_a_copy_that_moved_since_the_search(tiny_model, tmp_path):
    """The file shown deleted, its copy moved, 'vmr index' run (it records the move): export said
    'source no longer exists ... run vmr index and search again', just after the user had."""
    folder, a, b = _searched_with_a_copy(tiny_model, tmp_path)
    a.unlink()
    assert vmr_json("index", folder)["removed"] == 1
    moved = folder / "kept" / "b.mp4"
    moved.parent.mkdir()
    os.rename(b, moved)
    assert vmr_json("index", folder)["moved"] == 1
    done, err = _export_one(tmp_path, "out")
    assert done["exported"][0]["video"] == str(moved) and done["skipped"] == []
    assert f"warning: result 1: {a} no longer exists; its copy {moved}, unchanged since this search" in err


def test_play_plays_the_copy_when_the_file_a_search_showed_is_gone(tiny_model, tmp_path, monkeypatch):
    from vmr_cli import player

    folder, a, b = _searched_with_a_copy(tiny_model, tmp_path)
    played = []
    monkeypatch.setattr(player, "find_player", lambda choice="auto": ("mpv", "/usr/bin/mpv"))
    monkeypatch.setattr(player, "run", lambda kind, argv: played.append(argv))
    a.unlink()
    code, out, err = vmr("play", "1")
    assert played[-1][-1] == str(b) and f"rank 1: {b} " in err and f"its copy {b}" in err
    vmr("index", folder)
    vmr("play", "1")
    assert played[-1][-1] == str(b)


def test_a_copy_is_cut_instead_of_the_file_a_search_showed_when_that_changed(tiny_model, tmp_path):
    """a.mp4 edited in place after the search: export cut its changed footage with 'changed since
    this search', though its copy b.mp4 still holds what the search saw."""
    folder, a, b = _searched_with_a_copy(tiny_model, tmp_path)
    make_video(a, [("green", 10.0)])
    done, err = _export_one(tmp_path, "cuts")
    assert done["exported"][0]["video"] == str(b) and f"{a} changed since this search" not in err
    assert (f"warning: result 1: {a} is not as this search saw it; its copy {b}, unchanged since this "
            "search, is used instead") in err.splitlines()


def test_without_an_unchanged_copy_export_says_what_it_said_before(tiny_model, tmp_path):
    """A copy that changed since the search is not used (nor one that is gone): the shown file's
    error or warning stands, as it does for a search logged before copies were logged."""
    from vmr_cli.library import Library

    folder, a, b = _searched_with_a_copy(tiny_model, tmp_path)
    make_video(a, [("green", 10.0)])
    with open(b, "ab") as handle:  # the copy changed too
        handle.write(b"\0" * 10)
    done, err = _export_one(tmp_path, "changed")
    assert done["exported"][0]["video"] == str(a) and f"{a} changed since this search (modified" in err
    assert "its copy" not in err
    a.unlink()
    _done, err = _export_one(tmp_path, "gone", expect=1)
    assert f"source no longer exists: {a} (moved or deleted since this search?" in err
    # Two searches with a copy there unchanged, the first as an older vmr logged it (no copies)
    make_video(b, [("red", 4.0), ("blue", 4.0)])
    vmr("index", folder)
    b_copy = folder / "deeper" / "b2.mp4"
    shutil.copy2(b, b_copy)
    vmr("index", folder)
    older, newer = (vmr_json("search", "red") for _ in range(2))
    assert older["results"][0]["copies"] == newer["results"][0]["copies"] == [str(b_copy)]
    library = Library()
    library.catalog._conn.execute("UPDATE searches SET stats=json_remove(stats, '$.copies_of_results') WHERE id=?",
                                  (older["search_id"],))
    library.catalog._conn.commit()
    library.close()
    b.unlink()
    code, out, err = vmr("export", "--clip", "1", "--search", older["search_id"], "--out", tmp_path / "older",
                         expect=1)
    assert f"source no longer exists: {b} (moved or deleted since this search?" in err and "Traceback" not in err
    vmr("export", "--clip", "1", "--search", newer["search_id"], "--out", tmp_path / "newer")
    assert [p.name.startswith("b2_") for p in (tmp_path / "newer").iterdir()] == [True]  # the copy's cut


def test_show_keeps_what_the_search_showed_and_lists_the_copy_that_answers(tiny_model, tmp_path):
    """After the shown file was deleted and 'vmr index' ran, show listed no copies (its entry gone,
    nothing named the copy) and warned 'search again'; it names the copy export and play use."""
    folder, a, b = _searched_with_a_copy(tiny_model, tmp_path)
    a.unlink()
    vmr("index", folder)
    [result] = [r for r in vmr_json("show")["results"] if r["rank"] == 1]
    assert (result["video"], result["copies"]) == (str(a), [str(b)])
    assert f"its copy {b}, unchanged since this search, is used instead" in result["warning"]
    code, out, err = vmr("show")
    assert f"{a}  (+1 copy: --json lists them)" in out and f"its copy {b}" in err


def test_a_search_in_a_folder_lists_the_copies_outside_it_and_export_falls_back_to_them(tiny_model, tmp_path):
    """vmr search --in deeper showed b.mp4 with no copies (only the rows under --in were grouped):
    its log kept none, and once b.mp4 was deleted export said 'source no longer exists' though
    a.mp4 holds the moment."""
    folder, a, b = _searched_with_a_copy(tiny_model, tmp_path)
    result = vmr_json("search", "red", "--in", folder / "deeper")["results"][0]
    assert (result["video"], result["copies"]) == (str(b), [str(a)])
    b.unlink()
    done, err = _export_one(tmp_path, "out")
    assert [item["source"] for item in done["exported"]] == [str(a)] and done["skipped"] == []
