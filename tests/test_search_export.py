"""vmr search and vmr export through the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from itertools import pairwise

import pytest
from conftest import ROOT, TEST_MEDIA, ffprobe_duration, make_video, vmr, vmr_json

from vmr_cli.library import Library


@pytest.fixture
def indexed(videos, tiny_model):
    vmr_json("index", videos, "--model", tiny_model)
    return videos


def test_search_json_shape_and_logging(indexed):
    found = vmr_json("search", "a red screen", "--top-k", "5")
    assert found["query"] == "a red screen" and isinstance(found["search_id"], int)
    assert 1 <= len(found["results"]) <= 5
    durations = {"red_then_blue.mp4": 6.0, "green.mp4": 4.0, "pattern.mp4": 5.0}
    for i, r in enumerate(found["results"]):
        assert r["rank"] == i + 1
        assert os.path.isabs(r["video"])
        assert 0 <= r["start"] < r["end"] <= durations[os.path.basename(r["video"])] + 1e-6
    scores = [r["score"] for r in found["results"]]
    assert scores == sorted(scores, reverse=True)
    stats = found["stats"]
    # Each video's best window had its edges refined where they lie inside the video; a still
    # stretch that runs to the video's end (this random model's best for "red" is the blue half)
    # has one edge to refine, a still video from start to end none.
    assert stats["videos_considered"] == 3 and stats["clips_verified"] >= 2
    assert stats["frames_encoded"] == stats["frames_decoded"] > 0
    # Logged, so export can name it.
    logged = Library().catalog.search(found["search_id"])
    assert logged["query"] == "a red screen"
    assert [(r["rank"], r["video"], r["start"]) for r in logged["results"]] == \
        [(r["rank"], r["video"], r["start"]) for r in found["results"]]


def test_moment_boundaries_come_from_frames_not_the_clip_grid(indexed):
    found = vmr_json("search", "anything", "--top-k", "20", "--exhaustive")
    edges = [x for r in found["results"] for x in (r["start"], r["end"])]
    assert any(abs(x / 2 - round(x / 2)) > 1e-6 for x in edges)


def test_search_table_and_bad_queries(indexed):
    code, out, err = vmr("search", "a red screen")
    assert out.splitlines()[0].split()[:2] == ["rank", "start"]
    assert any(name in out for name in ("red_then_blue.mp4", "green.mp4", "pattern.mp4"))
    for bad in ["", "   ", "\n\t"]:
        code, out, err = vmr("search", bad, expect=1)
        assert "query is empty" in err
    long = vmr_json("search", "door " * 2000)
    assert long["results"]
    assert long["stats"]["query_note"].startswith("only the first 30 of the query's 2000 words were used")
    code, out, err = vmr("search", "the red door " * 20)  # past the tiny model's 32 tokens: said
    assert 'note: only the first 30 of the query\'s 60 words were used (up to "the red door")' in err, err
    assert "query_note" not in vmr_json("search", "a red screen")["stats"]
    one_word = vmr_json("search", "x" * 2500)["stats"]["query_note"]  # vmr's own cut, inside one word
    assert one_word == ('only the first 2000 of the query\'s 2500 characters were used (up to "…' + "x" * 30
                        + '"): vmr reads at most 2000 characters of a query'), one_word
    weird = vmr_json("search", "чёрная кошка 🐈 \x07 猫")
    assert weird["query"] and "\x07" not in weird["query"]


def test_min_score_filters(indexed):
    everything = vmr_json("search", "red", "--min-score", "-1", "--top-k", "50")["results"]
    cut = sorted(r["score"] for r in everything)[len(everything) // 2]
    some = vmr_json("search", "red", "--min-score", str(cut), "--top-k", "50")["results"]
    assert some and all(r["score"] >= cut for r in some) and len(some) < len(everything)
    none = vmr_json("search", "red", "--min-score", "100")["results"]
    assert none == []


def test_export_exact_durations_refusal_and_force(indexed, tmp_path):
    found = vmr_json("search", "red", "--top-k", "3", "--exhaustive")
    out = tmp_path / "cuts"
    out.mkdir()
    done = vmr_json("export", "--clip", "1", "2", "--out", out)
    assert [e["rank"] for e in done["exported"]] == [1, 2]
    umask = os.umask(0)
    os.umask(umask)
    for item, result in zip(done["exported"], found["results"]):
        assert os.path.exists(item["path"]) and os.path.dirname(item["path"]) == str(out)
        assert os.stat(item["path"]).st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not 0600
        assert abs(ffprobe_duration(item["path"]) - (result["end"] - result["start"])) <= 0.1
    before = os.path.getmtime(done["exported"][0]["path"])
    again = vmr_json("export", "--clip", "1", "--out", out)["exported"][0]  # cut before: not again
    assert again["path"] == done["exported"][0]["path"] and again["existing"]
    assert os.path.getmtime(done["exported"][0]["path"]) == before
    first = done["exported"][0]["path"]
    os.rename(first, first + ".kept")
    with open(first, "wb") as mine:  # a file of the user's under that name: never overwritten
        mine.write(b"the user's own file")
    again = vmr_json("export", "--clip", "1", "--out", out)["exported"][0]["path"]
    assert again == first.replace(".mp4", "_2.mp4")  # the next free name
    with open(first, "rb") as mine:
        assert mine.read() == b"the user's own file"
    os.unlink(again)
    os.replace(first + ".kept", first)
    forced = vmr_json("export", "--clip", "1", "--out", out, "--force")["exported"][0]["path"]
    assert forced == done["exported"][0]["path"]
    logged = Library().catalog.operations("export")
    assert len(logged) == 4 and logged[0]["summary"]["exported"][0]["path"] == done["exported"][0]["path"]
    copied = vmr_json("export", "--clip", "1", "--out", out, "--copy")["exported"][0]
    assert copied["path"] != done["exported"][0]["path"] and ffprobe_duration(copied["path"]) > 0
    assert not [p for p in os.listdir(out) if p.startswith(".vmr-export-")]


def test_export_errors(indexed, tmp_path):
    code, _, err = vmr("export", "--clip", "1", expect=1)
    assert "no search" in err
    vmr_json("search", "red", "--top-k", "2")
    code, _, err = vmr("export", "--clip", "9", "--out", tmp_path, expect=1)
    assert "no result 9" in err
    code, _, err = vmr("export", "--clip", "1", "--out", tmp_path / "absent" / "deeper", expect=1)
    assert "does not exist, nor its parent" in err
    code, _, err = vmr("export", "--search", "99", "--clip", "1", "--out", tmp_path, expect=1)
    assert "no search with id 99" in err


def test_export_of_a_source_that_moved(indexed, tmp_path):
    found = vmr_json("search", "red", "--top-k", "1")
    source = found["results"][0]["video"]
    os.rename(source, source + ".moved")
    code, _, err = vmr("export", "--clip", "1", "--out", tmp_path, expect=1)
    assert "no longer exists" in err


def test_export_names_from_hostile_file_names(tiny_model, tmp_path, monkeypatch):
    folder = tmp_path / "hostile"
    names = ["-rf.mp4", "with space's \"quotes\".mp4", "new\nline.mp4"]
    for i, name in enumerate(names):
        make_video(folder / name, [("orange", 2.5 + i / 10)])  # not copies (searched once)
    summary = vmr_json("index", folder, "--model", tiny_model)
    assert summary["added"] == 3
    found = vmr_json("search", "orange", "--top-k", "10")
    assert {os.path.basename(r["video"]) for r in found["results"]} == set(names)
    code, out, _ = vmr("search", "orange", "--top-k", "10")
    assert "new\\nline.mp4" in out  # one row per result, even for a newline in the name
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    done = vmr_json("export", "--out", out_dir, "--clip")["exported"]
    assert len(done) == len(found["results"])
    assert all(os.path.exists(e["path"]) and "\n" not in os.path.basename(e["path"]) for e in done)
    monkeypatch.chdir(folder)  # a name starting with '-' given as is: click reads '-r', '-f'; say it is a file
    for command in ("index", "forget"):
        code, out, err = vmr(command, "-rf.mp4", expect=2)
        assert err.strip().endswith(f"Error: No such option '-r'. (-rf.mp4 is a file here: file names go after "
                                    f"'--': cli {command} -- NAME)"), err  # (cli: vmr run in-process)
    assert json.loads(vmr("forget", "--json", "--", "-rf.mp4")[1])["videos"] == 1
    code, out, err = vmr("index", "--", "-nothing.mp4", expect=1)  # after '--': no hint, it is read as a name
    assert "go after '--'" not in err


def test_commands_before_any_index(tmp_path):
    code, _, err = vmr("search", "x", expect=1)
    assert "no vmr library" in err
    status = vmr_json("status")
    assert (status["videos"], status["clips"], status["encoder"]) == (0, 0, None)
    code, out, _ = vmr("--help")
    for command in ("index", "search", "export", "status"):
        assert command in out


def test_search_skips_a_video_that_vanished_and_says_so(indexed):
    os.unlink(indexed / "green.mp4")
    code, out, err = vmr("search", "green", "--top-k", "20")
    assert "warning: skipped" in err and "green.mp4" in err and "no longer exists" in err
    found = vmr_json("search", "green", "--top-k", "20")
    assert found["results"] and all(not r["video"].endswith("green.mp4") for r in found["results"])
    assert [s["video"].rsplit("/", 1)[1] for s in found["stats"]["skipped"]] == ["green.mp4"]


def test_ctrl_c_says_what_a_second_run_goes_on_from(indexed, tiny_model, monkeypatch):
    """Exit 130 always; only a command whose work a second run resumes says to run it again."""
    from vmr_cli import indexer, search

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(search.Searcher, "search", interrupt)
    _code, out, err = vmr("search", "a red screen", expect=130)
    assert err.strip() == "Error: interrupted" and out == ""
    monkeypatch.setattr(indexer, "index_paths", interrupt)
    _code, _out, err = vmr("index", indexed, expect=130)
    assert "what was committed is kept, run the command again to resume" in err


def test_a_moment_at_the_end_of_a_video_is_still_at_least_a_second():
    """A window may reach half a frame step past the video's end; it is cut to the video before
    it is measured (a 0.82 s moment at the end of a 9.32 s video passed as long enough)."""
    from vmr_cli.search import MIN_MOMENT, _at_least

    for window, duration in (((8.5, 9.82), 9.32), ((8.16, 9.5), 9.32), ((-0.4, 0.5), 9.32), ((0.0, 0.3), 0.6)):
        start, end = _at_least(window, min(MIN_MOMENT, duration), duration)
        assert 0.0 <= start < end <= duration + 1e-9, (window, start, end)
        assert end - start >= min(MIN_MOMENT, duration) - 1e-9, (window, start, end)


def test_exhaustive_search_of_a_video_shorter_than_its_grid_step(tiny_model, tmp_path):
    """A one-frame 0.1 s video has no point of the 4-per-second grid: exhaustive search and eval
    ended in a traceback ("need at least one array to stack")."""
    make_video(tmp_path / "v" / "blink.mp4", [("red", 0.1)])
    vmr_json("index", tmp_path / "v", "--model", tiny_model)
    found = vmr_json("search", "a red screen", "--exhaustive")
    assert len(found["results"]) == 1 and 0 <= found["results"][0]["start"] < found["results"][0]["end"] <= 0.1 + 1e-6


REAL_FFMPEG = shutil.which("ffmpeg")
MOVIE_OGG = "usr/share/forensics-samples/original-files/movie2/movie-hello.ogg"


def _probe(path) -> tuple[int, float]:
    """(video frames, duration) of a cut, by ffprobe."""
    import json
    import subprocess

    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                          "stream=nb_read_packets:format=duration", "-of", "json", "file:" + str(path)],
                         capture_output=True, check=True).stdout
    data = json.loads(out)
    return int((data.get("streams") or [{}])[0].get("nb_read_packets", 0)), float(data["format"].get("duration", 0))


def test_export_of_an_mpeg_ts_recording_holds_the_moment(tiny_model, tmp_path):
    """Seeking before -i lands on no frame in such a .ts (ffmpeg's default key-frame spacing), and
    ffmpeg exits 0: the cut was an empty file, listed as exported (and as '(cut before)' after)."""
    import subprocess

    (tmp_path / "v").mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:d=12", "-c:v",
                    "libx264", "-preset", "ultrafast", "-f", "mpegts", str(tmp_path / "v" / "screen.ts")], check=True)
    vmr_json("index", tmp_path / "v", "--model", tiny_model)
    found = vmr_json("search", "a test pattern", "--top-k", "2")["results"]
    done = vmr_json("export", "--out", tmp_path / "out")
    assert [item["rank"] for item in done["exported"]] == [r["rank"] for r in found] and not done["skipped"]
    for item, result in zip(done["exported"], found):
        frames, seconds = _probe(item["path"])
        assert frames > 0 and abs(seconds - (result["end"] - result["start"])) < 0.3, (item, frames, seconds)


def _ffmpeg_wrapper(tmp_path, monkeypatch, script: str):
    """A fake ffmpeg first on PATH: the shell snippet, then the real ffmpeg (found once, before
    any fake: a second wrapper must not call the first)."""
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(f"#!/bin/sh\n{script}\nexec {REAL_FFMPEG} \"$@\"\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")


def test_export_cuts_without_sound_what_ffmpeg_cannot_read_the_audio_of(indexed, tmp_path, monkeypatch):
    found = vmr_json("search", "a red screen", "--top-k", "1")["results"]
    _ffmpeg_wrapper(tmp_path, monkeypatch, 'case "$*" in *0:a:0*) echo "Error while decoding stream #0:1: Invalid '
                    'argument" >&2; echo "    Last message repeated 460 times" >&2; exit 69;; esac')
    code, out, err = vmr("export", "1", "--out", tmp_path / "out")
    item = out.strip().splitlines()
    assert len(item) == 1 and _probe(item[0].split("  ")[-1])[0] > 0
    assert (f"warning: result 1: {found[0]['video']}: cut without its sound: ffmpeg could not read the audio "
            "(Error while decoding stream #0:1: Invalid argument)") in err, err
    code, out, err = vmr("export", "1", "--out", tmp_path / "out")  # listed as cut before: not warned again
    assert out.rstrip().endswith("(cut before)") and "warning" not in err, err
    # a failure that passes (an I/O error once) is not blamed on the audio: the cut keeps its sound
    mark = tmp_path / "failed once"
    _ffmpeg_wrapper(tmp_path, monkeypatch, f'if [ ! -e "{mark}" ]; then : > "{mark}"; '
                    'echo "Input/output error" >&2; exit 1; fi')
    code, out, err = vmr("export", "1", "--out", tmp_path / "out2")
    assert "warning" not in err and mark.exists()


def test_a_cut_that_fails_is_skipped_with_its_reason_and_the_others_are_cut(indexed, tmp_path, monkeypatch):
    """One source ffmpeg cannot cut ended the whole export, with 'Last message repeated N times'
    for a reason and the cuts already made unreported."""
    found = vmr_json("search", "a red screen", "--top-k", "3")["results"]
    bad = os.path.basename(found[1]["video"])
    _ffmpeg_wrapper(tmp_path, monkeypatch, f'case "$*" in *{bad}*) echo "Invalid data found when processing input" '
                    '>&2; echo "    Last message repeated 3 times" >&2; exit 1;; esac')
    code, out, err = vmr("export", "--out", tmp_path / "out", expect=1)
    cut = [r["rank"] for r in found if os.path.basename(r["video"]) != bad]
    assert [int(line.split()[0]) for line in out.strip().splitlines()] == cut
    assert f"skipped: result 2: ffmpeg could not cut {found[1]['video']}: Invalid data found when processing input" \
        in err, err
    # ffmpeg exits 0 but writes no frame (a full disk's broken file looks so): never exported, never "cut before"
    _ffmpeg_wrapper(tmp_path, monkeypatch, 'for last; do :; done; head -c 300 /dev/zero > "${last#file:}"; exit 0')
    code, out, err = vmr("export", "1", "--out", tmp_path / "out2", expect=1)
    assert err.strip().endswith("the cut holds no video frame") and os.listdir(tmp_path / "out2") == []
    # --json when the one cut named fails: the same JSON (the reason in skipped), not an Error line alone
    code, out, err = vmr("export", "1", "--out", tmp_path / "out2", "--json", expect=1)
    done = json.loads(out)
    assert done["exported"] == [] and [s["rank"] for s in done["skipped"]] == [1]
    assert done["skipped"][0]["error"].endswith("the cut holds no video frame") and done["folder"] == str(tmp_path / "out2")
    assert "skipped: result 1: " in err


def test_search_stats_always_name_the_decoder(indexed):
    """stats.decoder was missing when nothing was decoded (--refine 0, a search served from the
    frame cache), though it is documented as always there: null then."""
    first = vmr_json("search", "a red screen")["stats"]
    assert first["frames_decoded"] > 0 and first["decoder"]
    undecoded = vmr_json("search", "a red screen", "--refine", "0")["stats"]
    assert undecoded["frames_decoded"] == 0 and undecoded["decoder"] is None
    again = vmr_json("search", "a red screen")["stats"]
    assert again["frames_decoded"] == 0 and "decoder" in again and again["decoder"] is None


def test_search_warns_of_a_result_whose_file_changed_since_it_was_indexed(indexed):
    """A file shortened since it was indexed gave moments past its end, with no warning (a
    deleted one is reported as skipped)."""
    make_video(indexed / "green.mp4", [("green", 1.0)])
    code, out, err = vmr("search", "a green screen", "--top-k", "9")
    assert "green.mp4" in out  # kept, as export keeps such results
    assert f"warning: {indexed / 'green.mp4'}: changed since it was indexed" in err and "'vmr index' updates it" in err
    stats = vmr_json("search", "a green screen", "--top-k", "9")["stats"]
    assert [c["video"] for c in stats["changed"]] == [str(indexed / "green.mp4")]
    vmr("index")
    assert "changed" not in vmr_json("search", "a green screen", "--top-k", "9")["stats"]


def test_a_stream_copy_that_lost_video_frames_is_not_kept(indexed, tmp_path, monkeypatch):
    """An Ogg/Theora stream copy held a few of the moment's video frames while its audio ran the
    whole length, and passed as right (exit 0, no warning): the length read was the audio's."""
    found = vmr_json("search", "a test pattern", "--top-k", "9")["results"]
    rank = next(r["rank"] for r in found if r["video"].endswith("pattern.mp4") and r["end"] - r["start"] >= 1.5)
    drop = "'noise=drop=gte(n\\,3)'"  # a copy that keeps 3 video packets, and all of the audio
    _ffmpeg_wrapper(tmp_path, monkeypatch, f'case "$*" in *"-c copy"*) {REAL_FFMPEG} "$@" || exit $?; '
                    'for last; do :; done; f="${last#file:}"; '
                    f'{REAL_FFMPEG} -v error -y -i "file:$f" -map 0 -c copy -bsf:v {drop} "file:$f.x.mp4" '
                    '&& mv "$f.x.mp4" "$f"; exit $?;; esac')
    code, out, err = vmr("export", rank, "--copy", "--out", tmp_path / "out", expect=1)
    assert "the cut holds only 3 of the moment's" in err and "export it without --copy" in err, err
    assert os.listdir(tmp_path / "out") == []
    vmr("export", rank, "--out", tmp_path / "out")  # an exact cut is not held to a stream copy's frames


def test_a_good_stream_copy_costs_no_count_of_the_source(indexed, tmp_path, monkeypatch):
    """Counting the source's frames took two ffprobe runs before every copy, doubling the cost of
    a good one; it is asked only of a copy holding fewer frames than its rate implies."""
    from vmr_cli import cut

    counted = []
    monkeypatch.setattr(cut, "_frames_in", lambda *args: counted.append(args) or None)
    found = vmr_json("search", "a test pattern", "--top-k", "9")["results"]
    rank = next(r["rank"] for r in found if r["video"].endswith("pattern.mp4") and r["end"] - r["start"] >= 1.5)
    vmr("export", rank, "--copy", "--out", tmp_path / "out")
    assert len(os.listdir(tmp_path / "out")) == 1 and counted == []


@pytest.mark.skipif(not (TEST_MEDIA / MOVIE_OGG).exists(), reason="test media not installed (TEST_MEDIA.md)")
def test_a_stream_copy_of_an_ogg_theora_file(tiny_model, tmp_path):
    (tmp_path / "v").mkdir()
    shutil.copy(TEST_MEDIA / MOVIE_OGG, tmp_path / "v")
    vmr_json("index", tmp_path / "v", "--model", tiny_model)
    vmr_json("search", "a screen", "--top-k", "1")
    code, out, err = vmr("export", "--copy", "--out", tmp_path / "out", expect=1)
    assert "video frames; a stream copy of this file loses frames: export it without --copy" in err, err


@pytest.mark.skipif(not (TEST_MEDIA / MOVIE_OGG).exists(), reason="test media not installed (TEST_MEDIA.md)")
def test_a_cut_keeps_sound_that_decodes_though_some_packets_do_not(tmp_path):
    """The Ogg file's thousands of empty audio packets are each a decoding error: ffmpeg exited 69
    (its -max_error_rate) though all of the sound decoded, and the cut and the page's preview
    were made without it ("ffmpeg could not read the audio")."""
    from vmr_cli.cut import cut
    from vmr_cli.preview import preview_codec

    target = tmp_path / "cut.mp4"
    assert cut(REAL_FFMPEG, str(TEST_MEDIA / MOVIE_OGG), 1.0, 2.0, str(target), preview_codec(64)) is None
    sound = json.loads(subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a", "-show_entries",
                                       "stream=duration", "-of", "json", str(target)],
                                      capture_output=True, check=True).stdout)["streams"]
    assert len(sound) == 1 and float(sound[0]["duration"]) > 1.9, sound
    # sound none of which decodes: ffmpeg, told to go on, leaves it out and exits 0: said
    bad = tmp_path / "bad sound.mkv"
    subprocess.run([REAL_FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=d=4:s=64x48:r=10", "-f", "lavfi",
                    "-i", "sine=d=4", "-c:v", "libx264", "-c:a", "aac", "-bsf:a", "noise=amount=1", str(bad)],
                   check=True)
    silent = ("cut without sound: none could be decoded in this moment (the file's sound may end before it, or be "
              "unreadable there)")
    assert cut(REAL_FFMPEG, str(bad), 1.0, 2.0, str(target), preview_codec(64)) == silent
    short = tmp_path / "short sound.mp4"  # sound that ends before the moment: not ffmpeg failing to read it
    subprocess.run([REAL_FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=d=6:s=64x48:r=10", "-f", "lavfi",
                    "-i", "sine=d=1", "-c:v", "libx264", "-g", "10", "-c:a", "aac", str(short)], check=True)
    assert cut(REAL_FFMPEG, str(short), 3.0, 2.0, str(target), preview_codec(64)) == silent
    copied = tmp_path / "copy.mp4"  # a stream copy kept the sound's last packet: the picture began 3 s in
    assert cut(REAL_FFMPEG, str(short), 4.0, 1.5, str(copied), ["-c", "copy", "-avoid_negative_ts", "make_zero"]) \
        == silent
    streams = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,start_time:"
                                         "format=duration", "-of", "json", str(copied)],
                                        capture_output=True, check=True).stdout)
    assert [s["codec_type"] for s in streams["streams"]] == ["video"] and float(streams["format"]["duration"]) < 2.5
    gop = tmp_path / "camera.ts"  # sound all along, a key frame every 10 s: a copy's picture starts after
    subprocess.run([REAL_FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=d=60:s=64x48:r=10", "-f", "lavfi",
                    "-i", "sine=d=60", "-c:v", "libx264", "-g", "100", "-c:a", "aac", str(gop)], check=True)
    assert cut(REAL_FFMPEG, str(gop), 18.5, 30.0, str(tmp_path / "copy.ts"),  # its sound: that is no reason
               ["-c", "copy", "-avoid_negative_ts", "make_zero"]) is None  # to drop it (a first check did)


