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


def test_a_large_file_that_is_not_text_is_refused_without_reading_it_all(tmp_path):
    """'vmr eval movie.mp4 --videos DIR' (the arguments swapped): the whole file was read into memory
    before it was found not to be text, 3.3 GB for a file of 1.5 GB, 8-16 s.  Measured as the
    command's peak memory in a process of its own."""
    big = tmp_path / "movie.mp4"
    with open(big, "wb") as handle:  # sparse: costs no disk
        handle.write(b"\x00\x00\x00\x18ftypmp42\xff\xfe")
        handle.truncate(512 << 20)
    (tmp_path / "v").mkdir()
    measure = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.stderr, sep='\\n')")
    done = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "vmr_cli", "--library",
                           str(tmp_path / "lib"), "eval", str(big), "--videos", str(tmp_path / "v")],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    code, peak_kb, err = done.stdout.split("\n", 2)
    assert code == "1" and err.strip() == f"Error: annotations {big} are not UTF-8 text", done.stdout
    assert int(peak_kb) < 400 << 10, f"peak {int(peak_kb) >> 10} MB"  # the file alone is 512 MB


def test_annotations_saved_as_utf16_or_holding_nul_bytes_are_named_so(tmp_path):
    """Windows PowerShell's '>' writes UTF-16 with a byte-order mark: 'not UTF-8 text' said nothing of
    what it was.  UTF-16 without the mark decodes as UTF-8 with a NUL after each letter: it was
    read as one Charades-STA line 'with 1 field before ##'."""
    from vmr_cli.evaluate import read_annotations

    path = tmp_path / "ann.txt"
    text = "green 0 2##a green screen\r\n"
    path.write_bytes(text.encode("utf-16"))
    with pytest.raises(VmrError) as raised:
        read_annotations(str(path))
    assert str(raised.value) == (f"annotations {path} are UTF-16 text (as Windows PowerShell's '>' writes them), "
                                 "not UTF-8: save them as UTF-8")
    path.write_bytes(text.encode("utf-16-le"))
    with pytest.raises(VmrError) as raised:
        read_annotations(str(path))
    assert str(raised.value) == (f"annotations {path} are not UTF-8 text (they hold NUL bytes, as UTF-16 "
                                 "text or a binary file does)")
    path.write_bytes(text.encode("utf-32"))  # its mark begins with UTF-16's: it was called UTF-16
    with pytest.raises(VmrError) as raised:
        read_annotations(str(path))
    assert str(raised.value) == f"annotations {path} are UTF-32 text, not UTF-8: save them as UTF-8"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())  # UTF-8 with its mark still reads
    assert [it["vid"] for it in read_annotations(str(path))] == ["green"]


def test_a_json_array_or_pretty_printed_json_is_told_as_such(tmp_path):
    """QVHighlights records saved with json.dump (one array, or indented): 'a Charades-STA line is
    VID START END##query, and this one has no ##' for the array, 'Expecting property name enclosed
    in double quotes: line 1 column 2 (char 1)' for an indented object, and '('query')' for an
    object of another dataset's keys."""
    from vmr_cli.evaluate import read_annotations

    record = {"qid": 1, "query": "a green screen", "vid": "green", "relevant_windows": [[0, 2]]}
    path = tmp_path / "ann.json"
    array = f"{path}:1: a JSON array; QVHighlights JSONL is one JSON object a line (jq -c '.[]' FILE writes its objects so)"
    for text, message in (
            (json.dumps([record]), array),
            (json.dumps([record], indent=2), array),
            (json.dumps(record, indent=2), f"{path}:1: a JSON object that does not end on its line; QVHighlights "
                                           "JSONL is one JSON object a line (jq -c . FILE writes an indented file so)"),
            (json.dumps({"green": {"duration": 2, "timestamps": [[0, 2]]}}),
             f"{path}:1: not Charades-STA or QVHighlights (no 'query')")):
        path.write_text(text + "\n")
        with pytest.raises(VmrError) as raised:
            read_annotations(str(path))
        assert str(raised.value) == message


def test_a_finished_trimmer_run_again_with_val_reports_its_validation(small, tmp_path):
    """Training done without --val, the same command with --val added (which resumes, as the README
    says) printed no validation and `"val_R1@0.5": null`: the finished model was never scored; with
    another --val than it was trained with, the number was the old file's."""
    command = ("--library", tmp_path / "lib", "train", small / "ann.txt", "--videos", small / "v", "--out",
               tmp_path / "t", "--epochs", 1, "--model", MODEL)
    assert vmr_json(*command)["val_R1@0.5"] is None
    weights = sorted(p.name for p in (tmp_path / "t").glob("model-*.safetensors"))
    (tmp_path / "never.txt").write_text("green 0 0.1##a red screen\n")  # no window of 2 s clips reaches IoU 0.5
    grid = [[a, b] for a in range(4) for b in range(a + 1, 5)]  # any window of a second or more meets one
    (tmp_path / "always.txt").write_text(json.dumps({"query": "a screen", "vid": "green", "relevant_windows": grid}))
    summary = vmr_json(*command, "--val", tmp_path / "never.txt")
    assert summary["val_R1@0.5"] == 0.0 and summary["n_val_queries"] == 1, summary
    code, out, err = vmr(*command, "--val", tmp_path / "always.txt")
    assert ", validation R1@0.5 100.0" in out
    trained_with_val = (*command[:-5], tmp_path / "t2", *command[-4:])
    assert vmr_json(*trained_with_val, "--val", tmp_path / "never.txt")["val_R1@0.5"] == 0.0
    assert vmr_json(*trained_with_val, "--val", tmp_path / "always.txt")["val_R1@0.5"] == 1.0
    assert sorted(p.name for p in (tmp_path / "t").glob("model-*.safetensors")) == weights  # the same model


