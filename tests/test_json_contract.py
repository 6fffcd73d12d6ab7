"""The ``--json`` contract scripts depend on (README, "Scripts and --json").

Every command that prints results prints, with ``--json``, exactly one JSON document on
stdout, strict JSON (no NaN or Infinity, no Python repr of an object), with the same key for
the same thing in every command: a result's ``video``, ``start``, ``end`` and ``score`` in
seconds and numbers, ``search_id``, ``n_results``/``n_queries`` for counts.  Messages,
warnings and progress go to stderr.  An error leaves stdout empty and exits non-zero; a
command that ran but failed on some items (index, export) prints its document and exits 1.

One small library is built once for the module; each case runs on its own copy of it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from conftest import make_video, vmr, vmr_subprocess


def strict_json(text: str):
    """json.loads that refuses what Python writes but JSON has no form for (NaN, Infinity)."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


NUMBERS = {"start", "end", "score", "seconds", "duration", "ends_at", "claimed", "search_id", "epoch",
           "n_results", "n_queries", "n_val_queries", "total", "clips", "videos"}
PATHS = {"video", "path", "source", "folder", "library", "out"}


def check_values(value, where="$"):
    """Types by key, anywhere in a document; no repr of a Python object in a string."""
    if isinstance(value, dict):
        for key, item in value.items():
            at = f"{where}.{key}"
            assert isinstance(key, str), at
            if key in NUMBERS:
                assert item is None or (isinstance(item, (int, float)) and not isinstance(item, bool)), (at, item)
                assert item is None or math.isfinite(item), (at, item)
            if key in PATHS:
                assert isinstance(item, str), (at, item)
            if key == "results":  # the list of results; a count only beside n_results (0.2.0's name)
                assert isinstance(item, list) or ("n_results" in value and item == value["n_results"]), (at, item)
            check_values(item, at)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_values(item, f"{where}[{i}]")
    elif isinstance(value, str):
        assert not value.startswith(("PosixPath(", "WindowsPath(", "<", "array(", "tensor(")), (where, value)
    else:
        assert value is None or isinstance(value, (bool, int, float)), (where, value)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model):
    """Two indexed videos, an annotation file for them and one logged search."""
    root = tmp_path_factory.mktemp("json-contract")
    videos = root / "videos"
    make_video(videos / "red_blue.mp4", [("red", 2.0), ("blue", 2.0)])
    make_video(videos / "green.mp4", [("green", 2.0)])
    (root / "annotations.txt").write_text("red_blue 0.0 2.0##a red screen\ngreen 0.0 2.0##a green screen\n")
    vmr("--library", root / "library", "index", videos, "--model", tiny_model)
    vmr("--library", root / "library", "search", "a red screen", "--top-k", "2")
    return root


@pytest.fixture
def case(world, tmp_path, tiny_model):
    """(library, a function filling {videos}, {world}, {tmp}, {model} into arguments): the
    library a copy of the module's, so no case sees another's searches or forgets."""
    library = tmp_path / "library-copy"
    shutil.copytree(world / "library", library)

    def fill(args):
        return [a.format(videos=world / "videos", world=world, tmp=tmp_path, model=tiny_model) for a in args]

    return library, fill


def same_results(search: dict) -> list:
    return [(r["rank"], r["video"]) for r in search["results"]]


# Each: arguments, then a check of the document beyond the common ones: check(document, library, fill).
SUCCESS = {
    "index": (["index", "{videos}"], lambda d, lib, fill: d["unchanged"] == 2 and d["failed"] == []),
    "index-model": (["index", "--model", "{model}"], lambda d, lib, fill: d["encoder"] == d["folder"]),
    "search": (["search", "a green screen", "--top-k", "2"],
               lambda d, lib, fill: d["search_id"] == 2 and len(d["results"]) == 2),
    "search-empty": (["search", "a green screen", "--min-score", "5"], lambda d, lib, fill: d["results"] == []),
    "show": (["show"], lambda d, lib, fill: d["search_id"] == 1 and len(d["results"]) == 2),
    "searches": (["searches"], lambda d, lib, fill: d["searches"][0]["n_results"] == 2
                 and d["searches"][0]["results"] == 2),  # results: the count as 0.2.0 named it
    "export": (["export", "1", "--out", "{tmp}/cuts"],
               lambda d, lib, fill: [(e["rank"], e["video"]) for e in d["exported"]]
               == same_results(vmr_json_in(lib, "show"))[:1]
               and all(e["video"] == e["source"] for e in d["exported"])),
    "status": (["status"], lambda d, lib, fill: d["videos"] == 2),
    "status-check": (["status", "--check", "--failed"], lambda d, lib, fill: d["failed_files"] == []
                     and d["check"]["model"]["ok"]),
    "forget": (["forget", "{videos}/green.mp4"], lambda d, lib, fill: d == {
        "forgotten": [{"path": fill(["{videos}/green.mp4"])[0], "videos": 1, "saved_progress": 0}], "videos": 1}),
    "eval": (["eval", "{world}/annotations.txt", "--videos", "{videos}"],
             lambda d, lib, fill: d["n_queries"] == 2 and d["warnings"] == []),
    "train": (["train", "{world}/annotations.txt", "--videos", "{videos}", "--out", "{tmp}/trimmer",
               "--epochs", "1"],
              lambda d, lib, fill: (d["n_queries"], d["n_val_queries"]) == (2, 0) and "queries" not in d),
}