def test_refined_edges_never_leave_two_results_of_a_video_overlapping(tiny_model, tmp_path, monkeypatch):
    """Overlapping windows of a video were removed before their edges were refined; refining could
    then move two onto one moment (IoU 0.55-0.63 with a trained trimmer and --refine 100)."""
    from vmr_cli import search
    from vmr_models.moment_head import temporal_iou

    make_video(tmp_path / "v" / "reds.mp4", [("red", 3.0), ("blue", 3.0)] * 3 + [("red", 3.0)])
    vmr_json("index", tmp_path / "v", "--model", tiny_model)
    before = vmr_json("search", "a red screen", "--top-k", "20", "--per-video", "5", "--refine", "0")["results"]
    assert max(sum(r["video"] == v for r in before) for v in {r["video"] for r in before}) >= 2
    monkeypatch.setattr(search, "_refined", lambda window, edges, sims: (0.0, 2.0))  # all onto one span
    found = vmr_json("search", "a red screen", "--top-k", "20", "--per-video", "5", "--refine", "20")["results"]
    for a in found:
        for b in found:
            if a is not b and a["video"] == b["video"]:
                assert temporal_iou((a["start"], a["end"]), (b["start"], b["end"])) <= 0.5, (a, b)
    assert [r["score"] for r in found] == sorted((r["score"] for r in found), reverse=True)