def test_a_config_edited_to_another_size_says_where_it_and_the_weights_disagree(small, tmp_path):
    """config.json's "hidden": 128 made 256: 'does not fit its own config: Error(s) in loading
    state_dict for Trimmer:' (torch's first line, which names nothing); made 10**9: a traceback
    from allocating 1.6 TB; "layers" made 1000: a thousand layers built before that same line."""
    import re
    import shutil

    lib, trimmer = tmp_path / "lib", tmp_path / "t"
    vmr("--library", lib, "train", small / "ann.txt", "--videos", small / "v", "--out", trimmer, "--epochs", 1,
        "--model", MODEL)
    config = json.loads((trimmer / "config.json").read_text())
    fits = "does not fit its own config"
    for edit, said in (({"hidden": 256}, rf"{fits}: \S+ is \[\d+(, \d+)*\] in its weights, \[\d+(, \d+)*\] by "
                                          r"config.json; train it again with 'vmr train'"),
                       ({"hidden": 10**9}, r"(does not fit its own config|has a damaged config.json)"),
                       ({"layers": 1000}, rf"{fits}: config.json asks for 1000 layers, and its weights hold \d+ "
                                          r"tensors in all"),
                       ({"token_dim": config["trimmer"]["dim"]}, rf"{fits}: config.json asks for \S+, which its "
                                                                 r"weights lack")):
        edited = tmp_path / "edited"
        shutil.rmtree(edited, ignore_errors=True)
        shutil.copytree(trimmer, edited)
        (edited / "config.json").write_text(json.dumps(dict(config, trimmer=dict(config["trimmer"], **edit))))
        code, out, err = vmr("--library", lib, "search", "green", "--trimmer", edited, expect=1)
        assert err.startswith(f"Error: trimmer {edited} ") and len(err.splitlines()) == 1, err
        assert re.search(said, err), (edit, err)


def test_val_holding_the_training_queries_is_said_to_measure_fit(small, tmp_path):
    """'vmr train ann.txt --val ann.txt' reported a validation R1@0.5 of the very queries it learned,
    with no word that it is no measure of new queries."""
    (tmp_path / "val.txt").write_text("green 2 4##a green screen\ngreen 0 2##a red screen\n")
    command = ("train", small / "ann.txt", "--videos", small / "v", "--epochs", 1, "--model", MODEL)
    code, out, err = vmr(*command, "--out", tmp_path / "t", "--val", small / "ann.txt")
    line = (f"--val {small / 'ann.txt'}: its query is a training query (video, sentence and window alike): its "
            "R1@0.5 tells how well the trimmer fits it, not how it finds new ones")
    assert f"warning: {line}\n" in err
    summary = vmr_json(*command, "--out", tmp_path / "t2", "--val", tmp_path / "val.txt")
    assert summary["warnings"] == [f"--val {tmp_path / 'val.txt'}: 1 of its 2 queries is a training query (video, "
                                   "sentence and window alike): its R1@0.5 tells how well the trimmer fits it, not "
                                   "how it finds new ones"]


def test_eval_json_says_which_search_it_scored(small, tmp_path, monkeypatch):
    """A script comparing 'vmr eval --json' runs with and without --trimmer could not tell them apart:
    the document had "exhaustive" but nothing of the trimmer (the table's first line names it)."""
    lib, ann, videos = tmp_path / "lib", small / "ann.txt", small / "v"
    monkeypatch.chdir(tmp_path)
    vmr("--library", lib, "train", ann, "--videos", videos, "--out", "t", "--epochs", 1, "--model", MODEL)
    plain = vmr_json("--library", lib, "eval", ann, "--videos", videos)
    trained = vmr_json("--library", lib, "eval", ann, "--videos", videos, "--trimmer", "t")
    assert (plain["trimmer"], trained["trimmer"]) == (None, str(tmp_path / "t")), (plain, trained)


def test_an_empty_out_folder_the_user_made_is_left_empty_by_an_interrupt(small, tmp_path, monkeypatch):
    """'mkdir trimmer; vmr train ... --out trimmer', Ctrl-C before the first epoch: it said 'nothing
    was written to trimmer' and left its write.lock there (a folder vmr made itself went whole)."""
    from vmr_cli import indexer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(indexer, "index_paths", interrupted)
    (tmp_path / "t").mkdir()
    code, _out, err = vmr("--library", tmp_path / "lib", "train", small / "ann.txt", "--videos", small / "v",
                          "--out", tmp_path / "t", "--epochs", 1, "--model", MODEL, expect=130)
    assert "nothing was written to" in err and list((tmp_path / "t").iterdir()) == []


