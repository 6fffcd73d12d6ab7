"""Exports, search history and what reaches the terminal (issues 11 and 12, round 2).

Where cuts go and that vmr never indexes them, names that never collide, `vmr searches` and
`vmr show`, which search an export cuts from (read-only libraries too), bad numbers and
annotation windows, escaped file names on stderr, --library after the command, completion.
TESTING.md ("Round 2: export, history and output") maps every case to its test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import ROOT, ffprobe_duration, make_video, vmr, vmr_json, vmr_subprocess

from vmr_cli.cli import cli
from vmr_cli.errors import VmrError

ESC = "\x1b"


@pytest.fixture
def indexed(videos, tiny_model):
    vmr_json("index", videos, "--model", tiny_model)
    return videos


def indexed_paths() -> set[str]:
    from vmr_cli.library import Library

    return {v["path"] for v in Library().catalog.videos()}


# -- 12.2: exports land in vmr's own folder, and vmr never indexes its own cuts ----------------
def test_export_goes_to_vmrs_own_folder_not_the_current_one(indexed, tmp_path, monkeypatch):
    monkeypatch.chdir(indexed)  # the trap: exporting from inside an indexed folder
    before = set(os.listdir(indexed))
    found = vmr_json("search", "red", "--top-k", "3")
    code, out, err = vmr("export", "1")
    own = tmp_path / "Videos" / "vmr"  # $XDG_VIDEOS_DIR/vmr, created with its parent
    path = out.split()[-1]
    assert os.path.dirname(path) == str(own) and os.path.isfile(path)
    assert (own / ".vmr-exports").is_file()  # the marker the index scan skips
    assert set(os.listdir(indexed)) == before  # nothing written where the user stood
    assert f'results of search {found["search_id"]} ("red", ' in err and f"into {own}" in err
    done = vmr_json("export", "2")
    assert done["folder"] == str(own) and done["exported"][0]["path"].startswith(str(own) + os.sep)


def test_out_folder_is_created_when_its_parent_exists(indexed, tmp_path):
    vmr_json("search", "red", "--top-k", "2")
    done = vmr_json("export", "1", "--out", tmp_path / "new")
    assert os.path.isfile(done["exported"][0]["path"]) and done["folder"] == str(tmp_path / "new")
    assert not (tmp_path / "new" / ".vmr-exports").exists()  # the user's folder: no marker in it
    code, _, err = vmr("export", "1", "--out", tmp_path / "no" / "such", expect=1)
    assert err.strip() == f"Error: output folder does not exist, nor its parent: {tmp_path / 'no' / 'such'}"
    assert not (tmp_path / "no").exists()
    (tmp_path / "notes.txt").write_text("mine")  # the parent exists, as a file: it said it did not exist
    code, _, err = vmr("export", "1", "--out", tmp_path / "notes.txt" / "cuts", expect=1)
    assert err.strip() == (f"Error: cannot create output folder {tmp_path / 'notes.txt' / 'cuts'}: "
                           f"{tmp_path / 'notes.txt'} is a file, not a folder")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_two_exports_of_a_search_into_one_folder_at_once_cut_each_result_once(indexed, tmp_path):
    """Both exports cut every result (the second one's as '_2'): now the second waits for the
    folder, then finds the first one's cuts ('cut before')."""
    import fcntl
    import selectors
    import threading

    vmr_json("search", "red", "--top-k", "3")
    out = tmp_path / "cuts"
    out.mkdir()
    cmd = [sys.executable, "-m", "vmr_cli", "export", "1", "2", "--out", str(out), "--json"]
    held, release = threading.Event(), threading.Event()

    def hold():  # as a third export would (a lock on the folder itself), while the two start
        fd = os.open(out, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.set()
        release.wait(60)
        os.close(fd)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    waiting, deadline = 0, time.time() + 30
    with selectors.DefaultSelector() as sel:  # both say they wait (old code: they cut at once)
        for proc in procs:
            sel.register(proc.stderr, selectors.EVENT_READ)
        while waiting < 2 and time.time() < deadline and sel.get_map():
            for key, _ in sel.select(timeout=1):
                line = key.fileobj.readline()
                if not line:
                    sel.unregister(key.fileobj)
                waiting += "waiting for another vmr export into that folder" in line
    release.set()
    holder.join()
    done = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    assert waiting == 2 and [p.returncode for p in procs] == [0, 0]
    assert sorted(os.listdir(out)) == sorted(os.path.basename(e["path"]) for e in done[0]["exported"])
    assert sorted(bool(e.get("existing")) for d in done for e in d["exported"]) == [False, False, True, True]


def test_a_source_replaced_while_an_export_runs_is_not_cut_silently(indexed, tmp_path, monkeypatch):
    """Checked once before the first cut, a file replaced while the results before it were cut
    was cut from the new file with no warning; replaced during its own cut, the cut held the
    other file's footage."""
    from vmr_cli import export as export_module
    from vmr_cli.library import Library

    found = vmr_json("search", "a red screen", "--top-k", "9")["results"]
    other = make_video(tmp_path / "other.mp4", [("green", 10.0)])  # longer: every moment is in it
    ranks = [r["rank"] for r in found if r["video"].endswith("red_then_blue.mp4")][:1] + \
        [r["rank"] for r in found if not r["video"].endswith("red_then_blue.mp4")][:1]
    real_cut, calls = export_module._cut, []

    def cut_then_replace(ffmpeg, source, *args):  # the first cut replaces the second one's source
        calls.append(source)
        done = real_cut(ffmpeg, source, *args)
        if len(calls) == 1:
            shutil.copyfile(other, found[ranks[1] - 1]["video"] + ".new")
            os.replace(found[ranks[1] - 1]["video"] + ".new", found[ranks[1] - 1]["video"])
        return done

    monkeypatch.setattr(export_module, "_cut", cut_then_replace)
    lib = Library()
    done = export_module.export_results(lib.catalog, ranks, out_dir=str(tmp_path / "a"))
    assert [e["rank"] for e in done["exported"]] == ranks and "changed since this search" in \
        done["exported"][1].get("warning", ""), done
    monkeypatch.setattr(export_module, "_cut", real_cut)
    from vmr_cli import cut as cut_module

    real_ffmpeg_cut = cut_module.cut

    def cut_while_written_to(ffmpeg, source, *args):  # the file changes while ffmpeg reads it
        result = real_ffmpeg_cut(ffmpeg, source, *args)
        os.utime(source, ns=(time.time_ns(), time.time_ns()))
        return result

    monkeypatch.setattr(cut_module, "cut", cut_while_written_to)
    with pytest.raises(export_module.NothingCut) as nothing:
        export_module.export_results(lib.catalog, ranks[:1], out_dir=str(tmp_path / "b"))
    lib.close()
    assert "changed while it was being cut (replaced or written to); search again" in str(nothing.value)
    assert os.listdir(tmp_path / "b") == []  # no cut kept, no temporary file left


def test_cuts_an_older_vmr_logged_by_path_only_are_not_indexed_after_an_upgrade(indexed, tmp_path):
    """vmr logged exports without their files' prints before 2026-11-28 (its cuts then went to
    the current folder): after an upgrade the next index took them for the user's videos."""
    from vmr_cli.library import Library

    vmr_json("search", "red", "--top-k", "3")
    cut = vmr_json("export", "1", "--out", indexed / "cuts")["exported"][0]["path"]
    lib = Library()
    [operation] = lib.catalog.operations("export")
    summary = {k: v for k, v in operation["summary"].items() if k != "files"}  # as the old vmr logged it
    lib.catalog._conn.execute("UPDATE operations SET summary=? WHERE id=?", (json.dumps(summary), operation["id"]))
    lib.close()
    summary = vmr_json("index", indexed)
    assert (summary["added"], summary["own_outputs"]) == (0, 1), summary
    assert os.path.isfile(cut)


def test_cuts_the_first_vmr_made_without_logging_them_are_not_indexed_after_an_upgrade(indexed, tmp_path,
                                                                                      monkeypatch):
    """The first vmr logged no export at all and cut into the current folder: an upgraded vmr
    took those cuts for the user's videos and ranked them beside their sources.  A file named as
    export names the cut of a logged search result is passed over; a user's file named alike
    whose times no search returned is indexed.  Cuts an older vmr had indexed are removed (a
    folder of them was kept as 'an unmounted drive?', and searched for good)."""
    from vmr_cli import scan
    from vmr_cli.library import Library

    found = vmr_json("search", "red", "--top-k", "3")["results"][0]
    cut = vmr_json("export", "1", "--out", indexed / "cuts")["exported"][0]["path"]
    other = vmr_json("export", "2", "--out", indexed / "cuts")["exported"][0]["path"]
    lib = Library()
    lib.catalog._conn.execute("DELETE FROM operations WHERE command='export'")  # as the first vmr left it
    lib.close()
    assert not os.path.exists(indexed / "cuts" / ".vmr-exports")  # (vmr marks only its own folder)
    stem = os.path.splitext(os.path.basename(found["video"]))[0]
    shutil.copy(cut, indexed / f"{stem}_0h00m00.00s-0h00m00.50s.mp4")  # the user's, no search returned it
    with monkeypatch.context() as older:  # an older vmr, which knew no such cuts, indexes them
        older.setattr(scan, "without_own_outputs", lambda catalog, found: found)
        assert vmr_json("index", indexed)["added"] == 3
    code, out, err = vmr("index", indexed)
    assert out.startswith("added 0, updated 0, moved 0, unchanged 4, removed 2") and "kept:" not in err, (out, err)
    assert "note: passed over 2 files vmr made itself" in err
    names = {os.path.basename(v["path"]) for v in Library().catalog.videos()}
    assert f"{stem}_0h00m00.00s-0h00m00.50s.mp4" in names and not names & {os.path.basename(cut), os.path.basename(other)}


def test_vmrs_own_cuts_are_never_indexed_wherever_they_are_moved(indexed, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    vmr_json("search", "red", "--top-k", "3")
    default = vmr_json("export", "1", "2")["exported"]
    in_root = vmr_json("export", "3", "--out", indexed / "cuts")["exported"]  # a --out folder under the root
    shutil.move(tmp_path / "Videos" / "vmr", indexed / "moved exports")  # the whole folder, marker with it
    shutil.copy(default[0]["path"].replace(str(tmp_path / "Videos" / "vmr"), str(indexed / "moved exports")),
                indexed / "sub" / "renamed.mp4")  # one cut moved on its own, renamed
    before = indexed_paths()
    code, out, err = vmr("index", indexed)
    # the cuts are passed over, said so; vmr's marker file is not counted as a skipped file
    assert "note: passed over 4 files vmr made itself" in err and "skipped" not in err, err
    summary = vmr_json("index", indexed)
    assert (summary["added"], summary["updated"], summary["moved"], summary["own_outputs"]) == (0, 0, 0, 4)
    assert summary["skipped"]["files"] == 0
    code, out, err = vmr("index", indexed / "sub" / "renamed.mp4")  # named on purpose: still said
    assert "note: passed over 1 file vmr made itself" in err
    assert indexed_paths() == before and len(before) == 3
    found = vmr_json("search", "red", "--top-k", "50")["results"]
    assert {os.path.basename(r["video"]) for r in found} <= {"red_then_blue.mp4", "green.mp4", "pattern.mp4"}
    assert os.path.isfile(in_root[0]["path"])  # skipped, not touched
    # A file the user puts into vmr's folder is skipped too (the marker says so); deleting the
    # marker hands the folder back to the index.
    os.remove(indexed / "moved exports" / ".vmr-exports")
    make_video(indexed / "moved exports" / "mine.mp4", [("yellow", 2.0)])
    vmr_json("index", indexed)
    assert {os.path.basename(p) for p in indexed_paths() - before} == {"mine.mp4"}  # cuts stay out by print


KILLED_AFTER_ONE_CUT = """
import os, sys
from vmr_cli import cli, cut

calls = []
real = cut.cut
def die_in_the_second_cut(ffmpeg, source, start, seconds, target, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # kill -9 (a power cut) while ffmpeg writes the second cut
        real(ffmpeg, source, start, seconds, target, *args, **kwargs)
        os.utime(target, (0, 0))  # its temporary file, left behind, as if from long ago
        os._exit(137)
    return real(ffmpeg, source, start, seconds, target, *args, **kwargs)

cut.cut = die_in_the_second_cut
sys.argv = ["vmr", "--library", sys.argv[1], "export", "1", "2", "--out", sys.argv[2]]
cli.main()
"""


def test_a_killed_export_logs_the_cut_it_made_and_its_temporary_file_goes(indexed, tmp_path, isolated_library):
    """The export log was written after the last cut: killed between cuts, the first was not
    logged, so the next index took it (and the export's temporary file, hidden beside it) for
    the user's videos, ranked them first, and export cut that result again."""
    vmr_json("search", "red", "--top-k", "3")
    out = indexed / "cuts"
    died = subprocess.run([sys.executable, "-c", KILLED_AFTER_ONE_CUT, str(isolated_library), str(out)],
                          capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert died.returncode == 137, died
    left = sorted(os.listdir(out))
    assert len(left) == 2 and left[0].startswith(".vmr-export-"), left  # the cut and the temporary file
    summary = vmr_json("index", indexed)
    assert (summary["added"], summary["own_outputs"]) == (0, 2), summary  # the cut and the temporary file
    again = vmr_json("export", "1", "2", "--out", out)["exported"]
    assert [c.get("existing", False) for c in again] == [True, False]  # result 1 is not cut twice
    assert not any(name.startswith(".vmr-export-") for name in os.listdir(out))  # stale: removed


KILLED_AS_THE_CUT_LANDS = """
import os, sys
from vmr_cli import cli

real = os.link
def die_once_it_has_landed(source, target, *args, **kwargs):
    real(source, target, *args, **kwargs)
    os._exit(137)  # kill -9 right after the cut got its name

os.link = die_once_it_has_landed
sys.argv = ["vmr", "--library", sys.argv[1], "export", "1", "--out", sys.argv[2]]
cli.main()
"""


def test_an_export_killed_as_its_cut_lands_has_logged_it(indexed, tmp_path, isolated_library):
    """The cut was logged after it got its name: killed in between, it was the user's file to the
    next index, and export, run again as the message says, cut it again as NAME_2."""
    vmr_json("search", "red", "--top-k", "3")
    out = indexed / "cuts"
    died = subprocess.run([sys.executable, "-c", KILLED_AS_THE_CUT_LANDS, str(isolated_library), str(out)],
                          capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert died.returncode == 137, died
    cuts = [name for name in os.listdir(out) if not name.startswith(".vmr-export-")]
    assert len(cuts) == 1
    summary = vmr_json("index", indexed)
    assert summary["added"] == 0, summary
    again = vmr_json("export", "1", "--out", out)["exported"]
    assert [(c["path"], c.get("existing", False)) for c in again] == [(str(out / cuts[0]), True)]


def test_a_cut_that_could_not_be_placed_is_taken_back_out_of_the_log(indexed, tmp_path, monkeypatch):
    """Logged just before it gets its name; when it then cannot get one (no hard links, and the
    rename failing), the log claimed a cut that was never made."""
    import errno

    from vmr_cli.library import Library

    vmr_json("search", "red", "--top-k", "3")

    def fails(code):
        def call(*args, **kwargs):
            raise OSError(code, os.strerror(code))
        return call

    monkeypatch.setattr(os, "link", fails(errno.EPERM))
    monkeypatch.setattr(os, "rename", fails(errno.EIO))
    code, out, err = vmr("export", "1", "--out", tmp_path / "o", expect=1)
    assert "Input/output error" in err
    lib = Library()
    assert [op["summary"]["exported"] for op in lib.catalog.operations("export")] == [[]]
    lib.close()


# -- 11.6: one file per result, never a name taken twice ------------------------------------------
@pytest.fixture
def two_cards(tiny_model, tmp_path):
    """GOPR0001.MP4 on two cards: same name, the same moments in both (not copies: the second
    has bytes after its end, which decoders ignore; copies are searched once)."""
    clip = make_video(tmp_path / "src.mp4", [("red", 3.0), ("blue", 3.0)])
    for i, card in enumerate(("card1", "card2")):
        (tmp_path / "videos" / card / "DCIM").mkdir(parents=True)
        shutil.copy(clip, tmp_path / "videos" / card / "DCIM" / "GOPR0001.MP4")
        with open(tmp_path / "videos" / card / "DCIM" / "GOPR0001.MP4", "ab") as handle:
            handle.write(b"\0" * 16 * i)
    vmr_json("index", tmp_path / "videos", "--model", tiny_model)
    return tmp_path / "videos"


def test_export_names_are_unique_in_a_batch_and_against_existing_files(two_cards, tmp_path):
    results = vmr_json("search", "red", "--top-k", "6", "--exhaustive")["results"]
    windows = [(r["start"], r["end"]) for r in results]
    assert len(set(windows)) < len(windows)  # the same moment in both copies: the case at hand
    out = tmp_path / "cuts"
    first = vmr_json("export", "--out", out)["exported"]
    paths = [e["path"] for e in first]
    assert len(set(paths)) == len(results) == len(os.listdir(out))
    for item in first:
        assert abs(ffprobe_duration(item["path"]) - (item["end"] - item["start"])) <= 0.1
    stamps = {p: os.stat(p).st_mtime_ns for p in paths}
    again = vmr_json("export", "--out", out)["exported"]  # the same batch again: what it cut stands
    assert [e["path"] for e in again] == paths and all(e["existing"] for e in again)
    assert all(os.stat(p).st_mtime_ns == t for p, t in stamps.items())  # nothing overwritten
    assert len(os.listdir(out)) == len(results)
    os.unlink(paths[0])  # gone since: cut again, under its free name
    again = vmr_json("export", "--out", out)["exported"]
    assert [e["path"] for e in again] == paths and [e.get("existing", False) for e in again] == \
        [False] + [True] * (len(paths) - 1)
    forced = [e["path"] for e in vmr_json("export", "--out", out, "--force")["exported"]]
    assert forced == paths  # --force cuts again, replacing the same names, still one file per result
    assert len(os.listdir(out)) == len(results)
    code, out_text, err = vmr("export", "--out", out, "--search", "1")
    assert out_text.count("(cut before)") == len(results)
    assert len(vmr_json("export", "1", "1", "--out", out)["exported"]) == 1  # a rank named twice: one cut
    assert not [p for p in os.listdir(out) if p.startswith(".vmr-export-")]


# -- 12.3: vmr searches, vmr show, and which search an export cuts from -------------------------
def test_searches_lists_the_history_and_show_prints_a_logged_search(indexed, tmp_path):
    code, red_table, _ = vmr("search", "red", "--top-k", "3")
    green = vmr_json("search", "green", "--top-k", "2")
    vmr("search", "pattern", "--paths")
    listed = vmr_json("searches")
    assert listed["total"] == 3
    assert [(s["search_id"], s["query"], s["results"]) for s in listed["searches"]] == \
        [(3, "pattern", listed["searches"][0]["results"]), (2, "green", len(green["results"])), (1, "red", 3)]
    assert all(s["created_at"][:2] == "20" and "T" in s["created_at"] for s in listed["searches"])
    code, out, err = vmr("searches", "--limit", "2")
    lines = out.splitlines()
    assert lines[0].split() == ["id", "time", "results", "query"] and len(lines) == 3
    assert lines[1].split()[0] == "3" and lines[2].split()[-1] == "green"
    assert lines[2].split()[3] == str(len(green["results"]))
    assert err.strip() == "2 of 3 searches; --limit 0 lists all"
    assert len(vmr_json("searches", "--limit", "0")["searches"]) == 3
    # show: the table by default, the search --json shape with --json, the page with --html
    code, out, err = vmr("show", "1")
    assert out == red_table and err.startswith('search 1 ("red", 20')
    shown = vmr_json("show", "2")
    assert list(shown) == list(green) and shown["results"] == green["results"]
    assert shown["query"] == "green" and shown["search_id"] == 2
    assert {k: v for k, v in shown["stats"].items() if k != "time"} == \
        {k: v for k, v in green["stats"].items() if k != "time"}
    assert vmr_json("show")["search_id"] == 3  # no id: the last search, and it says which
    code, out, err = vmr("show", "1", "--html", tmp_path / "page.html")
    assert out == red_table and (tmp_path / "page.html").stat().st_size > 0
    # export says which search and query it cuts from
    code, out, err = vmr("export", "1", "--search", "2", "--out", tmp_path)
    assert err.startswith('cutting 1 of 2 results of search 2 ("green", 20')


def test_read_only_library_export_refuses_the_last_logged_search(indexed, tmp_path, isolated_library):
    vmr_json("search", "green", "--top-k", "2")  # search 1, logged
    out = tmp_path / "out"
    out.mkdir()
    for base, dirs, files in os.walk(isolated_library):
        for name in files:
            os.chmod(os.path.join(base, name), 0o444)
        os.chmod(base, 0o555)
    try:
        shown = vmr_subprocess(isolated_library, "search", "red", "--top-k", "1", "--json")
        assert shown.returncode == 0 and json.loads(shown.stdout)["search_id"] is None
        export = vmr_subprocess(isolated_library, "export", "1", "--out", out)
        assert export.returncode == 1 and export.stderr.strip().splitlines()[-1] == (
            "Error: this library is read-only, so the searches made on it are not logged and the last "
            "logged search is not the one just shown; name one with --search ID ('vmr searches' lists "
            "them), or use a writable --library")
        assert os.listdir(out) == []
        named = vmr_subprocess(isolated_library, "export", "1", "--search", "1", "--out", out, "--json")
        assert named.returncode == 0, named.stderr
        assert 'cutting 1 of 2 results of search 1 ("green", ' in named.stderr
        assert os.path.basename(json.loads(named.stdout)["exported"][0]["source"]) in {
            "red_then_blue.mp4", "green.mp4", "pattern.mp4"}
    finally:
        for base, dirs, files in os.walk(isolated_library):
            os.chmod(base, 0o755)


# -- 11.14: numbers no SQLite or comparison can hold ---------------------------------------------
def test_search_ids_past_64_bits_and_non_finite_min_score(indexed, tmp_path):
    vmr_json("search", "red", "--top-k", "1")
    big = "99999999999999999999"
    for args in (("export", "--search", big, "1", "--out", tmp_path), ("show", big)):
        code, out, err = vmr(*args, expect=1)
        assert err.strip() == f"Error: no search with id {args[2] if args[0] == 'export' else args[1]} " \
                              "('vmr searches' lists them)"
    for args in (("export", "--search", "0", "1"), ("show", "0"), ("play", "1", "--search", "0")):
        code, out, err = vmr(*args, expect=2)  # ids start at 1: one usage error for all three (two said
        assert "0 is not in the range x>=1" in err, err  # 'no search with id 0', exit 1)
    for limit in (2**63 - 1, 2**63, 10**30):  # more than any log holds: all of it, never an OverflowError
        assert len(vmr_json("searches", "--limit", limit)["searches"]) == 1
    for bad in ("nan", "inf", "-inf", "NaN"):
        code, out, err = vmr("search", "red", "--min-score", bad, expect=2)
        assert err.strip().splitlines()[-1] == \
            f"Error: Invalid value for '--min-score': must be a finite number, not {bad}"
        assert "Traceback" not in err and out == ""


CHARADES = "a Charades-STA line is 'VID START END##query', and this one has"
BAD_ANNOTATIONS = [
    ('{"query": "a", "vid": "green", "relevant_windows": [[1]]}', "window [1] is not [start, end] in seconds"),
    ('{"query": "a", "vid": "green", "relevant_windows": [[3, 1]]}', "window [3, 1] must have 0 <= start < end"),
    ('{"query": "a", "vid": "green", "relevant_windows": [[NaN, 1]]}',
     "window [NaN, 1] holds a time that is not a finite number"),
    ('{"query": "a", "vid": "green", "relevant_windows": [[0, Infinity]]}',
     "window [0, Infinity] holds a time that is not a finite number"),
    ('{"query": "a", "vid": "green", "relevant_windows": ["12"]}', 'window "12" is not [start, end] in seconds'),
    ('{"query": "a", "vid": "green", "relevant_windows": []}',
     "relevant_windows must be a list of [start, end] pairs in seconds"),
    ('{"query": "a", "vid": "green", "relevant_windows": [[-1, 2]]}', "window [-1, 2] must have 0 <= start < end"),
    ('{"query": "  ", "vid": "green", "relevant_windows": [[0, 2]]}', "the query is empty or not text"),
    ("green 2.0 nan##a green screen", "window [2.0, NaN] holds a time that is not a finite number"),
    ("green 3.5 1.0##a green screen", "window [3.5, 1.0] must have 0 <= start < end"),
    ("green 1 inf##a green screen", "window [1.0, Infinity] holds a time that is not a finite number"),
    ('{"qid": 1, "query": "a", "vid": "green", "relevant_windows": [[0, 1]]}',
     "qid 1 again (first on line 1); each query needs its own"),
    # written back into --predictions, where NaN is not JSON
    ('{"qid": NaN, "query": "a", "vid": "green", "relevant_windows": [[0, 1]]}',
     "qid NaN holds a number that is not finite"),
    ('{"qid": [2, -Infinity], "query": "a", "vid": "green", "relevant_windows": [[0, 1]]}',
     "qid [2, -Infinity] holds a number that is not finite"),
    # hand-written Charades-STA lines: Python's "too many values to unpack (expected 3)" before
    ("IMG 0001 1.0 5.0##a dog runs", f"{CHARADES} 4 fields before '##': a video id cannot hold spaces in this "
                                     "format (QVHighlights JSONL can), and there are no other columns"),
    ("green 60.0 1.0 5.0##a dog runs", f"{CHARADES} 4 fields before '##': a video id cannot hold spaces in this "
                                       "format (QVHighlights JSONL can), and there are no other columns"),
    ("green 1.0##a dog runs", f"{CHARADES} 2 fields before '##'"),
    ("green 1.0 5.0 a dog runs", "a Charades-STA line is 'VID START END##query', and this one has no '##'"),
    ("green 1.0 five##a dog runs",
     "a Charades-STA line is 'VID START END##query', and its END 'five' is not a number of seconds"),
]


@pytest.mark.parametrize("line, reason", BAD_ANNOTATIONS)
def test_bad_annotation_windows_are_rejected_when_read_with_file_and_line(line, reason, tmp_path):
    videos = tmp_path / "v"
    make_video(videos / "green.mp4", [("green", 2.0)])
    good = ('{"qid": 1, "query": "a green screen", "vid": "green", "relevant_windows": [[0, 2]]}'
            if line.startswith("{") else "green 0 2##a green screen")  # one format per file
    path = tmp_path / "ann.jsonl"
    path.write_text(f"{good}\n\n{line}\n")  # a blank line: the line number is the file's
    code, out, err = vmr("eval", path, "--videos", videos, expect=1)
    assert err.strip() == f"Error: {path}:3: {reason}"
    assert vmr_json("status")["videos"] == 0  # rejected before anything was indexed


def test_annotations_with_a_byte_order_mark_and_unicode_line_separators_are_read(tmp_path):
    """A BOM (Windows editors write one) is not part of the first video id, and a line ends at
    "\n" (or "\r\n") only: U+2028, U+0085 or a form feed inside a query is text, not a new line."""
    from vmr_cli.evaluate import read_annotations

    path = tmp_path / "ann.txt"
    path.write_bytes("\ufeffgreen 0 2##a green\u2028screen\r\nred 1 3##a red\x0cone\u0085here\n".encode())
    assert [(it["vid"], it["query"], it["where"]) for it in read_annotations(str(path))] == [
        ("green", "a green\u2028screen", f"{path}:1"), ("red", "a red\x0cone\u0085here", f"{path}:2")]
    row = {"qid": 7, "query": "a green\u2028screen", "vid": "green", "relevant_windows": [[0, 2]]}
    path.write_bytes("\ufeff".encode() + json.dumps(row, ensure_ascii=False).encode() + b"\n")
    [item] = read_annotations(str(path))
    assert (item["qid"], item["query"], item["vid"]) == (7, "a green\u2028screen", "green")
    path.write_bytes("green 0 2##a\u2029b\nred 3 1##c\n".encode())  # the bad line is named as it is in the file
    with pytest.raises(VmrError, match=f"{path}:2: window"):
        read_annotations(str(path))
    path.write_bytes(b"green 0 2##a\rb\r\nred 1 3##c\r\n")  # a lone "\r" is text too (it split the line)
    assert [(it["query"], it["where"]) for it in read_annotations(str(path))] == [
        ("a\rb", f"{path}:1"), ("c", f"{path}:2")]
    path.write_bytes(b"green 0 2##a\rb\nred 3 1##c\n")
    with pytest.raises(VmrError, match=f"{path}:2: window"):
        read_annotations(str(path))
    path.write_bytes(b"green 0 2##a\rred 1 3##c\r")  # old Mac line ends only: lines, not one line
    assert [(it["query"], it["where"]) for it in read_annotations(str(path))] == [
        ("a", f"{path}:1"), ("c", f"{path}:2")]


def test_a_line_nested_too_deeply_for_json_is_named_with_file_and_line(tmp_path):
    """A damaged line of 100,000 "[" was a RecursionError traceback."""
    from vmr_cli.evaluate import are_predictions, read_annotations

    path = tmp_path / "ann.jsonl"
    line = '{"qid": ' + "[" * 100000
    path.write_text(f'{{"qid": 1, "query": "a", "vid": "green", "relevant_windows": [[0, 2]]}}\n{line}\n')
    with pytest.raises(VmrError) as raised:
        read_annotations(str(path))
    assert str(raised.value) == f"{path}:2: not Charades-STA or QVHighlights (nested too deeply)"
    assert not are_predictions(line.encode())


def test_annotations_mixing_formats_and_ambiguous_video_ids_are_refused(tmp_path):
    """A Charades-STA line among QVHighlights ones (their line numbers and qids would collide), and
    an annotated id two files answer to (a/x.mp4, b/x.mp4): refused before anything is indexed."""
    videos = tmp_path / "v"
    make_video(videos / "green.mp4", [("green", 2.0)])
    path = tmp_path / "mixed.txt"
    path.write_text('{"qid": 2, "query": "a green screen", "vid": "green", "relevant_windows": [[0, 2]]}\n'
                    "green 0 2##a green screen\n")
    code, out, err = vmr("eval", path, "--videos", videos, expect=1)
    assert err.strip() == (f"Error: {path}:2: a Charades-STA line in a file of QVHighlights lines (from line 1); "
                           "one format per file")
    make_video(videos / "a" / "red.mp4", [("red", 2.0)])
    make_video(videos / "b" / "red.mp4", [("blue", 2.0)])
    path.write_text("red 0 2##a red screen\n")
    for command in (("eval", path, "--videos", videos),
                    ("train", path, "--videos", videos, "--out", tmp_path / "t", "--epochs", "1")):
        code, out, err = vmr(*command, expect=1)
        assert err.strip() == (f"Error: annotated video 'red' is ambiguous under {videos}: {videos / 'a' / 'red.mp4'} "
                               f"and {videos / 'b' / 'red.mp4'} both answer to it; write the one meant as its path "
                               "relative to --videos: 'a/red' or 'b/red'"), command
    assert vmr_json("status")["videos"] == 0


def test_comments_in_charades_sta_are_skipped_and_named_in_jsonl_and_a_qid_met_by_a_line_number(tmp_path):
    """'# holiday clips' atop a Charades-STA file was 'not enough values to unpack'; a JSONL line
    commented out was 'a Charades-STA line in a file of QVHighlights lines'; a line without a qid
    after one with "qid": 2 was 'qid 2 again', though it wrote none (vmr numbers it by its line)."""
    from vmr_cli.evaluate import read_annotations

    path = tmp_path / "ann.txt"
    path.write_text("# holiday clips\n\n   # green first\ngreen 0 2##a green screen\n#red 0 2##a red screen\n")
    assert [(it["vid"], it["qid"], it["where"]) for it in read_annotations(str(path))] == [
        ("green", 4, f"{path}:4")]
    row = '{"qid": 2, "query": "a", "vid": "green", "relevant_windows": [[0, 1]]}'
    numbered = '{"query": "b", "vid": "green", "relevant_windows": [[1, 2]]}'
    comment = ("a '#' comment in a QVHighlights JSONL file; JSONL has no comments (only Charades-STA text files "
               "may hold them): delete the line")
    for text, message in (
            (f"{row}\n# {numbered}\n", f"{path}:2: {comment}"),
            (f"# queries\n{row}\n", f"{path}:1: {comment}"),
            (f"{row}\n{numbered}\n", f"{path}:2: line 2 has no qid, and vmr numbers such lines by their line, 2, "
                                      "which line 1 gives as its qid; give every line a qid or none"),
            (f"{numbered}\n{row.replace('2', '1', 1)}\n", f"{path}:2: line 1 has no qid, and vmr numbers such lines "
                                                           "by their line, 1, which line 2 gives as its qid; give every "
                                                           "line a qid or none")):
        path.write_text(text)
        with pytest.raises(VmrError) as raised:
            read_annotations(str(path))
        assert str(raised.value) == message
    path.write_text(f"{numbered}\n{row}\n")  # numbered 1 and qid 2: no collision
    assert [it["qid"] for it in read_annotations(str(path))] == [1, 2]


def test_video_ids_by_name_extension_relative_path_and_unicode_normalisation(tiny_model, tmp_path):
    """An id is a file's stem, its name with the extension, or its path relative to --videos (with
    or without the extension), compared after NFC normalisation: a file named on a Mac (NFD
    'e\u0301te\u0301.mp4') answers to 'été' typed elsewhere.  Each was 'not found'; the
    predictions keep the id as it was written."""
    import unicodedata

    from vmr_cli.evaluate import video_files

    videos = tmp_path / "v"
    make_video(videos / "trip1" / "clip.mp4", [("red", 2.0)])
    make_video(videos / "trip2" / "clip.mp4", [("blue", 2.0)])
    make_video(videos / "trip2" / "other.mp4", [("blue", 2.0)])
    composed, decomposed = unicodedata.normalize("NFC", "été"), unicodedata.normalize("NFD", "été")
    make_video(videos / f"{decomposed}.mp4", [("green", 2.0)])
    path = tmp_path / "ann.txt"
    ids = [composed, f"{composed}.mp4", "trip1/clip", "trip2/clip.mp4", "other", "trip2/other.mp4", "other.mp4"]
    path.write_text("".join(f"{vid} 0 2##a screen\n" for vid in ids))
    report = vmr_json("eval", path, "--videos", videos, "--model", tiny_model, "--predictions", tmp_path / "p.jsonl")
    assert report["n_queries"] == len(ids)
    predictions = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [p["vid"] for p in predictions] == ids
    files = video_files(str(videos), ids)
    assert files[composed] == files[f"{composed}.mp4"] == str(videos / f"{decomposed}.mp4")  # the real name
    assert files["trip1/clip"] == str(videos / "trip1" / "clip.mp4")
    for vid in ("clip", "clip.mp4"):  # a form that names two files
        path.write_text(f"{vid} 0 2##a screen\n")
        for command in (("eval", path, "--videos", videos),
                        ("train", path, "--videos", videos, "--out", tmp_path / "t", "--epochs", "1")):
            code, out, err = vmr(*command, expect=1)
            assert err.strip() == (f"Error: annotated video '{vid}' is ambiguous under {videos}: "
                                   f"{videos / 'trip1' / 'clip.mp4'} and {videos / 'trip2' / 'clip.mp4'} both answer "
                                   "to it; write the one meant as its path relative to --videos: 'trip1/clip' or "
                                   "'trip2/clip'"), command
    # a file at the top and one in a folder: 'clip' names both (the top one was taken silently)
    make_video(videos / "clip.mp4", [("green", 2.0)])
    for vid in ("clip", "clip.mp4"):
        with pytest.raises(VmrError) as raised:
            video_files(str(videos), [vid])
        assert str(raised.value).endswith("both answer to it; write the one meant as its path relative to "
                                          "--videos: './clip' or 'trip1/clip'"), str(raised.value)
    assert video_files(str(videos), ["./clip", "./clip.mp4", "trip1/clip"]) == {
        "./clip": str(videos / "clip.mp4"), "./clip.mp4": str(videos / "clip.mp4"),
        "trip1/clip": str(videos / "trip1" / "clip.mp4")}
    path.write_text("trip3/clip 0 2##a screen\n")
    for command in (("eval", path, "--videos", videos),
                    ("train", path, "--videos", videos, "--out", tmp_path / "t", "--epochs", "1")):
        code, out, err = vmr(*command, expect=1)
        assert err.strip() == (f"Error: 1 annotated video not found under {videos}, e.g. 'trip3/clip' (an id is a "
                               "video's file name under --videos, with or without its extension, or its path "
                               "relative to --videos, such as trip1/clip or trip1/clip.mp4)"), command


# -- 11.15: file names on stderr are escaped, every message ---------------------------------------
def test_terminal_escapes_in_file_names_never_reach_stderr(tiny_model, tmp_path):
    folder = tmp_path / f"v{ESC}]0;owned{ESC}\\"
    hostile = folder / f"{ESC}[2Jclear\x07.mp4"
    make_video(hostile, [("red", 2.0)])
    make_video(folder / "plain.mp4", [("red", 2.5)])  # not a copy (a copy's moments are searched once)
    (folder / f"{ESC}[31mbroken.mp4").write_bytes(os.urandom(2048))
    code, out, err = vmr("index", folder, "--model", tiny_model, expect=1)
    assert "failed: " in err and ESC not in err  # the failed: line, ffmpeg's reason included
    os.remove(hostile)
    code, out, err = vmr("search", "red")
    assert "warning: skipped" in err and ESC not in err and "\\x1b[2Jclear\\x07.mp4" in err
    for args in (("index", tmp_path / f"{ESC}[2Jnothing"),                      # Error: from vmr
                 ("eval", tmp_path / f"{ESC}]0;t.jsonl", "--videos", tmp_path),
                 ("export", "--search", "1", "--out", tmp_path / f"x{ESC}[1m" / "y"),
                 ("show", "1", "--html", tmp_path / f"{ESC}[1mno" / "page.html")):   # an OSError's filename
        code, out, err = vmr(*args, expect=1)
        assert err.startswith("Error: ") and ESC not in err, (args, err)
        assert "\\x1b" in err or args[0] == "show", (args, err)
    (tmp_path / f"file{ESC}[1m").write_text("")
    code, out, err = vmr("export", "--out", tmp_path / f"file{ESC}[1m", expect=2)  # click's own error
    assert "is a file" in err and ESC not in err


def test_export_follows_a_move_the_index_recorded_and_warns_of_a_changed_file(indexed, tmp_path):
    """Moved after the search, then 'vmr index' (which records the move): export cuts the file
    where it is now. Changed after the search: the cut is made, with a warning that its times
    may not show the moment."""
    found = vmr_json("search", "a green screen", "--top-k", "3")
    rank = next(r["rank"] for r in found["results"] if r["video"].endswith("green.mp4"))
    os.rename(indexed / "green.mp4", indexed / "renamed.mp4")
    assert vmr_json("index")["moved"] == 1
    done = vmr_json("export", rank, "--out", tmp_path / "cuts")
    [item] = done["exported"]
    assert item["source"] == str(indexed / "renamed.mp4") and "warning" not in item and os.path.isfile(item["path"])
    code, out, err = vmr("export", rank, "--out", tmp_path / "cuts")
    assert "warning" not in err
    code, out, err = vmr("show", "--html", tmp_path / "page.html")  # where it is now, not "no longer exists"
    page = (tmp_path / "page.html").read_text()
    assert "renamed.mp4" in page and "no longer exists" not in page and "renamed.mp4" in out
    assert str(indexed / "renamed.mp4") in [r["video"] for r in vmr_json("show")["results"]]

    make_video(indexed / "renamed.mp4", [("yellow", 4.0)])  # new content under the same name
    code, out, err = vmr("export", rank, "--out", tmp_path / "cuts 2", "--json")
    [item] = json.loads(out)["exported"]
    expected = (f"result {rank}: {indexed / 'renamed.mp4'} changed since this search (modified or re-indexed); "
                "its times may not show the moment: search again")
    assert item["warning"] == expected and f"warning: {expected}" in err
    vmr_json("index")  # re-indexed as new content: what the search saw is in no file any more
    code, out, err = vmr("export", rank, "--out", tmp_path / "cuts 3", expect=1)
    assert f"Error: result {rank}: source no longer exists: {indexed / 'green.mp4'}" in err


def test_exporting_every_result_cuts_what_it_can_when_one_source_is_gone(indexed, tmp_path):
    """With no rank named, one deleted source used to stop the whole export before any cut."""
    found = vmr_json("search", "a green screen", "--top-k", "5")["results"]
    green = next(r for r in found if r["video"].endswith("green.mp4"))
    os.unlink(green["video"])
    code, out, err = vmr("export", "--out", tmp_path / "cuts", "--json", expect=1)
    done = json.loads(out)
    assert [s["rank"] for s in done["skipped"]] == [r["rank"] for r in found if r["video"] == green["video"]]
    assert f"skipped: result {green['rank']}: source no longer exists" in err
    assert sorted(e["rank"] for e in done["exported"]) == sorted(r["rank"] for r in found
                                                                  if r["video"] != green["video"])
    assert all(os.path.isfile(e["path"]) for e in done["exported"])
    code, out, err = vmr("export", str(green["rank"]), "--out", tmp_path / "cuts 2", expect=1)  # named: an error
    assert f"Error: result {green['rank']}: source no longer exists" in err and not (tmp_path / "cuts 2").exists()


def test_bare_vmr_prints_its_help_on_lines_as_click_writes_it():
    """Click's errors are escaped line by line: the help that bare 'vmr' prints keeps its lines."""
    code, out, err = vmr(expect=None)
    text = out + err
    assert code in (0, 2) and "\\n" not in text
    assert " [OPTIONS] COMMAND [ARGS]...\n" in text and "\nCommands:\n" in text


# -- 12.7: --library after the command, completion ----------------------------------------------
def test_library_is_accepted_after_the_command_too(indexed, tmp_path, isolated_library, monkeypatch):
    for name, command in cli.commands.items():
        assert "--library" in [o for p in command.params for o in p.opts], name
    vmr_json("search", "red", "--top-k", "1")
    monkeypatch.setenv("VMR_LIBRARY", str(tmp_path / "elsewhere"))
    assert vmr_json("status", "--library", isolated_library)["videos"] == 3
    assert vmr_json("searches", "--library", isolated_library)["total"] == 1
    assert vmr_json("show", "1", "--library", isolated_library)["query"] == "red"
    assert vmr_json("search", "green", "--library", isolated_library)["search_id"] == 2
    assert vmr_json("export", "1", "--out", tmp_path / "o", "--library", isolated_library)["search_id"] == 2
    assert vmr_json("index", indexed, "--library", isolated_library)["unchanged"] == 3
    # after the command wins over before it
    assert vmr_json("--library", tmp_path / "other", "status", "--library", isolated_library)["videos"] == 3
    assert not (tmp_path / "elsewhere").exists()
    # A $VMR_LIBRARY naming a file: --library still wins, --help still helps, and the error
    # names the variable (click checked it as the group's option, naming '--library', exit 2).
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("VMR_LIBRARY", str(tmp_path / "afile"))
    assert vmr_json("status", "--library", isolated_library)["videos"] == 3
    assert "status [OPTIONS]" in vmr("status", "--help")[1]
    for library in (tmp_path / "afile", tmp_path / "afile" / "lib"):  # or a folder under a file
        monkeypatch.setenv("VMR_LIBRARY", str(library))
        assert vmr("status", expect=1)[2] == (f"Error: cannot use {library} as the library folder: "
                                              f"{tmp_path / 'afile'} is a file; name a folder with $VMR_LIBRARY\n")
    # A '~' the shell left alone (quoted) is the home folder, not a folder named '~' made here.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VMR_LIBRARY", "~/lib")
    assert vmr_json("status")["library"] == str(tmp_path / "home" / "lib")
    assert vmr_json("status", "--library", "~/lib2")["library"] == str(tmp_path / "home" / "lib2")
    assert not (tmp_path / "~").exists()
    # A library an older vmr made in a folder named '~' here is pointed out, not taken for none.
    shutil.copytree(isolated_library, tmp_path / "~" / "lib")
    said = (f"~/lib is {tmp_path / 'home' / 'lib'}, which holds no library, but an older vmr made it in a folder "
            f"named '~' here: {tmp_path / '~' / 'lib'}; move that to {tmp_path / 'home' / 'lib'}, or name it as ./~/lib")
    assert vmr("status", expect=1)[2] == f"Error: $VMR_LIBRARY {said}\n"
    assert said in vmr("status", "--library", "~/lib", expect=2)[2]
    assert vmr_json("status", "--library", "./~/lib")["videos"] == 3


def test_shell_completion_script_and_completions():
    env = dict(os.environ, _VMR_COMPLETE="bash_source")
    script = subprocess.run([sys.executable, "-m", "vmr_cli"], env=env, capture_output=True, text=True, cwd=ROOT)
    assert "_vmr_completion()" in script.stdout and "complete -o nosort -F _vmr_completion vmr" in script.stdout
    env = dict(os.environ, _VMR_COMPLETE="bash_complete", COMP_WORDS="vmr sea", COMP_CWORD="1")
    words = subprocess.run([sys.executable, "-m", "vmr_cli"], env=env, capture_output=True, text=True, cwd=ROOT)
    assert words.stdout.split() == ["plain,search", "plain,searches"]


def test_the_library_folder_is_never_indexed(tiny_model, tmp_path):
    """A library kept under an indexed folder: its previews (MP4s) are vmr's own, never results."""
    from conftest import make_video

    videos = tmp_path / "videos"
    make_video(videos / "a.mp4", [("red", 2.0)])
    library = videos / "vmr library"
    make_video(library / "previews" / "moment.mp4", [("blue", 2.0)])  # as a page would leave it
    summary = vmr_json("--library", library, "index", videos, "--model", tiny_model)
    assert summary["added"] == 1
    assert [r["video"] for r in vmr_json("--library", library, "search", "blue")["results"]] == \
        [str(videos / "a.mp4")]
    # ... and so are another library's, indexed into a second library elsewhere
    summary = vmr_json("--library", tmp_path / "second", "index", videos, "--model", tiny_model)
    assert summary["added"] == 1 and summary["failed"] == []


def test_windows_after_the_video_ends_are_named_by_eval_and_train(tiny_model, tmp_path):
    """A window past its video's end (a wrong id or wrong times) can never be found: said, with
    FILE:LINE, instead of silently scoring zero."""
    videos = tmp_path / "v"
    make_video(videos / "green.mp4", [("green", 4.0)])
    path = tmp_path / "ann.txt"
    path.write_text("green 0 2##a green screen\ngreen 100 200##a green screen later\n")
    code, out, err = vmr("eval", path, "--videos", videos, "--model", tiny_model, "--json")
    expected = (f"{path}:2: window [100, 200] starts after video 'green' ends (4.0 s); no search can find it")
    assert json.loads(out)["warnings"] == [expected] and f"warning: {expected}" in err
    code, out, err = vmr("train", path, "--videos", videos, "--out", tmp_path / "t", "--epochs", "1")
    assert f"warning: {expected}" in err


def test_one_query_is_counted_as_one_query_by_eval_and_train(tiny_model, tmp_path):
    videos = tmp_path / "v"
    make_video(videos / "green.mp4", [("green", 4.0)])
    path = tmp_path / "ann.txt"
    path.write_text("green 0 2##a green screen\n")
    code, out, err = vmr("eval", path, "--videos", videos, "--model", tiny_model)
    assert out.startswith("1 query, trimmed search\n")
    code, out, err = vmr("train", path, "--videos", videos, "--out", tmp_path / "t", "--epochs", "1")
    assert f"trimmer in {tmp_path / 't'}: 1 query, 1 epoch (teacher, then student)" in out


def test_eval_names_an_annotated_video_that_could_not_be_indexed_and_finds_what_index_takes(tiny_model, tmp_path):
    """A broken annotated video: eval said "video not in the library" after running (and
    discarding) the queries before it; now why, before any query.  And a .qt file vmr index
    takes from a folder is found by its id (eval took only the common containers)."""
    videos = tmp_path / "v"
    make_video(videos / "green.mp4", [("green", 4.0)])
    make_video(videos / "red.mp4", [("red", 4.0)])
    (videos / "red.mp4").rename(videos / "red.qt")
    (videos / "bad.mp4").write_bytes(os.urandom(4000))
    path = tmp_path / "ann.txt"
    path.write_text("green 0 2##a green screen\nred 0 2##a red screen\n")
    report = json.loads(vmr("eval", path, "--videos", videos, "--model", tiny_model, "--json")[1])
    assert report["n_queries"] == 2
    (tmp_path / "link").symlink_to(videos)  # the same videos through a link: indexed once, found
    again = json.loads(vmr("eval", path, "--videos", tmp_path / "link", "--json")[1])
    assert again["single"] == report["single"] and again["corpus"] == report["corpus"]
    path.write_text("green 0 2##a green screen\nbad 1 2##a dog\n")
    code, out, err = vmr("eval", path, "--videos", videos, expect=1)
    assert err.startswith("Error: annotated video bad could not be indexed: ") and str(videos / "bad.mp4") in err
    assert len(err.strip().splitlines()) == 1 and out == ""


def _late_result(query: str) -> dict:
    """A result of a fresh search that starts a second or more into its video."""
    found = vmr_json("search", query, "--top-k", "9", "--refine", "0")["results"]
    late = [r for r in found if r["start"] >= 1.0]
    assert late, found
    return late[0]


def test_export_of_a_moment_that_a_shortened_file_no_longer_holds(indexed, tmp_path):
    """Shortened and re-indexed after the search, the cut failed with 'the cut holds no video
    frame' and the 'changed since this search' warning was dropped; shortened only, the same
    ffmpeg reason said nothing of the change."""
    result = _late_result("a blue screen")
    source = result["video"]
    make_video(source, [("red", 0.5)])
    code, out, err = vmr("export", result["rank"], "--out", tmp_path / "cuts", expect=1)
    assert "the file changed since this search, so the moment may lie beyond its end now" in err, err
    vmr_json("index")
    code, out, err = vmr("export", result["rank"], "--out", tmp_path / "cuts", expect=1)
    assert f"now lies beyond the end of {source}" in err and "the file changed since this search" in err, err
    assert "holds no video frame" not in err
    code, out, err = vmr("show")  # it said nothing of it: the table alone
    assert f"warning: result {result['rank']}: the moment" in err and f"now lies beyond the end of {source}" in err
    code, out, err_json = vmr("show", "--json")  # nor with --json, where a script looks
    assert err_json == err.replace(err.splitlines()[-1] + "\n", ""), (err_json, err)  # less the label line
    shown = {r["rank"]: r for r in json.loads(out)["results"]}
    assert f"now lies beyond the end of {source}" in shown[result["rank"]]["warning"]
    assert all("warning" not in r for rank, r in shown.items() if r["video"] != source)


def test_export_of_a_forgotten_file_does_not_say_it_was_modified_or_re_indexed(indexed, tmp_path):
    found = vmr_json("search", "a green screen", "--top-k", "1")["results"][0]
    vmr("forget", found["video"])
    code, out, err = vmr("export", "1", "--out", tmp_path / "cuts")
    assert f"{found['video']} is no longer in the library (forgotten since this search?)" in err, err
    assert "modified or re-indexed" not in err