def test_max_videos_is_filled_when_long_videos_hold_the_best_clips(tmp_path):
    """The coarse stage took the best 256 clips and the videos among them: two long videos could
    fill all 256, and a search asked to consider 4 videos considered 2."""
    for i, name in enumerate(("long1.mp4", "long2.mp4")):  # none a copy of another (searched once)
        make_video(tmp_path / "v" / name, [("red", 300.0 + i)], size="32x32", fps=1)
    for i in range(3):
        make_video(tmp_path / "v" / f"short{i}.mp4", [("blue", 2.0 + i)], size="32x32", fps=1)
    vmr_json("index", tmp_path / "v", "--model", ROOT / "examples" / "models" / "tiny-clip")  # sees colours
    stats = vmr_json("search", "a red screen", "--max-videos", "4", "--refine", "0")["stats"]
    assert stats["videos_considered"] == 4


# -- exact cuts start with the frame on screen at their start ----------------------------------
TIMED = ("format=gbrp,geq=r='20+20*mod(floor(T*10+0.001),10)':g='20+20*mod(floor(T+0.0001),10)'"
         ":b='20+40*floor(T/10)'")  # the colour says when the frame was made: R tenths, G seconds, B tens


def _timed_video(path, rate, seconds, *args, vf=TIMED, audio=None):
    """A small video whose frames' colour encodes their time (TIMED); ``audio``: a lavfi source."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [REAL_FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", f"color=c=black:s=64x48:r={rate}:d={seconds}"]
    cmd += ["-f", "lavfi", "-i", audio] if audio else []
    subprocess.run([*cmd, "-vf", vf, "-c:v", "libx264", "-pix_fmt", "yuv420p", *args, "file:" + str(path)], check=True)
    return path


def _shown(path) -> list[tuple[float, float]]:
    """(time, the source time its colour says) of each frame of a cut."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = []
        for frame in container.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")
            h, w, _ = rgb.shape
            r, g, b = rgb[h // 4:3 * h // 4, w // 4:3 * w // 4].reshape(-1, 3).mean(0)
            frames.append((float(frame.pts * stream.time_base),
                           round((b - 20) / 40) * 10 + round((g - 20) / 20) + round((r - 20) / 20) / 10))
    return sorted(frames)


def _export_moments(tmp_path, moments) -> list[str]:
    """Exact cuts of (video, start, end), logged as a search's results, through vmr export."""
    lib = Library(None, create=True)
    rows = [{"rank": i + 1, "video": str(video), "start": start, "end": end, "score": 0.9 - i / 10}
            for i, (video, start, end) in enumerate(moments)]
    search_id = lib.catalog.log_search("a moment", "tiny", {}, {}, rows)
    lib.close()
    done = vmr_json("export", "--search", search_id, "--out", tmp_path / "out")
    assert not done["skipped"] and len(done["exported"]) == len(moments), done
    return [item["path"] for item in done["exported"]]


def test_an_exact_cut_of_hdr_video_stays_hdr_in_ten_bits(tmp_path, monkeypatch):
    """A phone's HDR video (an iPhone's HLG, an Android's PQ: 10-bit HEVC) was cut to 8-bit
    H.264, which bands its gradients: now 10-bit HEVC with the source's colour tags, tagged hvc1
    as Apple's players want; with an ffmpeg without libx265, 8-bit H.264 and a warning that says so."""
    from conftest import make_hdr_video

    from vmr_cli import export

    (tmp_path / "v").mkdir()
    hlg = make_hdr_video(tmp_path / "v" / "iphone.mov", "arib-std-b67")
    pq = make_hdr_video(tmp_path / "v" / "android.mov", "smpte2084")
    sdr = make_video(tmp_path / "v" / "sdr.mp4", [("red", 1.0)])

    def stream(path) -> dict:
        fields = "codec_name,codec_tag_string,pix_fmt,color_transfer,color_primaries,color_space"
        found = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", f"stream={fields}",
                                "-of", "json", path], capture_output=True, check=True).stdout
        return json.loads(found)["streams"][0]

    hdr = {"codec_name": "hevc", "codec_tag_string": "hvc1", "pix_fmt": "yuv420p10le",
           "color_primaries": "bt2020", "color_space": "bt2020nc"}
    cuts = _export_moments(tmp_path, [(hlg, 0.0, 0.5), (pq, 0.2, 0.7), (sdr, 0.0, 0.5)])
    assert [stream(path) for path in cuts[:2]] == [dict(hdr, color_transfer="arib-std-b67"),
                                                   dict(hdr, color_transfer="smpte2084")]
    assert (stream(cuts[2])["codec_name"], stream(cuts[2])["pix_fmt"]) == ("h264", "yuv420p")
    assert abs(ffprobe_duration(cuts[1]) - 0.5) < 0.15
    monkeypatch.setattr(export, "has_encoder", lambda ffmpeg, name: name != "libx265")
    lib = Library(None)
    search_id = lib.catalog.log_search("a moment", "tiny", {}, {}, [
        {"rank": 1, "video": str(pq), "start": 0.0, "end": 0.5, "score": 0.9}])
    lib.close()
    done = vmr_json("export", "--search", search_id, "--out", tmp_path / "out8")["exported"][0]
    assert {k: v for k, v in stream(done["path"]).items() if k != "codec_tag_string"} == \
        {"codec_name": "h264", "pix_fmt": "yuv420p", "color_transfer": "smpte2084", "color_primaries": "bt2020",
         "color_space": "bt2020nc"}
    assert done["warning"] == (f"result 1: {pq}: cut in 8-bit H.264, still HDR: this ffmpeg has no libx265 for a "
                               "10-bit HEVC cut, so smooth gradients may show bands")