def test_an_out_folder_that_cannot_be_written_is_named_as_out(small, tmp_path):
    """--out under a read-only folder, or a read-only folder itself: 'Error: Permission denied: ro/t'
    and 'Permission denied: ro/write.lock', which named neither --out nor what was being saved."""
    from conftest import vmr_subprocess

    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        for out in (tmp_path / "ro" / "t", tmp_path / "ro"):
            done = vmr_subprocess(tmp_path / "lib", "train", small / "ann.txt", "--videos", small / "v",
                                  "--out", out, "--epochs", 1, "--model", MODEL)
            assert done.returncode == 1, done.stderr
            assert done.stderr.splitlines()[-1] == (f"Error: cannot save the trimmer in --out {out}: "
                                                    "Permission denied"), done.stderr
        assert list((tmp_path / "ro").iterdir()) == []
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_a_finished_trimmer_given_again_says_nothing_was_trained(small, tmp_path):
    """The same 'vmr train' command again printed 'trimmer in OUT: 1 query, 1 epoch ..., 0 s', as
    if it had trained in no time."""
    command = ("--library", tmp_path / "lib", "train", small / "ann.txt", "--videos", small / "v", "--out",
               tmp_path / "t", "--epochs", 1, "--model", MODEL)
    code, first, err = vmr(*command)
    assert first.startswith(f"trimmer in {tmp_path / 't'}: 1 query, 1 epoch") and "already" not in first
    assert vmr_json(*command)["already_trained"] is True
    code, again, err = vmr(*command)
    assert again.startswith(f"trimmer in {tmp_path / 't'} was already trained: 1 query, 1 epoch"), again
    assert again.rstrip().endswith("; nothing trained now"), again


def test_a_run_stopped_before_its_final_save_is_finished_not_called_already_trained(small, tmp_path, monkeypatch):
    """Stopped after its last epoch was saved but before the final save, the same command finishes
    the trimmer; it said 'was already trained ... nothing trained now'."""
    from vmr_cli import train

    saved = train._save

    def stopped_at_the_final_save(out_dir, header, state, net, teacher, optimiser):
        if optimiser is None:  # the final save: the model alone
            raise KeyboardInterrupt
        saved(out_dir, header, state, net, teacher, optimiser)

    command = ("--library", tmp_path / "lib", "train", small / "ann.txt", "--videos", small / "v", "--out",
               tmp_path / "t", "--epochs", 1, "--model", MODEL)
    monkeypatch.setattr(train, "_save", stopped_at_the_final_save)
    vmr(*command, expect=130)
    monkeypatch.setattr(train, "_save", saved)
    finished = vmr_json(*command)
    assert finished["already_trained"] is False and finished["history"], finished
    assert vmr_json(*command)["already_trained"] is True


def test_eval_and_train_read_a_read_only_library_with_nothing_to_index(small, tmp_path):
    """A lab's shared library, read-only for its users: eval and train stopped with 'library folder
    LIB is not writable (read-only); index into a writable --library' though nothing needed
    indexing.  They now read it as it is; what would need indexing (a new file) is named, as is
    a --model other than the library's."""
    import os
    import shutil

    from conftest import vmr_subprocess

    lib = tmp_path / "lib"
    wanted = vmr_json("--library", lib, "eval", small / "ann.txt", "--videos", small / "v", "--model", MODEL)
    for root, dirs, files in os.walk(lib):
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o555 if name in dirs else 0o444)
    lib.chmod(0o555)
    try:
        done = vmr_subprocess(lib, "eval", small / "ann.txt", "--videos", small / "v", "--json")
        assert done.returncode == 0, done.stderr
        got = json.loads(done.stdout)
        assert (got["single"], got["corpus"]) == (wanted["single"], wanted["corpus"])
        trained = vmr_subprocess(lib, "train", small / "ann.txt", "--videos", small / "v", "--out",
                                 tmp_path / "t", "--epochs", 1)
        assert trained.returncode == 0 and (tmp_path / "t" / "config.json").exists(), trained.stderr
        other = vmr_subprocess(lib, "eval", small / "ann.txt", "--videos", small / "v", "--model", tmp_path / "m")
        assert other.returncode == 1 and "is read-only, and its model is" in other.stderr.splitlines()[-1]
        shutil.copy(small / "v" / "green.mp4", small / "v" / "new.mp4")
        (small / "v" / "new.mp4").write_bytes((small / "v" / "new.mp4").read_bytes() + b"x")  # not a copy
        refused = vmr_subprocess(lib, "eval", small / "ann.txt", "--videos", small / "v")
        assert refused.returncode == 1, refused.stderr
        assert refused.stderr.splitlines()[-1] == (
            f"Error: library {lib} is read-only, and 1 file under {small / 'v'} is not indexed as it is now "
            f"(new, changed, moved or deleted; e.g. {small / 'v' / 'new.mp4'}); run this with a writable --library")
    finally:
        for root, dirs, files in os.walk(lib):
            os.chmod(root, 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
