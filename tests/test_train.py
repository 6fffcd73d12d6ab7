"""vmr train: the trimmer learns from a small generated world, resumes exactly, is refused where it
does not belong, and search and eval use it.  Synthetic-world numbers only."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, vmr, vmr_json
from safetensors.torch import load_file

MODEL = ROOT / "examples" / "models" / "tiny-clip"
pytestmark = pytest.mark.skipif(not (MODEL / "config.json").exists(), reason="the trained tiny model is missing")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Training and validation worlds in one folder (train_*, val_*), and their annotations."""
    from examples.synthetic_world import generate_world

    root = tmp_path_factory.mktemp("train-world")
    videos = root / "videos"
    videos.mkdir()
    for prefix, seed, count in (("train", 31, 8), ("val", 32, 4)):
        part = root / prefix
        records = generate_world(part, videos=count, duration=40, seed=seed)
        lines = []
        for rec in records:
            vid = f"{prefix}_{rec['vid']}"
            if not (videos / f"{vid}.mp4").exists():  # a video holds several events
                (videos / f"{vid}.mp4").symlink_to(part / f"{rec['vid']}.mp4")
            lines.append(json.dumps(dict(rec, vid=vid)))
        (root / f"{prefix}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _train(world, out, library, epochs=6, extra=()):
    return vmr_json("--library", library, "train", world / "train.jsonl", "--videos", world / "videos",
                    "--out", out, "--val", world / "val.jsonl", "--epochs", epochs, "--model", MODEL, *extra)


def test_training_lowers_the_loss_and_beats_the_untrained_model(world, tmp_path):
    summary = _train(world, tmp_path / "trimmer", tmp_path / "lib", epochs=8)
    teacher = [h["vmr"] for h in summary["history"] if h["phase"] == "teacher"]
    student = [h for h in summary["history"] if h["phase"] == "student"]
    assert len(teacher) == len(student) == 8 and teacher[-1] < 0.8 * teacher[0]
    assert {"selection", "vmr", "distillation", "val_R1@0.5"} <= set(student[-1])
    assert summary["val_R1@0.5"] > summary["val_R1@0.5_untrained"], summary
    config = json.loads((tmp_path / "trimmer" / "config.json").read_text())
    assert config["trimmer"]["token_dim"] is None and config["options"]["tokens"] is False  # by default, none
    # search and eval use it; without it the parameter-free path runs unchanged
    query = json.loads((world / "val.jsonl").read_text().splitlines()[0])["query"]
    found = vmr_json("--library", tmp_path / "lib", "search", query, "--trimmer", tmp_path / "trimmer")
    assert found["results"] and found["stats"]["frames_encoded"] <= 40
    report = vmr_json("--library", tmp_path / "lib", "eval", world / "val.jsonl", "--videos", world / "videos",
                      "--trimmer", tmp_path / "trimmer")
    assert report["n_queries"] >= 4 and 0 <= report["single"]["R1@0.5"] <= 1


def test_an_interrupted_run_resumes_to_the_same_model(world, tmp_path, monkeypatch):
    from vmr_cli import train as train_module

    straight = tmp_path / "straight"
    _train(world, straight, tmp_path / "lib", epochs=2)
    real_save = train_module._save
    saves = []

    def save_then_interrupt(*args):
        real_save(*args)
        saves.append(args[2]["phase"])
        if len(saves) == 3:  # after the teacher's two epochs and the student's first
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save", save_then_interrupt)
    resumed = tmp_path / "resumed"
    code, _out, err = vmr("--library", tmp_path / "lib", "train", world / "train.jsonl", "--videos",
                          world / "videos", "--out", resumed, "--val", world / "val.jsonl", "--epochs", 2,
                          "--model", MODEL, expect=130)  # as any Ctrl-C
    assert "interrupted; the last finished epoch is kept" in err and len(err.strip().splitlines()) <= 8

    def interrupt_first(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save", interrupt_first)  # before any epoch was written
    code, _out, err = vmr("--library", tmp_path / "lib", "train", world / "train.jsonl", "--videos",
                          world / "videos", "--out", tmp_path / "never", "--epochs", 2, expect=130)
    assert (f"Error: interrupted before the first epoch finished; nothing was written to {tmp_path / 'never'}"
            in err) and not (tmp_path / "never").exists()
    monkeypatch.setattr(train_module, "_save", real_save)
    _train(world, resumed, tmp_path / "lib", epochs=2)
    a, b = (load_file(next(folder.glob("model-*.safetensors"))) for folder in (straight, resumed))
    assert set(a) == set(b) and all((a[k] == b[k]).all() for k in a)
    # another seed into the same folder is refused, not mixed
    code, _out, err = vmr("--library", tmp_path / "lib", "train", world / "train.jsonl", "--videos",
                          world / "videos", "--out", resumed, "--val", world / "val.jsonl", "--epochs", 2,
                          "--seed", 5, expect=1)
    assert err == (f"Error: --out {resumed} holds a trimmer trained with --seed 0 (this run: 5); run as it was to "
                   "resume it, or choose another folder, or delete it to start over\n")


def test_a_trimmer_for_another_encoder_is_one_line(world, tmp_path, other_model):
    _train(world, tmp_path / "trimmer", tmp_path / "lib", epochs=1)
    vmr_json("--library", tmp_path / "other", "index", world / "val", "--model", other_model)
    code, _out, err = vmr("--library", tmp_path / "other", "search", "a red circle", "--trimmer",
                          tmp_path / "trimmer", expect=1)
    assert err.startswith("Error: trimmer ") and "was trained for encoder" in err
    assert len(err.strip().splitlines()) == 1
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{}")
    code, _out, err = vmr("--library", tmp_path / "lib", "search", "a red circle", "--trimmer",
                          tmp_path / "junk", expect=1)
    assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1
    # a config.json edited by hand: one line each, never a traceback or a silently different search
    import shutil

    config = json.loads((tmp_path / "trimmer" / "config.json").read_text())
    edits = [("clip_seconds", "abc"), ("clip_seconds", None), ("drop", ["zzz"]), ("trimmer", None),
             ("max_len", "x"), ("max_len", 0), ("embedding_dim", 32)]
    edits += [("trimmer", dict(config["trimmer"], heads=0)), ("trimmer", dict(config["trimmer"], hidden=0))]
    for key, value in edits + [("trimmer", dict(config["trimmer"], bogus=1)), ("trimmer", ...)]:
        edited = tmp_path / f"edited {key}"
        shutil.rmtree(edited, ignore_errors=True)
        shutil.copytree(tmp_path / "trimmer", edited)
        changed = {k: v for k, v in config.items() if not (k == key and value is ...)}
        if value is not ...:
            changed[key] = value
        (edited / "config.json").write_text(json.dumps(changed))
        for command in (("search", "a red circle"), ("eval", world / "val.jsonl", "--videos", world / "videos")):
            code, _out, err = vmr("--library", tmp_path / "lib", *command, "--trimmer", edited, expect=1)
            assert err.startswith(f"Error: trimmer {edited}") and len(err.strip().splitlines()) == 1, (key, err)
            assert "damaged config.json" in err, (key, err)
    # weights cut short (a copy that stopped): training into it again says so, never "not a trimmer"
    damaged = tmp_path / "damaged"
    shutil.copytree(tmp_path / "trimmer", damaged)
    weights = next(damaged.glob("model-*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    code, _out, err = vmr("--library", tmp_path / "lib", "train", world / "train.jsonl", "--videos",
                          world / "videos", "--out", damaged, "--epochs", 1, "--model", MODEL, expect=1)
    assert f"--out {damaged} holds a damaged checkpoint" in err and len(err.strip().splitlines()) == 1, err


def test_train_and_eval_index_with_pyav_where_torchcodec_cannot_load(world, tmp_path, monkeypatch):
    """Both index first: --backend pyav is the way out that the error names, as for vmr index."""
    import sys

    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # import fails, as when not installed
    code, out, err = vmr("--library", tmp_path / "lib", "train", world / "train.jsonl", "--videos",
                         world / "videos", "--out", tmp_path / "trimmer", "--epochs", 1, "--model", MODEL,
                         expect=1)
    assert err.startswith("Error: the torchcodec backend cannot load (") and err.strip().endswith(
        "or use --backend pyav") and not (tmp_path / "lib").exists() and not (tmp_path / "trimmer").exists()
    summary = _train(world, tmp_path / "trimmer", tmp_path / "lib", epochs=1, extra=("--backend", "pyav"))
    assert summary["epochs"] == 1 and summary["n_queries"] > 0
    report = vmr_json("--library", tmp_path / "lib2", "eval", world / "val.jsonl", "--videos", world / "videos",
                      "--model", MODEL, "--backend", "pyav")
    assert report["n_queries"] >= 4 and report["cost"]["frames_decoded"] > 0


def test_validation_scores_the_moment_search_ranks_first(world, tmp_path):
    """train --val R1@0.5 is eval --trimmer's moment retrieval without the edges search refines
    with decoded frames: the network's windows, edged and ranked by the stored timeline (its own
    top window alone read 73.3 against 82.2 on the seed-0 synthetic benchmark), against the best
    of a query's windows as eval takes it (not only the first of a QVHighlights line's)."""
    from vmr_cli.evaluate import read_annotations, video_files
    from vmr_cli.library import Library
    from vmr_cli.metrics import temporal_iou
    from vmr_cli.search import Searcher, SearchOptions

    lines = [json.loads(line) for line in (world / "val.jsonl").read_text().splitlines()]
    decoy = [dict(r, relevant_windows=[[r["duration"] - 0.5, r["duration"]]] + r["relevant_windows"]) for r in lines]
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in decoy))
    summary = vmr_json("--library", tmp_path / "lib", "train", world / "train.jsonl", "--videos", world / "videos",
                       "--out", tmp_path / "trimmer", "--val", tmp_path / "val.jsonl", "--epochs", 1, "--model", MODEL)
    val = read_annotations(str(tmp_path / "val.jsonl"))
    files = video_files(str(world / "videos"), wanted=[it["vid"] for it in val])
    searcher = Searcher(Library(str(tmp_path / "lib")), trimmer=str(tmp_path / "trimmer"), frame_cache=False)
    hits = 0
    for it in val:
        options = SearchOptions(only_video=files[it["vid"]], refine=0)
        top = searcher.search(it["query"], options, log=False)["results"][0]
        hits += max(temporal_iou((top["start"], top["end"]), w) for w in it["windows"]) >= 0.5
    assert hits and summary["val_R1@0.5"] == round(hits / len(val), 4), (summary["val_R1@0.5"], hits, len(val))


def test_a_seed_past_what_torch_takes_is_refused_in_one_line(tmp_path):
    """--seed $(date +%s%N) would overflow torch's 64-bit generator seeds an epoch later."""
    for seed in (1764586800123456789, -(10**18)):
        code, out, err = vmr("train", tmp_path / "a.jsonl", "--videos", tmp_path, "--out", tmp_path / "t",
                             "--seed", seed, expect=2)
        assert f"Error: Invalid value for '--seed': {seed} is not in the range" in err and "Traceback" not in err
    assert not (tmp_path / "library").exists() and not (tmp_path / "t").exists()


def test_out_and_trimmer_are_refused_before_anything_is_indexed(small, tmp_path):
    """A wrong --out or --trimmer was refused only after the whole --videos folder was indexed."""
    ann, videos = small / "ann.txt", small / "v"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    code, out, err = vmr("train", ann, "--videos", videos, "--out", mine, "--model", MODEL, expect=1)
    assert err == f"Error: --out {mine} holds files that are not a vmr trimmer; choose another folder\n"
    code, out, err = vmr("eval", ann, "--videos", videos, "--trimmer", mine, "--model", MODEL, expect=1)
    assert err == (f"Error: {mine} is not a checkpoint: it holds no config.json (a trimmer is a folder "
                   "written by 'vmr train ANNOTATIONS --videos DIR --out DIR')\n")
    assert not (tmp_path / "library").exists()  # nothing was created, let alone indexed
    vmr("--library", tmp_path / "lib", "train", ann, "--videos", videos, "--out", tmp_path / "t", "--epochs", 1,
        "--model", MODEL)
    for other, told in ((("--seed", 5), "--seed 0 (this run: 5)"), (("--epochs", 2), "--epochs 1 (this run: 2)")):
        code, out, err = vmr("train", ann, "--videos", videos, "--out", tmp_path / "t", "--epochs", 1, *other,
                             "--model", MODEL, expect=1)
        assert f"holds a trimmer trained with {told}; run as it was to resume it" in err
    other_ann = tmp_path / "other.txt"
    other_ann.write_text("green 0 2##a red screen\n")
    code, out, err = vmr("train", other_ann, "--videos", videos, "--out", tmp_path / "t", "--epochs", 1,
                         "--model", MODEL, expect=1)
    assert "holds a trimmer trained with other training annotations (queries, videos or windows differ)" in err
    # --val only reports: a run made without it goes on with it; so does one whose checkpoint
    # (before 2026-12-02) fingerprinted the training and --val annotations together
    again = ("--library", tmp_path / "lib", "train", ann, "--videos", videos, "--out", tmp_path / "t", "--epochs", 1,
             "--val", ann)
    assert vmr_json(*again)["epochs"] == 1
    from vmr_cli.evaluate import read_annotations
    from vmr_cli.train import _fingerprint

    config = json.loads((tmp_path / "t" / "config.json").read_text())
    config["data"] = _fingerprint(read_annotations(str(ann)) * 2)
    del config["data_with_val"]  # as it was saved then
    (tmp_path / "t" / "config.json").write_text(json.dumps(config))
    code, out, err = vmr(*again[:-2], expect=1)  # without that --val: it cannot tell
    assert ("holds a trimmer trained with other training or --val annotations (it was saved before vmr told them "
            "apart: resume it with the --val it was trained with)") in err
    assert vmr_json(*again)["epochs"] == 1
    assert not (tmp_path / "library").exists() and (mine / "notes.txt").read_text() == "the user's"


def test_a_first_save_cut_short_leaves_a_folder_training_starts_over_in(small, tmp_path):
    """Killed between the weights' rename and config.json: only vmr's own files are there, and the
    same command again trains there, where it said the folder held files that are not a trimmer."""
    import torch
    from vmr_models.checkpoint import save_checkpoint

    out = tmp_path / "t"
    save_checkpoint(out, {"x": torch.zeros(3)}, {})
    (out / "config.json").unlink()
    [weights] = out.glob("model-*.safetensors")
    (out / ".weights.staging").write_bytes(weights.read_bytes())
    forged = tmp_path / "forged"  # a name like vmr's on weights that are not what it says: not ours
    forged.mkdir()
    (forged / weights.name).write_bytes(b"0" * 100)
    code, _out, err = vmr("train", small / "ann.txt", "--videos", small / "v", "--out", forged, "--epochs", 1,
                          "--model", MODEL, expect=1)
    assert "holds files that are not a vmr trimmer" in err and (forged / weights.name).read_bytes() == b"0" * 100
    summary = vmr_json("train", small / "ann.txt", "--videos", small / "v", "--out", out, "--epochs", 1,
                       "--model", MODEL)
    assert summary["epochs"] == 1 and not (out / weights.name).exists() and (out / "config.json").is_file()


def test_an_unfinished_trimmer_is_used_with_a_warning(small, tmp_path):
    """A checkpoint of an interrupted run works, but is not the model asked for: search and eval
    say so (eval in its warnings too), and how to finish it."""
    ann, videos, lib = small / "ann.txt", small / "v", tmp_path / "lib"
    vmr("--library", lib, "train", ann, "--videos", videos, "--out", tmp_path / "t", "--epochs", 1, "--model", MODEL)
    code, out, err = vmr("--library", lib, "search", "green", "--trimmer", tmp_path / "t")
    assert "unfinished" not in err
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    config["training"].update(phase="teacher", epoch=1)
    config["options"]["epochs"] = 150
    (tmp_path / "t" / "config.json").write_text(json.dumps(config))
    warning = (f"warning: trimmer {tmp_path / 't'} is unfinished: its training stopped after teacher epoch 1 of "
               "150; running the same 'vmr train' command again resumes it\n")
    code, out, err = vmr("--library", lib, "search", "green", "--trimmer", tmp_path / "t")
    assert warning in err and out
    code, out, err = vmr("--library", lib, "eval", ann, "--videos", videos, "--trimmer", tmp_path / "t", "--json")
    assert json.loads(out)["warnings"] == [warning[len("warning: "):-1]] and warning in err


def test_a_resume_follows_the_encoders_weights_not_its_folder(small, tmp_path):
    """The model folder moved (re-pointed with 'vmr index --model NEWDIR'): the same command was
    refused as "trained with other data or options".  An encoder that really differs is named as
    the encoder, and the same folder with other weights is said to be that."""
    import shutil

    ann, videos, lib, out = small / "ann.txt", small / "v", tmp_path / "lib", tmp_path / "t"
    shutil.copytree(MODEL, tmp_path / "model-a")
    vmr("--library", lib, "train", ann, "--videos", videos, "--out", out, "--epochs", 1, "--model", tmp_path / "model-a")
    (tmp_path / "model-a").rename(tmp_path / "model-b")
    vmr("--library", lib, "index", "--model", tmp_path / "model-b")
    summary = vmr_json("--library", lib, "train", ann, "--videos", videos, "--out", out, "--epochs", 1)
    assert summary["epochs"] == 1
    config = json.loads((out / "config.json").read_text())
    assert config["encoder"] == str(tmp_path / "model-b")  # saved again with the encoder's new place
    for name, weights, said in (("elsewhere", "0" * 64, f"for encoder 'elsewhere', but this library uses "
                                 f"'{tmp_path / 'model-b'}'"),
                                (config["encoder"], "0" * 64, f"for encoder '{tmp_path / 'model-b'}' with other "
                                 f"weights (sha256 000000000000, this library's {config['encoder_hash'][:12]})")):
        (out / "config.json").write_text(json.dumps(dict(config, encoder=name, encoder_hash=weights)))
        code, _out, err = vmr("--library", lib, "train", ann, "--videos", videos, "--out", out, "--epochs", 1,
                              expect=1)
        assert err == f"Error: --out {out} holds a trimmer trained {said}; choose another folder, or delete it to start over\n"
        code, _out, err = vmr("--library", lib, "search", "green", "--trimmer", out, expect=1)
        assert err == f"Error: trimmer {out} was trained {said}; train one for it with 'vmr train'\n"


def test_two_trainers_into_one_out_folder_are_one_too_many(small, tmp_path):
    """A second 'vmr train' into a folder another one is writing to (a second terminal) wrote the
    same checkpoint; it is refused before anything is indexed."""
    from vmr_cli.lock import writer_lock

    out = tmp_path / "t"
    out.mkdir()
    with writer_lock(str(out), "vmr train"):  # held as the other run holds it
        code, _out, err = vmr("train", small / "ann.txt", "--videos", small / "v", "--out", out, "--epochs", 1,
                              "--model", MODEL, expect=1)
    assert err == f"Error: another vmr train is writing to {out}; wait for it to finish\n"
    assert not (tmp_path / "library").exists()
    summary = vmr_json("train", small / "ann.txt", "--videos", small / "v", "--out", out, "--epochs", 1,
                       "--model", MODEL)
    assert summary["epochs"] == 1


def test_sigterm_during_train_exits_143(small, tmp_path, monkeypatch):
    """SIGTERM exited 130 (Ctrl-C's status) where every other command exits 143."""
    from vmr_cli import train as train_module
    from vmr_cli.cli import Terminated

    ann, videos, lib = small / "ann.txt", small / "v", tmp_path / "lib"

    def terminated(*args):
        raise Terminated()

    monkeypatch.setattr(train_module, "_save", terminated)
    code, _out, err = vmr("--library", lib, "train", ann, "--videos", videos, "--out", tmp_path / "t", "--epochs", 1,
                          "--model", MODEL, expect=143)
    assert err.startswith("Error: interrupted before the first epoch finished") and not (tmp_path / "t").exists()


def test_an_interrupt_while_the_videos_are_indexed_says_nothing_was_written_to_out(small, tmp_path, monkeypatch):
    """Ctrl-C while train indexed its videos said 'what was indexed and the last finished epoch are
    kept, run the command again to resume', though --out was never created."""
    from vmr_cli import indexer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(indexer, "index_paths", interrupted)
    code, _out, err = vmr("--library", tmp_path / "lib", "train", small / "ann.txt", "--videos", small / "v",
                          "--out", tmp_path / "t", "--epochs", 1, "--model", MODEL, expect=130)
    assert err.startswith(f"Error: interrupted before the first epoch finished; nothing was written to "
                          f"{tmp_path / 't'}") and not (tmp_path / "t").exists()


def test_a_save_on_a_full_disk_names_out_not_the_library(small, tmp_path, monkeypatch):
    """A save that failed for want of space blamed the library's device, which had room."""
    from vmr_models import checkpoint

    ann, videos, lib = small / "ann.txt", small / "v", tmp_path / "lib"

    def full(tensors, path):  # what safetensors raises on a full disk
        raise Exception('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space '
                        'left on device" })')

    monkeypatch.setattr(checkpoint, "save_file", full)
    code, _out, err = vmr("--library", lib, "train", ann, "--videos", videos, "--out", tmp_path / "t", "--epochs", 1,
                          "--model", MODEL, expect=1)
    assert err == (f"Error: no space left on the device of --out {tmp_path / 't'} to save the trimmer; free some "
                   "space there and run the same command again (it resumes from the last epoch saved)\n")
    assert not (tmp_path / "t").exists()


def test_a_window_far_past_its_videos_end_is_cut_at_the_end(small, tmp_path):
    """A finite but absurd end (1e308 in a damaged file) passed the window check, then overflowed
    in training (OverflowError traceback after the videos were indexed)."""
    ann = tmp_path / "huge.txt"
    ann.write_text("green 2 4##a green screen\ngreen 0 1e308##a red screen\n")
    summary = vmr_json("train", ann, "--videos", small / "v", "--out", tmp_path / "t", "--epochs", 1, "--model", MODEL)
    assert summary["epochs"] == 1 and summary["history"][0]["vmr"] == summary["history"][0]["vmr"]  # not NaN


def test_windows_past_their_videos_end_are_told_before_training_and_not_trained_on(small, tmp_path):
    """Times typed in milliseconds: every window starts after its video ends.  vmr train ran all
    its epochs teaching each query 'the last clip' (its target, cut at the video's end), and
    warned only after the last one.  Now the warning comes before the first epoch, such a query
    is left out, and with none left the run is refused before anything is written to --out."""
    ms = tmp_path / "ms.txt"
    ms.write_text("green 2000 4000##a green screen\ngreen 5000 9000##a red screen\n")
    code, out, err = vmr("train", ms, "--videos", small / "v", "--out", tmp_path / "t", "--epochs", 1,
                         "--model", MODEL, expect=1)
    assert f"warning: {ms}:1: window [2000, 4000] starts after video 'green' ends (4.0 s)" in err
    assert err.strip().splitlines()[-1] == (
        f"Error: no training query has its window inside its video: each starts after its video ends ({ms}:1: "
        "window [2000, 4000], video 'green' 4.0 s long); are the times in seconds?")
    assert not (tmp_path / "t").exists()
    some = tmp_path / "some.txt"
    some.write_text("green 2 4##a green screen\ngreen 9 12##a red screen\n")
    code, out, err = vmr("train", some, "--videos", small / "v", "--out", tmp_path / "t", "--epochs", 1)
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"warning: {some}:2: window [9, 12] starts after video 'green' ends")
    assert lines[1] == "warning: 1 training query left out: its window starts after the video ends"
    assert lines[2].startswith("phase teacher epoch 1"), lines  # the warnings came before the first epoch
    assert out.startswith(f"trimmer in {tmp_path / 't'}: 1 query, 1 epoch")
    assert sum(line.startswith("warning:") for line in lines) == 2  # not told again at the end