def _changes(frames) -> list[tuple[float, float]]:
    """Where a cut's picture changes: (time, what it shows from then)."""
    return [frames[0]] + [b for a, b in pairwise(frames) if b[1] != a[1]]


def test_an_exact_cut_of_sparse_frames_starts_with_the_frame_on_screen(tmp_path):
    """ffmpeg drops the frames timed before the start, also the one still on screen there: a
    screen recording that held one frame from 1 s to 8 s, cut 4-10 s, began with the 8 s frame
    (at 4 s into the file); a 0.5 fps timelapse cut 5.5-9.5 s lost its 4 s frame and showed the
    6 s and 8 s frames 0.5 s early."""
    screen = _timed_video(tmp_path / "v" / "screen.mp4", 10, 14, "-fps_mode", "vfr",
                          vf=TIMED + ",select='lt(t\\,1.05)+gte(t\\,8)'")
    slow = _timed_video(tmp_path / "v" / "slow.mp4", 0.5, 12)
    held, sparse = (_shown(path) for path in _export_moments(tmp_path, [(screen, 4.0, 10.0), (slow, 5.5, 9.5)]))
    step = 1 / 24 + 0.002  # a cut of a source under 10 fps has 24 frames a second at least
    assert held[0] == (0.0, 1.0) and len(_changes(held)) == 21, _changes(held)[:3]  # then 8.0, 8.1 ... 9.9
    assert _changes(held)[1][1] == 8.0 and 4.0 <= _changes(held)[1][0] < 4.0 + 0.1, _changes(held)[:3]
    assert held[-1] == (5.9, 9.9)
    assert [shown for _, shown in _changes(sparse)] == [4.0, 6.0, 8.0], _changes(sparse)
    assert all(0 <= time - want < step for (time, _), want in zip(_changes(sparse), (0.0, 0.5, 2.5))), _changes(sparse)
    assert sparse[-1][0] > 4.0 - 2 * step
    # the page's previews are cut so too, with their own video filter (scaling) after it
    from vmr_cli.cut import cut
    from vmr_cli.preview import preview_codec

    assert cut(REAL_FFMPEG, str(slow), 5.5, 4.0, str(tmp_path / "preview.mp4"), preview_codec(32)) is None
    preview = _shown(tmp_path / "preview.mp4")
    assert [shown for _, shown in _changes(preview)] == [4.0, 6.0, 8.0], _changes(preview)
    assert json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "json",
                                      str(tmp_path / "preview.mp4")], capture_output=True, check=True).stdout)["streams"][0] == \
        {"width": 32, "height": 24}


