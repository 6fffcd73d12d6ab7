"""`vmr play`, writes onto special files and symlinks, and progress on stderr.

`vmr play` runs fake mpv / vlc / xdg-open put first on PATH, which record their
argv; searches are logged straight into the catalog, so most tests need
neither a model nor decoding.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import urllib.parse

import pytest

from conftest import make_video, vmr, vmr_json, vmr_subprocess
from vmr_cli.errors import VmrError

HOSTILE = "-rf --start=99\nnew line.mp4"


def log_search(results, query="red car") -> int:
    """A logged search with results (video, start, end) in the test's library."""
    from vmr_cli.library import Library

    lib = Library(None, create=True)
    rows = [{"rank": i + 1, "video": str(video), "start": start, "end": end, "score": 0.9 - i / 10}
            for i, (video, start, end) in enumerate(results)]
    search_id = lib.catalog.log_search(query, "tiny", {}, {}, rows)
    lib.close()
    return search_id


@pytest.fixture
def fake_players(tmp_path, monkeypatch):
    """A folder of fake players first (and alone) on PATH; returns (folder, read_calls)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_PLAYER_LOG", str(log))
    monkeypatch.setenv("PATH", str(folder))

    def install(*names, status=0):
        for name in names:
            script = folder / name
            script.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                              "with open(os.environ['FAKE_PLAYER_LOG'], 'a') as f:\n"
                              "    f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + '\\n')\n"
                              f"sys.exit({status})\n")
            script.chmod(0o755)

    def calls():
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    return install, calls


# -- vmr play --------------------------------------------------------------------------

def test_play_starts_mpv_at_the_moment_with_hostile_names(tmp_path, fake_players):
    install, calls = fake_players
    install("mpv", "vlc", "xdg-open")
    video = tmp_path / HOSTILE
    video.write_bytes(b"not decoded by vmr play")
    other = tmp_path / "other.mp4"
    other.write_bytes(b"x")
    first = log_search([(video, 1.5, 3.25)])
    log_search([(other, 10.0, 12.0), (video, 0.0, 1.0)])

    code, out, err = vmr("play", 1, "--search", first)
    assert out == ""
    assert calls() == [["mpv", "--start=1.500", "--end=3.250", "--", str(video)]]
    assert f'search {first} "red car", rank 1:' in err and "-rf --start=99\\nnew line.mp4" in err

    vmr("play", 2)  # the last search by default
    assert calls()[-1] == ["mpv", "--start=0.000", "--end=1.000", "--", str(video)]


def test_play_uses_vlc_then_the_system_opener(tmp_path, fake_players):
    install, calls = fake_players
    video = tmp_path / HOSTILE
    video.write_bytes(b"x")
    log_search([(video, 2.0, 4.0)])

    code, _out, err = vmr("play", 1, expect=1)  # nothing on PATH
    assert "no player found: install mpv or VLC" in err and "Traceback" not in err

    install("xdg-open")
    _code, _out, err = vmr("play", 1)
    assert calls()[-1] == ["xdg-open", str(video)]
    assert "cannot start at a time: seek to 0:00:02.0" in err

    install("vlc")
    vmr("play", 1)
    name, start, stop, done, url = calls()[-1]
    assert (name, start, stop, done) == ("vlc", "--start-time=2.000", "--stop-time=4.000", "--play-and-exit")
    assert url.startswith("file:///") and "\n" not in url
    assert urllib.parse.unquote_to_bytes(url[len("file://"):]) == os.fsencode(video)

    install("mpv")
    vmr("play", 1, "--player", "vlc")  # the user's choice beats mpv
    assert calls()[-1][0] == "vlc"
    code, _out, err = vmr("play", 1, "--player", "system")
    assert calls()[-1][0] == "xdg-open"


def test_play_errors_are_one_line(tmp_path, fake_players):
    install, calls = fake_players
    code, _out, err = vmr("play", 1, expect=1)
    assert "Error:" in err and "Traceback" not in err  # no library yet
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    sid = log_search([(video, 0.0, 1.0)])
    install("mpv", status=2)
    _code, _out, err = vmr("play", 5, expect=1)
    assert err.strip() == f"Error: search {sid} has 1 result; there is no rank 5"
    _code, _out, err = vmr("play", 1, "--search", 99, expect=1)
    assert err.strip() == "Error: no search with id 99 ('vmr searches' lists them)"
    with pytest.MonkeyPatch.context() as patch:  # the variable's fault is said as such, not an option's
        patch.setenv("VMR_PLAYER", "mplayer")
        _code, _out, err = vmr("play", 1, expect=1)
        assert err == "Error: $VMR_PLAYER is 'mplayer': not one of auto, mpv, vlc, system\n"
        patch.setenv("VMR_PLAYER", "vlc")
        assert "vlc not found on PATH" in vmr("play", 1, expect=1)[2]
    _code, _out, err = vmr("play", 1, expect=1)
    assert err.strip().endswith("Error: mpv exited with status 2")
    _code, _out, err = vmr("play", 1, "--player", "vlc", expect=1)
    assert "vlc not found on PATH" in err
    video.unlink()
    calls_before = len(calls())
    _code, _out, err = vmr("play", 1, expect=1)
    assert "result 1: source no longer exists" in err and len(calls()) == calls_before


def test_play_on_a_read_only_library_needs_a_search_id(tmp_path):
    from vmr_cli.library import Library
    from vmr_cli.player import pick_result

    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    sid = log_search([(video, 0.0, 1.0)])
    lib = Library(None, create=False)
    with pytest.raises(VmrError, match="read-only.*--search ID"):
        pick_result(lib.catalog, 1, None, readonly=True)
    assert pick_result(lib.catalog, 1, sid, readonly=True)[1]["video"] == str(video)
    lib.close()


# -- writing onto special files and symlinks ---------------------------------------------

def test_user_file_target_refuses_special_files_and_follows_links(tmp_path):
    from vmr_cli.paths import user_file_target

    new = tmp_path / "new.html"
    assert user_file_target(new) == str(new)
    regular = tmp_path / "page.html"
    regular.write_text("old")
    assert user_file_target(regular) == str(regular)

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(VmrError, match=r"is a FIFO \(named pipe\), not a regular file"):
        user_file_target(fifo, "--html")
    with pytest.raises(VmrError, match="is a character device"):
        user_file_target("/dev/null", "--predictions")
    with pytest.raises(VmrError, match="not a folder"):
        user_file_target(tmp_path)
    with pytest.raises(VmrError, match="does not exist"):
        user_file_target(tmp_path / "nope" / "x.html")

    sub = tmp_path / "real"
    sub.mkdir()
    target = sub / "kept.html"
    target.write_text("old")
    link = tmp_path / "link.html"
    link.symlink_to(os.path.relpath(target, tmp_path))
    assert user_file_target(link) == str(target)
    chain = tmp_path / "chain.html"
    chain.symlink_to(link)
    assert user_file_target(chain) == str(target)

    dangling = tmp_path / "dangling.html"
    dangling.symlink_to(tmp_path / "nothing.html")
    with pytest.raises(VmrError, match="symbolic link to nothing"):
        user_file_target(dangling, "--html")
    to_dir = tmp_path / "dirlink"
    to_dir.symlink_to(sub)
    with pytest.raises(VmrError, match="not a folder"):
        user_file_target(to_dir)
    loop = tmp_path / "loop.html"
    loop.symlink_to(loop)
    with pytest.raises(VmrError, match="symbolic link loop"):
        user_file_target(loop)
    to_fifo = tmp_path / "fifolink"
    to_fifo.symlink_to(fifo)
    with pytest.raises(VmrError, match="FIFO"):
        user_file_target(to_fifo)
    _read, write = os.pipe()  # /dev/stdout piped: a link to /proc/self/fd/1, whose link names "pipe:[N]"
    with pytest.raises(VmrError, match=r"is a FIFO \(named pipe\), not a regular file"):
        user_file_target(f"/dev/fd/{write}", "--predictions")
    os.close(_read), os.close(write)


def test_predictions_to_piped_stdout_is_refused_as_a_pipe(tmp_path):
    done = vmr_subprocess(tmp_path / "lib", "eval", tmp_path / "ann.jsonl", "--videos", tmp_path,
                          "--predictions", "/dev/stdout")
    assert done.returncode == 1 and done.stderr == ("Error: --predictions /dev/stdout is a FIFO (named pipe), "
                                                    "not a regular file; vmr writes only regular files (name a "
                                                    "new or existing file)\n"), done.stderr


def test_html_onto_fifo_dev_null_and_symlinks(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    sid = log_search([(video, 0.0, 1.0)])

    fifo = tmp_path / "fifo.html"
    os.mkfifo(fifo)
    _code, _out, err = vmr("show", sid, "--html", fifo, expect=1)
    assert "is a FIFO (named pipe), not a regular file" in err and "Traceback" not in err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)

    # As root this used to replace /dev/null with a regular file; as anyone it is refused.
    before = os.lstat("/dev/null")
    _code, _out, err = vmr("show", sid, "--html", "/dev/null", expect=1)
    assert "/dev/null is a character device, not a regular file" in err
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino

    real = tmp_path / "pages" / "real.html"
    real.parent.mkdir()
    real.write_text("<!DOCTYPE html>\n<html><head><title>vmr: old</title></head></html>\n")  # an earlier page
    real.chmod(0o640)
    link = tmp_path / "link.html"
    link.symlink_to(real)
    _code, _out, err = vmr("show", sid, "--html", link)
    assert link.is_symlink() and os.readlink(link) == str(real)  # the link stays a link
    assert "<!DOCTYPE html>" in real.read_text() and stat.S_IMODE(real.stat().st_mode) == 0o640
    assert f"page: {real}" in err
    assert not [p for p in real.parent.iterdir() if p.name.startswith(".tmp-")]

    dangling = tmp_path / "dangling.html"
    dangling.symlink_to(tmp_path / "nothing.html")
    _code, _out, err = vmr("show", sid, "--html", dangling, expect=1)
    assert "symbolic link to nothing" in err and dangling.is_symlink() and not dangling.exists()
    to_dir = tmp_path / "dirlink"
    to_dir.symlink_to(real.parent)
    _code, _out, err = vmr("show", sid, "--html", to_dir, expect=2)  # click's own check
    assert "is a directory" in err and to_dir.is_symlink()


def test_search_html_and_predictions_are_refused_before_the_run(tmp_path):
    """Nothing is indexed or searched when the output cannot be written (no model needed)."""
    folder = tmp_path / "videos"
    make_video(folder / "red.mp4", [("red", 2.0)])
    annotations = tmp_path / "ann.txt"
    annotations.write_text("red 0 2##red\n")
    fifo = tmp_path / "pred.fifo"
    os.mkfifo(fifo)
    _code, _out, err = vmr("eval", annotations, "--videos", folder, "--predictions", fifo,
                           "--model", tmp_path / "no-such-model", expect=1)
    assert "--predictions" in err and "FIFO" in err
    assert not (tmp_path / "library" / "catalog.db").exists()  # refused before indexing

    log_search([(folder / "red.mp4", 0.0, 1.0)])  # a library, without any encoder recorded
    _code, _out, err = vmr("search", "red", "--html", "/dev/null", expect=1)
    assert "--html /dev/null is a character device" in err  # before the search (which would fail)


def test_predictions_written_through_a_symlink(tmp_path, tiny_model):
    folder = tmp_path / "videos"
    make_video(folder / "red.mp4", [("red", 2.0), ("blue", 2.0)])
    annotations = tmp_path / "ann.txt"
    annotations.write_text("red 0 2##red\n")
    real = tmp_path / "out" / "pred.jsonl"
    real.parent.mkdir()
    real.write_text("")
    link = tmp_path / "pred-link.jsonl"
    link.symlink_to(real)
    vmr_json("eval", annotations, "--videos", folder, "--predictions", link, "--model", tiny_model)
    assert link.is_symlink()
    rows = [json.loads(line) for line in real.read_text().splitlines()]
    assert [r["vid"] for r in rows] == ["red"]


def test_html_and_predictions_never_replace_a_file_vmr_did_not_write(tmp_path, tiny_model):
    """--predictions naming the annotations it scores, --html naming an indexed video: refused,
    both files untouched; predictions and pages vmr wrote itself are replaced."""
    folder = tmp_path / "videos"
    make_video(folder / "red.mp4", [("red", 2.0), ("blue", 2.0)])
    annotations = tmp_path / "ann.jsonl"
    annotations.write_text(json.dumps({"qid": 1, "query": "red", "vid": "red", "duration": 4.0,
                                       "relevant_windows": [[0, 2]]}) + "\n")
    before = annotations.read_bytes()
    _code, _out, err = vmr("eval", annotations, "--videos", folder, "--predictions", annotations,
                           "--model", tiny_model, expect=1)
    assert "--predictions" in err and "is not a file vmr wrote" in err and annotations.read_bytes() == before
    theirs = tmp_path / "hl_val_submission.jsonl"  # another tool's predictions (Moment-DETR's keys)
    theirs.write_text(json.dumps({"qid": 1, "query": "red", "vid": "red", "pred_relevant_windows": [[0, 2, 0.9]],
                                  "pred_saliency_scores": [0.1]}) + "\n")
    before_theirs = theirs.read_bytes()
    _code, _out, err = vmr("eval", annotations, "--videos", folder, "--predictions", theirs,
                           "--model", tiny_model, expect=1)
    assert "is not a file vmr wrote" in err and theirs.read_bytes() == before_theirs
    predictions = tmp_path / "pred.jsonl"
    for _ in range(2):  # the second run replaces the first run's predictions
        vmr_json("eval", annotations, "--videos", folder, "--predictions", predictions, "--model", tiny_model)
        assert [json.loads(line)["vid"] for line in predictions.read_text().splitlines()] == ["red"]
    video = folder / "red.mp4"
    video_bytes = video.read_bytes()
    _code, _out, err = vmr("search", "red", "--html", video, expect=1)
    assert "is not a file vmr wrote" in err and video.read_bytes() == video_bytes
    found = vmr_json("search", "red", "--html", tmp_path / "page.html")
    _code, _out, err = vmr("show", found["search_id"], "--html", video, expect=1)
    assert "is not a file vmr wrote" in err and video.read_bytes() == video_bytes
    vmr_json("show", found["search_id"], "--html", tmp_path / "page.html")  # its own page: replaced


def test_open_without_html_is_the_same_error_in_search_and_show(tmp_path, monkeypatch):
    """vmr search --open without --html was silently ignored; vmr show said so."""
    import webbrowser

    code, out, err = vmr("search", "red", "--open", expect=1)
    assert err.strip() == "Error: --open opens the --html page: give --html FILE too"
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    sid = log_search([(video, 0.0, 1.0)])
    code, out, err = vmr("show", sid, "--open", expect=1)
    assert err.strip() == "Error: --open opens the --html page: give --html FILE too"
    monkeypatch.setattr(webbrowser, "open", lambda url: False)  # a machine without a browser
    code, out, err = vmr("show", sid, "--html", tmp_path / "p.html", "--open")
    assert "note: no browser could be opened here; open the page above yourself" in err


# -- progress on stderr --------------------------------------------------------------------

@pytest.fixture
def chatty(monkeypatch):
    """Progress lines at every step, as a long run gets every 10 s on a pipe."""
    from vmr_cli import progress

    monkeypatch.setattr(progress, "LINE_EVERY_SECONDS", 0.0)
    monkeypatch.setattr(progress, "SHOW_AFTER_SECONDS", 0.0)


def test_eval_and_index_print_progress_lines_on_a_pipe(tmp_path, tiny_model, chatty):
    folder = tmp_path / "videos"
    make_video(folder / "red.mp4", [("red", 2.0), ("blue", 2.0)])
    make_video(folder / "green.mp4", [("green", 2.0)])
    annotations = tmp_path / "ann.txt"
    annotations.write_text("red 0 2##red\ngreen 0 2##green\n")
    _code, out, err = vmr("eval", annotations, "--videos", folder, "--model", tiny_model, "--json")
    report = json.loads(out)  # stdout is the JSON alone
    assert report["n_queries"] == 2
    lines = err.splitlines()
    assert any(line.startswith("eval: 2/2 query, ") for line in lines), err
    assert any(line.startswith("indexing: ") and "/2 video" in line for line in lines), err


def test_page_prints_progress_lines_and_json_stays_clean(tmp_path, chatty):
    videos = [make_video(tmp_path / f"v{i}.mp4", [("red", 2.0)]) for i in range(3)]
    sid = log_search([(v, 0.0, 1.0) for v in videos])
    page = tmp_path / "page.html"
    _code, out, err = vmr("show", sid, "--html", page, "--json")
    assert json.loads(out)["search_id"] == sid
    assert "page thumbnails: 3/3 result" in err, err
    assert "page thumbnails" not in out


def test_progress_is_silent_when_disabled_and_on_stdout_never(capsys, chatty):
    from vmr_cli.progress import progress

    bar = progress(3, "work", "item")
    bar.update(2)
    bar.set_postfix_str("note")
    bar.close()
    quiet = progress(3, "quiet", "item", enabled=False)
    quiet.update(3)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "work: 2/3 item" in captured.err and "work: 2/3 item (note)" in captured.err
    assert "quiet" not in captured.err


def test_search_paths_null_prints_names_exactly(tiny_model, tmp_path):
    """--paths escapes unusual characters (a newline and a literal backslash-n look alike
    there); -0 gives each path's exact bytes, ended by NUL."""
    folder = tmp_path / "videos"
    names = [HOSTILE + ".mp4", "back\\nslash.mp4", "plain.mp4"]
    for i, name in enumerate(names):
        make_video(folder / name, [("red", 2.0 + i / 10)])  # not copies (searched once)
    vmr_json("index", folder, "--model", tiny_model)
    import subprocess
    import sys

    from conftest import ROOT
    done = subprocess.run([sys.executable, "-m", "vmr_cli", "search", "red", "--paths", "-0"],
                          capture_output=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.split(b"\0")
    assert printed[-1] == b"" and sorted(printed[:-1]) == sorted(os.fsencode(folder / n) for n in names)
    code, out, err = vmr("search", "red", "-0", expect=1)
    assert "give --paths too" in err
    code, out, err = vmr("search", "red", "--paths", "-0", "--json", expect=1)  # JSON went to xargs -0
    assert err == "Error: --paths prints only paths, --json the whole result: give one or the other\n"


def test_trimmer_with_exhaustive_is_refused_not_ignored(tmp_path):
    """--exhaustive verifies every clip: a --trimmer beside it used to be silently ignored."""
    trimmer = tmp_path / "trimmer"
    trimmer.mkdir()
    for args in (("search", "red", "--exhaustive", "--trimmer", trimmer),
                 ("eval", tmp_path / "a.txt", "--videos", tmp_path, "--exhaustive", "--trimmer", trimmer)):
        code, out, err = vmr(*args, expect=1)
        assert err.strip() == ("Error: --exhaustive verifies every clip, so a --trimmer has nothing to "
                               "choose: give one or the other"), args