def vmr_json_in(library, *args):
    return strict_json(vmr("--library", library, *args, "--json")[1])


@pytest.mark.parametrize("name", list(SUCCESS))
def test_each_command_prints_one_strict_json_document(case, name):
    library, fill = case
    args, check = SUCCESS[name]
    code, out, err = vmr("--library", library, *fill(args), "--json", expect=None)
    assert code == 0, (code, out, err)
    document = strict_json(out)  # one document: anything before or after it is "Extra data"
    assert isinstance(document, dict)
    assert out == json.dumps(document, indent=2, allow_nan=False) + "\n"  # nothing else on stdout
    check_values(document)
    assert check(document, library, fill), document


# Errors: one line on stderr, a non-zero exit, and nothing on stdout for a script to misread.
ERRORS = {
    "search-no-library": ["--library", "{tmp}/none", "search", "a red screen"],
    "show-no-library": ["--library", "{tmp}/none", "show"],
    "searches-no-library": ["--library", "{tmp}/none", "searches"],
    "export-no-library": ["--library", "{tmp}/none", "export"],
    "forget-no-library": ["--library", "{tmp}/none", "forget", "{videos}"],
    "status-check-no-library": ["--library", "{tmp}/none", "status", "--check"],
    "search-empty-query": ["search", " "],
    "search-paths-and-json": ["search", "red", "--paths"],
    "show-no-such-search": ["show", "99"],
    "export-no-such-search": ["export", "--search", "99"],
    "export-no-such-rank": ["export", "9"],
    "forget-nothing-there": ["forget", "{tmp}/elsewhere"],
    "index-missing-file": ["index", "{tmp}/missing.mp4"],
    "eval-missing-annotations": ["eval", "{tmp}/missing.txt", "--videos", "{videos}"],
    "train-missing-annotations": ["train", "{tmp}/missing.txt", "--videos", "{videos}", "--out", "{tmp}/t"],
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_an_error_leaves_stdout_empty(case, name):
    library, fill = case
    args = fill(ERRORS[name])
    code, out, err = vmr(*([] if args[0] == "--library" else ["--library", library]), *args, "--json",
                         expect=None)
    assert code == 1 and out == "", (code, out, err)
    assert err.startswith("Error: ") and err.count("\n") == 1 and "Traceback" not in err, err


def test_a_command_line_click_cannot_parse_leaves_stdout_empty(case):
    library, _fill = case
    code, out, err = vmr("--library", library, "export", "abc", "--json", expect=2)
    assert out == "" and "Error: Invalid value" in err


def test_an_index_with_failures_prints_its_document_and_says_why_on_stderr(case, tmp_path):
    """Exit 1 with the whole document (a script reads what failed), and the failed: line on
    stderr as search and export still warn there with --json (index said nothing)."""
    library, _fill = case
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(os.urandom(3000))
    code, out, err = vmr("--library", library, "index", broken, "--json", expect=1)
    document = strict_json(out)
    check_values(document)
    assert [f["path"] for f in document["failed"]] == [str(broken)]
    assert f"failed: {broken}: " in err, err


def test_emit_json_writes_strict_json(capsys):
    """One writer for every command: a float that is not finite becomes null (json.dumps wrote
    NaN and Infinity, which no strict parser reads), numpy numbers stay numbers (default=str made
    a count the string "3"), a path is its string."""
    import numpy as np

    from vmr_cli.cli import emit_json

    emit_json({"loss": float("nan"), "edges": (float("inf"), float("-inf")), "count": np.int64(3),
               "score": np.float32(0.5), "ok": np.bool_(True), "path": Path("/videos/a.mp4")})
    assert strict_json(capsys.readouterr().out) == {"loss": None, "edges": [None, None], "count": 3,
                                                    "score": 0.5, "ok": True, "path": "/videos/a.mp4"}
    emit_json({"videos": {"a.mp4"}})  # a type JSON has no form for (a bug): still parseable output
    assert strict_json(capsys.readouterr().out) == {"videos": "{'a.mp4'}"}


def test_the_browser_html_open_starts_writes_to_stderr_not_into_the_json(case, tmp_path, monkeypatch):
    """`vmr show --html P --open --json | jq`: a browser started prints 'Opening in existing
    browser session.' to the stdout it inherited, in the middle of the document."""
    library, _fill = case
    browser = tmp_path / "browser"
    browser.write_text(f"#!{sys.executable}\nprint('Opening in existing browser session.')\n")
    browser.chmod(browser.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("BROWSER", str(browser))
    done = vmr_subprocess(library, "show", "--html", tmp_path / "page.html", "--open", "--json")
    assert done.returncode == 0, done.stderr
    assert strict_json(done.stdout)["search_id"] == 1
    assert "Opening in existing browser session." in done.stderr