@pytest.mark.parametrize("b_frames", ["0", "3"])
def test_an_exact_cut_of_an_mpeg_ts_recording_starts_at_its_start_not_the_next_key_frame(tmp_path, b_frames):
    """ffmpeg's seek before -i in MPEG-TS lands on some packet before the start and decoding begins
    at the next key frame: with one every 10 s, a cut of 2-5 s was 3 s of the 10 s frame (the
    check passed it: ffmpeg filled the gap with copies, so the length was right).  Its sound
    stays in step (a tone from 3 s on)."""
    ts = _timed_video(tmp_path / "v" / "camera.ts", 10, 14, "-g", "100", "-sc_threshold", "0", "-bf", b_frames,
                      "-c:a", "mp2", audio="aevalsrc='if(gte(t,3),0.5*sin(2*PI*440*t),0)':d=14:s=48000")
    (path,) = _export_moments(tmp_path, [(ts, 2.05, 5.05)])
    frames = _shown(path)  # whole frames: from the 2.0 s one's beginning to the 5.0 s one's end
    assert frames[0] == (0.0, 2.0) and frames[-1] == (3.0, 5.0), _changes(frames)[:3]
    assert all(abs(time - (shown - 2.0)) < 0.01 for time, shown in _changes(frames)[1:]), _changes(frames)
    found = subprocess.run([REAL_FFMPEG, "-i", path, "-af", "silencedetect=n=-30dB:d=0.1", "-f", "null", "-"],
                           capture_output=True, text=True, check=True).stderr
    tone = [float(line.split("silence_end: ")[1].split()[0]) for line in found.splitlines() if "silence_end" in line]
    assert len(tone) == 1 and abs(tone[0] - 1.0) < 0.025, found


@pytest.mark.skipif(not (TEST_MEDIA / MOVIE_OGG.replace(".ogg", ".mpeg")).exists(),
                    reason="test media not installed (TEST_MEDIA.md)")
def test_a_stream_copy_of_an_mpeg_program_stream_holds_the_whole_moment(tmp_path):
    """--copy of a .mpg/.vob/.mod (MPEG program stream, no index): ffmpeg's seek by timestamp began
    the copy at the key frame after the start: a camera's .mpeg copied 2.5-4.5 s held 52 of the
    moment's 60 frames, from 0.3 s into it, and the check (counting packets with a pts: some have
    only a dts there) let it through."""
    from vmr_cli.cut import cut

    copy = ["-c", "copy", "-avoid_negative_ts", "make_zero"]
    camera = tmp_path / "camera.mpeg"
    shutil.copy(TEST_MEDIA / MOVIE_OGG.replace(".ogg", ".mpeg"), camera)
    assert cut(REAL_FFMPEG, str(camera), 2.5, 2.0, str(tmp_path / "copy.mpeg"), copy) is None
    counted = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                              "stream=nb_read_packets", "-of", "csv=p=0", str(tmp_path / "copy.mpeg")],
                             capture_output=True, text=True, check=True).stdout
    assert int(counted.split(",")[0]) >= round(2.0 * 30000 / 1001), counted


def test_a_stream_copy_of_a_dvd_program_stream_holds_the_whole_moment(tmp_path):
    """The generated half of the test above, which needs no test media: it was skipped with it
    where they are not installed."""
    from vmr_cli.cut import cut

    copy = ["-c", "copy", "-avoid_negative_ts", "make_zero"]
    dvd = _timed_video(tmp_path / "v" / "dvd.mpg", 25, 10, "-c:v", "mpeg2video", "-g", "12", "-bf", "2",
                       "-sc_threshold", "0", "-f", "mpeg")  # a DVD's GOP: the copy starts before 4.3 s
    assert cut(REAL_FFMPEG, str(dvd), 4.3, 2.0, str(tmp_path / "copy.mpg"), copy) is None
    frames = _shown(tmp_path / "copy.mpg")
    assert frames[0][1] <= 4.3 and frames[-1][1] >= 6.2, (_changes(frames)[:2], frames[-1])


def test_a_stream_copy_of_a_timelapse_avi_holds_the_frame_shown_at_the_moments_end(tmp_path):
    """An AVI's time base is one frame, and ffmpeg shifts a copy's timestamps by its seek point
    rounded to it: the copy, as long as asked from that point, ended up to half a frame early.
    A 1 fps timelapse's copy of 4.75-5.25 s lost the frame shown from 5.0 s, half the moment (a
    quarter of the copies of a 1 fps or 0.5 fps AVI lost a frame on screen in their moment)."""
    from vmr_cli.cut import cut

    copy = ["-c", "copy", "-avoid_negative_ts", "make_zero"]
    avi = _timed_video(tmp_path / "v" / "timelapse.avi", 1, 8, "-c:v", "mpeg4", "-q:v", "2", "-g", "3")
    for start, end in ((4.75, 5.25), (1.6, 3.1)):
        target = tmp_path / f"copy {start}.avi"
        assert cut(REAL_FFMPEG, str(avi), start, end - start, str(target), copy) is None
        shown = [source for _, source in _shown(target)]
        assert shown[0] <= int(start) and shown[-1] >= int(end), (start, end, shown)


def test_an_exact_cut_keeps_every_frame_in_its_slot_and_its_sound_in_its_place(tmp_path):
    """Three cases the first frame-on-screen cut got wrong (the old cut got them right): an AVI,
    whose time base is one frame, had every frame moved one slot early by a 1 ms leeway taken
    off its timestamps; a phone video whose frame times jitter by 4 ms lost a third of its
    frames to the slot after theirs ('round=up'); sound starting 0.5 s after the picture was
    moved to the cut's start."""
    avi = tmp_path / "v" / "camera.avi"
    _timed_video(avi.with_suffix(".mp4"), 10, 8)
    subprocess.run([REAL_FFMPEG, "-v", "error", "-y", "-i", str(avi.with_suffix(".mp4")), "-c:v", "mjpeg",
                    "-q:v", "3", "file:" + str(avi)], check=True)
    jitter = _timed_video(tmp_path / "v" / "phone.mp4", 30, 8, "-fps_mode", "passthrough", "-enc_time_base", "1/90000",
                          "-video_track_timescale", "90000",
                          vf=TIMED.replace("T*10", "T*30") + ",settb=1/90000,setpts='(N/30+0.004*sin(N*2.3))/TB'")
    late = tmp_path / "v" / "late sound.mp4"
    _timed_video(tmp_path / "tone.mp4", 10, 8, "-c:a", "aac",
                 audio="aevalsrc='if(gte(t,2.5),0.5*sin(2*PI*440*t),0)':d=8:s=48000")
    subprocess.run([REAL_FFMPEG, "-v", "error", "-y", "-i", str(tmp_path / "tone.mp4"), "-itsoffset", "0.5",
                    "-i", str(tmp_path / "tone.mp4"), "-map", "0:v", "-map", "1:a", "-c", "copy",
                    "file:" + str(late)], check=True)
    paths = _export_moments(tmp_path, [(avi, 2.3, 4.3), (jitter, 1.0, 3.0), (late, 0.2, 4.2)])
    frames = _shown(paths[0])
    assert frames[0][1] == 2.3 and len({shown for _, shown in frames}) == len(frames) == 20, frames[:4]
    assert all(abs(time - (shown - 2.3)) < 0.01 for time, shown in frames), frames[:4]
    frames = _shown(paths[1])  # its red tells the frame's number (mod 10): no two slots show one frame
    assert len(frames) == 60 and frames[0][1] == 1.0 and all(a[1] != b[1] for a, b in pairwise(frames)), frames[:8]
    found = subprocess.run([REAL_FFMPEG, "-i", paths[2], "-af", "silencedetect=n=-30dB:d=0.1", "-f", "null", "-"],
                           capture_output=True, text=True, check=True).stderr
    tone = [float(line.split("silence_end: ")[1].split()[0]) for line in found.splitlines() if "silence_end" in line]
    assert len(tone) == 1 and abs(tone[0] - 2.8) < 0.05, found  # 2.5 s + 0.5 s late - 0.2 s cut start