def test_a_long_video_is_trained_on_in_pieces_as_search_reads_it():
    """Training fed every clip of a video to the network at once: a batch holding a 10-minute
    video took 13 s and 2.7 GB, an hour's ran out of memory.  It now sees a piece of at most
    MAX_CLIPS clips (as search does) holding the example's window, placed at random; a video that
    fits is used whole, drawing no random number (short-video training is what it was)."""
    import torch

    from vmr_cli.train import _Data
    from vmr_cli.trained import MAX_CLIPS

    def video(n):
        starts = torch.arange(n, dtype=torch.float32) * 2
        return {"A": torch.randn(n, 8), "c": torch.randn(n, 8), "motion": torch.rand(n),
                "clip_start": starts, "clip_end": starts + 2}

    long, short = video(1800), video(40)  # an hour, and 80 s
    generator = torch.Generator().manual_seed(0)
    assert _Data._piece(short, (10.0, 20.0), True, generator) is short
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(0).get_state())
    window = (1400.0, 1421.0)  # clips 700-710
    firsts = set()
    for _ in range(20):
        piece = _Data._piece(long, window, True, generator)
        assert piece["A"].shape == (MAX_CLIPS, 8) and piece["motion"].shape == (MAX_CLIPS,)
        first = int(piece["clip_start"][0]) // 2
        assert first <= 700 and first + MAX_CLIPS > 710 and torch.equal(piece["A"], long["A"][first:first + MAX_CLIPS])
        firsts.add(first)
    assert len(firsts) > 10  # placed at random, not always at one place
    assert int(_Data._piece(long, window, True, None)["clip_start"][0]) // 2 == 710 - MAX_CLIPS + 1
    assert int(_Data._piece(long, (200.0, 1400.0), True, generator)["clip_start"][0]) == 200  # longer than a piece
    assert int(_Data._piece(long, (3590.0, 3600.0), True, generator)["clip_end"][-1]) == 3600  # at the end
    negative = _Data._piece(long, (-1.0, -1.0), False, generator)
    assert negative["A"].shape[0] == MAX_CLIPS