# -- exact cuts are whole frames, their sound in step (round 6) ---------------------------------
NUMBERED = ("format=gbrp,geq=r='20+20*mod(N\\,10)':g='20+20*mod(floor(N/10)\\,10)':b='20+20*floor(N/100)'")
BEEP = "aevalsrc='if(between(t,2,2.05),0.8*sin(2*PI*1000*t),0)':d={seconds}:s=48000"  # a beep at 2.0 s


def _numbered(path) -> list[tuple[float, int]]:
    """(time from the file's start, the frame number its colour says) of each frame of a video."""
    import av

    with av.open(str(path)) as container:
        stream, origin = container.streams.video[0], (container.start_time or 0) / 1e6
        found = []
        for frame in container.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")
            h, w, _ = rgb.shape
            r, g, b = rgb[h // 4:3 * h // 4, w // 4:3 * w // 4].reshape(-1, 3).mean(0)
            found.append((float(frame.pts * stream.time_base) - origin,
                          round((b - 20) / 20) * 100 + round((g - 20) / 20) * 10 + round((r - 20) / 20)))
    return sorted(found)


def _beep(path) -> float:
    """When the sound begins, as ffmpeg plays the file (seconds from its start)."""
    import numpy as np

    pcm = subprocess.run([REAL_FFMPEG, "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", "48000", "-f", "f32le",
                          "-"], capture_output=True, check=True).stdout
    return int(np.argmax(np.abs(np.frombuffer(pcm, dtype=np.float32)) > 0.2)) / 48000


def test_an_exact_cut_is_the_frames_on_screen_from_start_to_end_with_its_sound_in_step(tmp_path):
    """A start in the second half of a frame began the cut with the next frame (1.5 s into a
    29.97 fps phone video, 96 % of the way through frame 44: frame 45); an end a third into a
    frame lost that frame (ffmpeg's -t, rounded to a frame); and the slots, laid from the start
    rather than on the source's frames, moved the picture against the sound: 16.7 ms in the
    29.97 fps MP4, 10-20 ms in an MPEG-TS recording (its video starts 10 ms after its sound)."""
    phone = _timed_video(tmp_path / "v" / "phone.mp4", "30000/1001", 4, "-g", "30", "-bf", "3", "-c:a", "aac",
                         vf=NUMBERED, audio=BEEP.format(seconds=4))
    camera = _timed_video(tmp_path / "v" / "camera.ts", 25, 4, "-g", "25", "-bf", "2", "-c:a", "mp2",
                          vf=NUMBERED, audio=BEEP.format(seconds=4))
    frame = 1001 / 30000
    # 1.49 s: two thirds into frame 44; 1.5 s: 1.6 ms before frame 45, which so counts as on screen (README)
    moments = [(phone, 1.49, 2.5), (phone, 1.5, 2.5), (phone, 1.013, 2.014), (phone, 58.7 * frame, 3.0),
               (phone, 0.0, 2.2), (camera, 1.53, 2.53), (camera, 1.0, 2.1)]  # each holds the beep
    cuts = _export_moments(tmp_path, moments)
    for (source, start, end), path in zip(moments, cuts):
        shown, frames = _numbered(source), _numbered(path)
        at = {number: time for time, number in shown}
        on_screen = [number for time, number in shown if time <= start + 0.005][-1]  # (the 5 ms leeway)
        last = [number for time, number in shown if time < end - 1e-6][-1]
        assert (frames[0][1], frames[-1][1]) == (on_screen, last), (start, end, frames[:2], frames[-1:])
        assert [number for _, number in frames] == list(range(on_screen, last + 1)), (start, end, frames)
        # picture and sound in step: each frame at its source time less the sound's shift
        shift = _beep(source) - _beep(path)
        worst = max((abs(time - (at[number] - shift)) for time, number in frames[1:]), default=0.0)
        assert worst < 0.003, (start, end, worst)
        sound = float(subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                                      "stream=duration", "-of", "csv=p=0", path], capture_output=True, text=True,
                                     check=True).stdout)
        assert abs(sound - (frames[-1][0] + (frames[1][0] - frames[0][0]))) < 0.025, (start, end, sound, frames[-1])


# -- exact cuts: review of round 6 ---------------------------------------------------------------
def test_a_frame_beginning_just_after_the_start_begins_the_cut(tmp_path):
    """A frame that begins less than 5 ms after the start counts as on screen there (README):
    a cut at 1.0-2.0 s of a 23.976 fps video, whose frame 24 begins at 1.001 s, began with
    frame 23 (shown 42 ms before the start), 25 frames for 24."""
    from vmr_cli.cut import cut
    from vmr_cli.export import EXACT

    source = _timed_video(tmp_path / "film.mp4", "24000/1001", 3, "-g", "24", vf=NUMBERED)
    assert cut(REAL_FFMPEG, str(source), 1.0, 1.0, str(tmp_path / "cut.mp4"), EXACT) is None
    assert [number for _, number in _numbered(tmp_path / "cut.mp4")] == list(range(24, 48))


@pytest.mark.parametrize("container", ["ts", "mpg"])
def test_an_exact_cut_long_after_the_key_frame_of_a_transport_stream_is_the_moment(tmp_path, container):
    """In MPEG-TS and MPEG-PS ffmpeg moves timestamps that jump back more than 10 s: a cut at
    11.5 s with the key frame at 0 s (x264's -g 300, a screen recording's or a timelapse's GOP),
    its timestamps offset by -11.5 s before the input, held the file's first second, frames 0-23."""
    from vmr_cli.cut import cut
    from vmr_cli.export import EXACT

    codec = ["-c:v", "mpeg2video", "-q:v", "3", "-sc_threshold", "1000000000", "-f", "vob"] if container == "mpg" \
        else ["-sc_threshold", "0"]
    source = tmp_path / f"screen.{container}"
    subprocess.run([REAL_FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=black:s=64x48:r=25:d=14",
                    "-vf", NUMBERED + ",format=yuv420p", "-g", "300", *(["-c:v", "libx264"] if container == "ts" else []),
                    *codec, "file:" + str(source)], check=True)
    assert cut(REAL_FFMPEG, str(source), 11.5, 1.0, str(tmp_path / "cut.mp4"), EXACT) is None
    shown = _numbered(source)
    first = [number for time, number in shown if time <= 11.5 + 1e-6][-1]
    last = [number for time, number in shown if time < 12.5 - 0.005][-1]
    numbers = [number for _, number in _numbered(tmp_path / "cut.mp4")]
    assert first > 280 and numbers == list(range(first, last + 1)), numbers[:5]