def test_query_tokens_in_training_and_search_and_a_trimmer_from_before_them(small, tmp_path, monkeypatch):
    """vmr train --tokens gives the trimmer the query's token features (config token_dim) and search
    passes them; --no-tokens (the default) trains on the pooled embedding only, as vmr did before;
    a checkpoint from before tokens (no options.tokens) loads and searches as that, encoding no
    tokens; a resume with the other setting is refused, naming it."""
    import shutil

    from vmr_models.checkpoint import load_checkpoint, save_checkpoint

    from vmr_cli.encoders import ClipEncoder
    from vmr_cli.trained import TrainedTrimmer

    ann, videos, lib = small / "ann.txt", small / "v", tmp_path / "lib"
    vmr("--library", lib, "train", ann, "--videos", videos, "--out", tmp_path / "tok", "--epochs", 1, "--model", MODEL,
        "--tokens")
    vmr("--library", lib, "train", ann, "--videos", videos, "--out", tmp_path / "pooled", "--epochs", 1,
        "--no-tokens")
    with_tokens, config = load_checkpoint(tmp_path / "tok")
    assert config["trimmer"]["token_dim"] == 64 and any(".token_attn." in k for k in with_tokens)
    pooled_only, config = load_checkpoint(tmp_path / "pooled")
    assert config["trimmer"]["token_dim"] is None and not any(".token_attn." in k for k in pooled_only)
    assert config["options"]["tokens"] is False
    old = tmp_path / "old"  # as vmr wrote it before tokens: no options.tokens, token_dim None
    shutil.copytree(tmp_path / "pooled", old)
    del config["options"]["tokens"]
    save_checkpoint(old, pooled_only, config)

    from vmr_cli import trained

    seen = []
    real_windows = trained.TrainedTrimmer.windows

    def windows(self, features, q, top_k, tokens=None):
        seen.append(None if tokens is None else tuple(tokens.shape))
        return real_windows(self, features, q, top_k, tokens)

    monkeypatch.setattr(trained.TrainedTrimmer, "windows", windows)
    found = vmr_json("--library", lib, "search", "a green screen", "--trimmer", tmp_path / "tok")
    assert found["results"] and seen and all(shape == (5, 64) for shape in seen), seen  # start, 3 words, end
    real_tokens = ClipEncoder.encode_text_tokens

    def no_tokens(*args):
        raise AssertionError("tokens encoded for a trimmer that takes none")

    monkeypatch.setattr(ClipEncoder, "encode_text_tokens", no_tokens)
    seen.clear()
    results = [vmr_json("--library", lib, "search", "a green screen", "--trimmer", folder)["results"]
               for folder in (tmp_path / "pooled", old)]
    assert results[0] and results[0] == results[1] and set(seen) == {None}
    monkeypatch.setattr(ClipEncoder, "encode_text_tokens", real_tokens)
    # resumed with the other setting: refused, naming it; as it was: fine
    for folder, other, told in ((old, ("--tokens",), "--no-tokens (this run: --tokens)"),
                                (tmp_path / "tok", (), "--tokens (this run: --no-tokens)")):
        code, _out, err = vmr("--library", lib, "train", ann, "--videos", videos, "--out", folder, "--epochs", 1,
                              *other, expect=1)
        assert err == (f"Error: --out {folder} holds a trimmer trained with {told}; run as it was to resume it, or "
                       "choose another folder, or delete it to start over\n"), err
    assert vmr_json("--library", lib, "train", ann, "--videos", videos, "--out", old, "--epochs", 1)["epochs"] == 1
    # a round trip through the checkpoint: the same windows, tokens and all
    from vmr_cli.features import clip_features
    from vmr_cli.library import Library

    library = Library(str(lib))
    row = library.catalog.videos("ok")[0]
    features = clip_features(library.vectors.read_shard(row["id"], row["vectors_token"]),
                             library.catalog.clips(row["id"]))
    pooled, tokens, mask = ClipEncoder(MODEL).encode_text_tokens(["a green screen"])
    first = TrainedTrimmer(str(tmp_path / "tok"), library)
    tensors, config = load_checkpoint(tmp_path / "tok")
    save_checkpoint(tmp_path / "copy", {k: v.clone() for k, v in tensors.items()}, config)
    again = TrainedTrimmer(str(tmp_path / "copy"), library)
    a = first.windows(features, pooled[0], 3, tokens[0][mask[0]])
    assert a and a == again.windows(features, pooled[0], 3, tokens[0][mask[0]])
    assert first.uses_tokens and not TrainedTrimmer(str(old), library).uses_tokens