def test_search_in_a_folder_or_a_file_searches_only_the_videos_there(tiny_model, videos, tmp_path, monkeypatch):
    """rclip searches the folder it runs in; vmr searched the whole library, always: a user who
    wanted last summer's footage got every year's."""
    vmr_json("index", videos, "--model", tiny_model)
    (videos / "sub" / "deeper").mkdir()
    shutil.copy2(videos / "green.mp4", videos / "sub" / "deeper" / "green copy.mp4")
    assert vmr_json("index", videos)["copies"]
    everywhere = vmr_json("search", "a green screen")
    assert {r["video"] for r in everywhere["results"]} == \
        {str(videos / n) for n in ("red_then_blue.mp4", "green.mp4", "sub/pattern.mp4")}  # the copy shown once

    def shown(*args):
        return {os.path.relpath(r["video"], videos) for r in vmr_json("search", "a green screen", *args)["results"]}

    sub = {"sub/pattern.mp4", "sub/deeper/green copy.mp4"}  # the copy inside is the one shown
    assert shown("--in", videos / "sub") == sub
    from vmr_cli import vectors

    for mapped in (False, True):  # the coarse stage looks among the clips inside only, the FAISS cache read or mapped
        monkeypatch.setattr(vectors, "MAP_FROM_BYTES", 0 if mapped else 64 << 20)
        one = shown("--in", videos / "sub", "--max-videos", "1")
        assert one and one <= sub and len({os.path.dirname(p) for p in one}) == 1
    assert shown("--in", videos / "green.mp4", "--in", videos / "sub" / "pattern.mp4") == \
        {"green.mp4", "sub/pattern.mp4"}
    monkeypatch.chdir(videos)
    assert shown("--in", "sub") == sub and shown("--in", ".") == {"red_then_blue.mp4", "green.mp4", "sub/pattern.mp4"}
    link = tmp_path / "link"
    link.symlink_to(videos)
    assert shown("--in", link / "sub") == sub  # the library holds them under the real path
    listed = vmr_json("searches")["searches"]
    assert listed[0]["within"] == [str(link / "sub")] and listed[-1]["within"] == []
    assert f"  a green screen  (in {link / 'sub'})\n" in vmr("searches")[1]
    code, out, err = vmr("search", "a green screen", "--in", videos / "nothing here", expect=1)
    assert out == "" and err == (f"Error: --in {videos / 'nothing here'}: the library holds no video at or under it "
                                 "(vmr status lists what it holds; index it first: vmr index PATH)\n")


def test_search_in_a_folder_the_shell_names_by_its_real_path(tiny_model, videos, tmp_path, monkeypatch):
    """Indexed through a link (~/videos -> /mnt/data/videos), searched from inside it: the shell's
    current folder is the real path, which the library never recorded."""
    link = tmp_path / "link"
    link.symlink_to(videos)
    vmr_json("index", link, "--model", tiny_model)
    monkeypatch.chdir(videos / "sub")
    found = vmr_json("search", "a green screen", "--in", ".")["results"]
    assert found and {r["video"] for r in found} == {str(link / "sub" / "pattern.mp4")}

# -- a cut's footage read back (round 7) ----------------------------------------------------------
def _first_second_instead(monkeypatch):
    """Every cut made as the MPEG-TS/PS bug of round 6 made it: the file's first frames, the
    length and sound asked for (ffmpeg's -itsoffset taken for a timestamp jump)."""
    from vmr_cli import cut

    real = cut._run
    monkeypatch.setattr(cut, "_run", lambda ffmpeg, source, start, seconds, target, codec_args, seek, *rest:
                        real(ffmpeg, source, 0.0, seconds, target, codec_args, "output", *rest))


@pytest.mark.parametrize("container", ["mp4", "ts"])
def test_a_cut_of_the_right_length_showing_other_footage_is_not_kept(tmp_path, monkeypatch, container):
    """A cut of the moment's length, with its sound, that held the file's first second (the
    MPEG-TS/PS bug of round 6) passed the read-back check, which looked at its length, frames
    and sound but not at what they show: it was exported as the moment."""
    source = tmp_path / "v" / f"camera.{container}"
    source.parent.mkdir()
    subprocess.run([REAL_FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=160x120:r=25:d=14", "-f", "lavfi",
                    "-i", "sine=d=14", "-vf", "negate=enable='gte(t,6)'", "-c:v", "libx264", "-g", "300",
                    "-sc_threshold", "0", "-c:a", "aac" if container == "mp4" else "mp2", "file:" + str(source)],
                   check=True)  # another scene from 6 s on: the pattern in negative
    _first_second_instead(monkeypatch)
    lib = Library(None, create=True)
    search_id = lib.catalog.log_search("a moment", "tiny", {}, {}, [
        {"rank": 1, "video": str(source), "start": 11.5, "end": 12.5, "score": 0.9}])
    lib.close()
    code, out, err = vmr("export", "--search", search_id, "--out", tmp_path / "out", expect=1)
    assert re.fullmatch(f"Error: result 1: ffmpeg could not cut {re.escape(str(source))}: the cut shows other footage "
                        r"than the source at 11\.4\d s \(its first frame differs from the source's there by \d+ grey "
                        r"levels of 255\)", err.strip().splitlines()[-1]), err
    assert "Traceback" not in err
    assert out == "" and os.listdir(tmp_path / "out") == []
    # the page's previews are read back so too
    from vmr_cli.cut import CutError, cut
    from vmr_cli.preview import preview_codec

    with pytest.raises(CutError, match="the cut shows other footage than the source"):
        cut(REAL_FFMPEG, str(source), 11.5, 1.0, str(tmp_path / "preview.mp4"), preview_codec())


GOOD_CUTS = [("usr/share/forensics-samples/original-files/movie1/VID_20191220_170832.mp4", 0.3, 1.2),
             ("usr/share/doc/opencv-doc/examples/data/vtest.avi", 50.0, 3.0),
             ("usr/share/doc/opencv-doc/examples/data/tree.avi", 2.0, 2.0),
             (MOVIE_OGG.replace(".ogg", ".mpeg"), 2.5, 2.0)]


@pytest.mark.skipif(not (TEST_MEDIA / GOOD_CUTS[0][0]).exists(), reason="test media not installed (TEST_MEDIA.md)")
@pytest.mark.parametrize("name,start,seconds", GOOD_CUTS)
def test_good_cuts_of_real_camera_files_pass_the_footage_check(tmp_path, monkeypatch, name, start, seconds):
    """No false refusal: exact cuts, previews and stream copies of a phone's VFR video with an
    edit list, AVIs with a key frame every 25 s, an MPEG program stream; the footage is looked
    at (and matches) in the re-encodes, not in the copies (see cut.LOOK)."""
    from vmr_cli import cut
    from vmr_cli.export import EXACT, EXACT_AUDIO
    from vmr_cli.preview import preview_codec

    looked = []
    real = cut._footage_wrong
    monkeypatch.setattr(cut, "_footage_wrong", lambda *args: looked.append(real(*args)) or looked[-1])
    source = TEST_MEDIA / name
    for codec, ext in ((EXACT + EXACT_AUDIO, ".mp4"), (preview_codec(), ".mp4"),
                       (["-c", "copy", "-avoid_negative_ts", "make_zero"], os.path.splitext(name)[1])):
        assert cut.cut(REAL_FFMPEG, str(source), start, seconds, str(tmp_path / f"cut{ext}"), codec) is None, codec
    assert looked == [None, None]


def test_good_exact_cuts_of_mpeg_ts_and_hdr_video_pass_the_footage_check(tmp_path, monkeypatch):
    """No false refusal: an MPEG-TS recording cut 11.5 s after its key frame (as the bug of round
    6 was), 10-bit HEVC HDR (PQ, HLG) cut in 10 bits and tone-mapped for a preview."""
    from conftest import make_hdr_video

    from vmr_cli import cut
    from vmr_cli.export import exact_codec
    from vmr_cli.preview import media_info, preview_codec

    looked = []
    real = cut._footage_wrong
    monkeypatch.setattr(cut, "_footage_wrong", lambda *args: looked.append(real(*args)) or looked[-1])
    ts = tmp_path / "camera.ts"
    subprocess.run([REAL_FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=14", "-f", "lavfi",
                    "-i", "sine=d=14", "-c:v", "libx264", "-g", "300", "-sc_threshold", "0", "-c:a", "mp2",
                    "file:" + str(ts)], check=True)
    pq = make_hdr_video(tmp_path / "android.mov", "smpte2084")
    hlg = make_hdr_video(tmp_path / "iphone.mov", "arib-std-b67")
    for source, start, seconds in ((ts, 11.5, 1.0), (pq, 0.2, 0.5), (hlg, 0.0, 0.8)):
        for codec in (exact_codec(REAL_FFMPEG, str(source))[0], preview_codec(hdr=media_info(str(source))["hdr"])):
            assert cut.cut(REAL_FFMPEG, str(source), start, seconds, str(tmp_path / "cut.mp4"), codec) is None
    assert looked == [None] * 6