def test_the_summary_says_whether_the_trimmer_reads_query_tokens(small, tmp_path, monkeypatch):
    """vmr train --json says whether the trimmer reads the query's tokens, and the summary line
    too; --tokens with an encoder that gives none (another family than CLIP) warns, once, and
    trains without them rather than saying nothing."""
    from vmr_cli.encoders import ClipEncoder

    ann, videos, lib = small / "ann.txt", small / "v", tmp_path / "lib"
    args = ("--library", lib, "train", ann, "--videos", videos, "--epochs", 1, "--model", MODEL)
    assert vmr_json(*args, "--out", tmp_path / "tok", "--tokens")["tokens"] is True
    assert vmr_json(*args, "--out", tmp_path / "pooled")["tokens"] is False
    _code, out, _err = vmr(*args, "--out", tmp_path / "tok2", "--tokens")
    assert ", with query tokens," in out, out
    monkeypatch.setattr(ClipEncoder, "encode_text_tokens", lambda self, texts: None)  # as SigLIP gives
    _code, out, err = vmr(*args, "--out", tmp_path / "none", "--tokens", "--json")
    summary = json.loads(out)
    assert summary["tokens"] is False and err.count("warning: --tokens: encoder ") == 1, err
    assert "gives no token features" in summary["warnings"][-1]