def test_one_video_searched_gives_its_top_k_moments_not_three(tiny_model, videos, monkeypatch):
    """`--in FILE` (or a library of one video, or --max-videos 1) gave at most 3 moments: the
    per-video cap makes room for other videos' moments, and there were none to make room for."""
    long = videos / "sub" / "long.mp4"
    make_video(long, [(colour, 2.0) for colour in ("red", "blue", "green", "yellow") * 4])
    vmr_json("index", videos, "--model", tiny_model)

    def moments(*args):
        return vmr_json("search", "a red screen", *args)["results"]

    alone = moments("--in", long, "--top-k", "4")  # its four red screens
    assert len(alone) == 4 and {r["video"] for r in alone} == {str(long)}
    assert len(moments("--in", long, "--top-k", "4", "--per-video", "2")) == 2  # asked for: kept
    everywhere = moments("--top-k", "6")
    assert max(sum(r["video"] == v for r in everywhere) for v in {r["video"] for r in everywhere}) <= 3

def test_a_good_preview_of_hdr_video_that_does_not_name_its_primaries_passes_the_footage_check(tmp_path,
                                                                                               monkeypatch):
    """The cut's own filters (the preview's tone-mapping, told BT.2020 where the source names no
    primaries or matrix) ran on the cut as well as on the source: the SDR preview was tone-mapped
    twice and read as BT.2020, and a good preview of an untagged HLG file differed by 17 grey
    levels: refused as other footage."""
    from vmr_cli import cut
    from vmr_cli.preview import media_info, preview_codec

    looked = []
    real = cut._footage_wrong
    monkeypatch.setattr(cut, "_footage_wrong", lambda *args: looked.append(real(*args)) or looked[-1])
    hlg = tmp_path / "untagged.mp4"
    subprocess.run([REAL_FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "mandelbrot=s=320x180:r=25,trim=duration=2",
                    "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
                    "-x265-params", "log-level=error:transfer=arib-std-b67:keyint=250", "file:" + str(hlg)], check=True)
    hdr = media_info(str(hlg))["hdr"]
    assert "pin=bt2020" in hdr
    assert cut.cut(REAL_FFMPEG, str(hlg), 0.5, 1.0, str(tmp_path / "preview.mp4"), preview_codec(hdr=hdr)) is None
    assert looked == [None]


def test_a_search_in_a_relative_folder_is_logged_with_the_folder_it_named(tiny_model, videos, monkeypatch):
    """vmr searches listed '(in .)' and '(in sub)': from another folder, or a day later, that
    names nothing."""
    vmr_json("index", videos, "--model", tiny_model)
    monkeypatch.chdir(videos)
    vmr_json("search", "a green screen", "--in", ".", "--in", "sub/")
    assert vmr_json("searches")["searches"][0]["within"] == [str(videos), str(videos / "sub")]
    assert f"  a green screen  (in {videos}, {videos / 'sub'})\n" in vmr("searches")[1]


def test_search_in_a_folder_holding_only_failed_videos_says_so(tiny_model, videos, tmp_path):
    vmr_json("index", videos, "--model", tiny_model)
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "x.mp4").write_bytes(b"not a video" * 100)
    vmr("index", bad, expect=1)
    code, out, err = vmr("search", "a green screen", "--in", bad, expect=1)  # it said 'no moments matched', exit 0
    assert out == "" and err == (f"Error: --in {bad}: none of the 1 video the library holds at or under it is "
                                 "indexed (they failed, or wait to be indexed again: vmr status lists them; "
                                 "vmr index PATH)\n")


def test_search_in_a_folder_above_a_linked_root(tiny_model, videos, tmp_path):
    """~/videos, a link to /mnt/nas/videos, was indexed; --in /mnt/nas holds every one of them."""
    nas = tmp_path / "nas"
    nas.mkdir()
    os.rename(videos, nas / "videos")
    link = tmp_path / "home-videos"
    link.symlink_to(nas / "videos")
    vmr_json("index", link, "--model", tiny_model)
    found = vmr_json("search", "a green screen", "--in", nas)  # 'the library holds no video at or under it'
    assert {r["video"] for r in found["results"]} == \
        {str(link / n) for n in ("red_then_blue.mp4", "green.mp4", "sub/pattern.mp4")}


@contextlib.contextmanager
def _bind_mount(source, target):
    """source's folder seen at target too, as a second mount point of one disk shows it; skipped
    where mounting is not allowed."""
    target.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", str(source), str(target)],
                                           capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot bind-mount a folder here")
    try:
        yield target
    finally:
        subprocess.run(["umount", "--lazy", str(target)], check=True)


def test_search_in_a_folder_by_another_mount_point_of_it(tiny_model, videos, tmp_path):
    """A NAS share mounted twice, a bind mount: the folder indexed at one place is named at the
    other (said 'the library holds no video at or under it')."""
    vmr_json("index", videos, "--model", tiny_model)
    with _bind_mount(videos, tmp_path / "mnt") as mnt:
        found = vmr_json("search", "a green screen", "--in", mnt / "sub")["results"]
        assert {r["video"] for r in found} == {str(videos / "sub" / "pattern.mp4")}
        assert len(vmr_json("search", "a green screen", "--in", mnt)["results"]) == 3


def test_search_in_a_folder_named_in_another_case_on_a_disk_that_ignores_case(tiny_model, videos, tmp_path,
                                                                              monkeypatch):
    """A camera card (FAT, exFAT) or macOS opens 'SUB' as the folder it lists as 'sub', which
    the library holds: --in SUB found nothing.  The disk is played by a bind mount of sub at
    SUB that the folder's listing leaves out."""
    from vmr_cli import paths

    vmr_json("index", videos, "--model", tiny_model)
    with _bind_mount(videos / "sub", videos / "SUB") as upper:
        listdir = os.listdir
        monkeypatch.setattr(paths.os, "listdir", lambda folder: [n for n in listdir(folder) if n != "SUB"])
        found = vmr_json("search", "a green screen", "--in", upper)["results"]
        assert {r["video"] for r in found} == {str(videos / "sub" / "pattern.mp4")}


def test_search_in_a_folder_held_by_its_name_does_not_look_at_every_root_by_inode(tiny_model, videos, monkeypatch):
    """Files indexed one by one (`vmr index /media/cam/*.mp4`) are a root each; telling another
    mount point of --in's folder by device and inode stats each root (0.18 s for 5,000, on every
    search with --in).  It is asked only where the names the folder goes by hold nothing."""
    from vmr_cli import paths

    vmr_json("index", *sorted(videos.rglob("*.mp4")), "--model", tiny_model)
    looked, real = [], paths._same_place
    monkeypatch.setattr(paths, "_same_place", lambda *args: looked.append(args) or real(*args))
    found = vmr_json("search", "a green screen", "--in", videos / "sub")["results"]
    assert {r["video"] for r in found} == {str(videos / "sub" / "pattern.mp4")} and looked == []


def _fields(path) -> set[tuple[str, str]]:
    """(interlaced_frame, top_field_first) of a file's first frames, as ffprobe reads them."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-read_intervals", "%+#4", "-show_entries",
                          "frame=interlaced_frame,top_field_first", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return {tuple(line.split(",")[:2]) for line in out.split()}


def test_an_exact_cut_of_interlaced_video_stays_interlaced_in_its_field_order(tiny_model, tmp_path):
    """A camcorder's 1080i (top field first) or DV's bottom-field-first 4:2:2, cut exactly: the
    cut was encoded as progressive frames with the two fields woven in, which every player shows
    with combs on whatever moves (they deinterlace what is flagged interlaced, as the source is)."""
    folder = tmp_path / "v"
    folder.mkdir()
    for name, order, pixels in (("camcorder.mts", "top", "yuv420p"), ("dv.mkv", "bottom", "yuv422p")):
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x256:rate=50:d=6", "-vf",
                        f"tinterlace=mode=interleave_{order},setfield={order[0]}ff,format={pixels}",
                        "-flags", "+ildct+ilme", "-c:v", "libx264", "-preset", "ultrafast", str(folder / name)],
                       check=True)
    vmr_json("index", folder, "--model", tiny_model)
    found = vmr_json("search", "a test pattern", "--per-video", "1")["results"]
    assert {os.path.basename(r["video"]) for r in found} == {"camcorder.mts", "dv.mkv"}
    done = vmr_json("export", "--out", tmp_path / "out")
    assert len(done["exported"]) == 2 and not done["skipped"]
    for item, result in zip(done["exported"], found):
        top = "1" if result["video"].endswith(".mts") else "0"
        assert _fields(result["video"]) == {("1", top)}  # (the sources are what the test says)
        assert _fields(item["path"]) == {("1", top)}, item
