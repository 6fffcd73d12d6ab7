"""Never lose the library, round 2 (issue 11, library and model side; issue 12 item 7, the model).

The model's identity (a hash of its weights, recorded with the library), the
"no pickle" rule for every model folder and hub snapshot, disk full in the
library folder, a damaged or zero-byte catalog, crafted FAISS and shard
files.  TESTING.md ("Round 2: library and model") maps each case to its test.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3

import numpy as np
import pytest
from conftest import damage_page, make_video, small_disk, vmr, vmr_json

from vmr_cli import encoders
from vmr_cli.library import Library


def one_error(err: str) -> str:
    """The single 'Error: ...' line a command printed (and nothing like a traceback)."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


def sha256_of(path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@pytest.fixture
def model(tiny_model, tmp_path):
    """A copy of the tiny CLIP that a test may move, link or overwrite."""
    return shutil.copytree(tiny_model, tmp_path / "models" / "tiny-clip")


@pytest.fixture(scope="session")
def retrained(tmp_path_factory):
    """Same shapes as the tiny CLIP, other weights: what retraining into the same --out leaves."""
    from examples.tiny_clip import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("retrained"), seed=2)


@pytest.fixture
def two_videos(tmp_path):
    folder = tmp_path / "videos"
    make_video(folder / "red_blue.mp4", [("red", 2.0), ("blue", 2.0)])
    make_video(folder / "green.mp4", [("green", 2.0)])
    return folder


def counts():
    status = vmr_json("status")
    return status["videos"], status["clips"], status["vectors"]


# -- 11.3 the model's weights replaced in place -------------------------------------------------------
def test_weights_replaced_in_place_are_refused_at_index_and_search(model, retrained, two_videos):
    vmr_json("index", two_videos, "--model", model)
    before = counts()
    original = (model / "model.safetensors").read_bytes()
    shutil.copyfile(retrained / "model.safetensors", model / "model.safetensors")  # same folder, same dim
    make_video(two_videos / "new.mp4", [("yellow", 2.0)])
    for args in (("search", "red"), ("index", two_videos), ("index", two_videos, "--model", model)):
        line = one_error(vmr(*args, expect=1)[2])
        assert f"the model weights in {model} changed since library" in line
        assert sha256_of(model / "model.safetensors")[:12] in line and "--library" in line
    assert counts() == before  # nothing was embedded with the new weights
    (model / "model.safetensors").write_bytes(original)  # the way out: the original weights back
    assert vmr_json("search", "red")["results"]
    assert vmr_json("index", two_videos)["added"] == 1


def test_a_search_pays_a_fingerprint_not_a_hash(model, two_videos, monkeypatch):
    vmr_json("index", two_videos, "--model", model)
    hashed = []
    real = encoders.weights_sha256
    monkeypatch.setattr(encoders, "weights_sha256", lambda files: hashed.append(files.name) or real(files))
    vmr_json("search", "red")
    assert hashed == []  # size, times and inode of the weights as recorded: no hash
    weights = model / "model.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same bytes
    vmr_json("search", "red")
    assert len(hashed) == 1  # hashed once, found equal ...
    vmr_json("search", "red")
    assert len(hashed) == 1  # ... and the new fingerprint was remembered


def test_a_library_from_before_weight_hashes_records_them_on_first_use(model, two_videos, isolated_library):
    vmr_json("index", two_videos, "--model", model)
    conn = sqlite3.connect(isolated_library / "catalog.db")
    conn.execute("DELETE FROM meta WHERE key='encoder_weights'")
    conn.commit()
    conn.close()
    assert vmr_json("search", "red")["results"]
    checked = vmr_json("status", "--check")
    assert checked["check"]["model"]["sha256"] == sha256_of(model / "model.safetensors")


def test_a_library_from_before_weight_hashes_on_a_pickle_only_model_says_to_convert_it_in_place(
        model, tiny_model, two_videos, tmp_path, isolated_library, monkeypatch):
    """vmr 1 loaded pickle weights and recorded no hash: the new vmr refuses the pickle; a copy
    converted elsewhere was refused as if the old model 'cannot be found' (it is there, only
    pickled).  Both say what is so: convert it in place; nothing is ever unpickled."""
    import torch
    from safetensors.torch import load_file

    vmr_json("index", two_videos, "--model", model)
    conn = sqlite3.connect(isolated_library / "catalog.db")
    conn.execute("DELETE FROM meta WHERE key='encoder_weights'")  # as vmr 1 left it
    conn.commit()
    conn.close()
    safe = model / "model.safetensors"
    torch.save(load_file(safe), model / "pytorch_model.bin")  # vmr 1's model folder: a pickle only
    kept = safe.rename(tmp_path / "model.safetensors")
    loads = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a))
    converted = shutil.copytree(tiny_model, tmp_path / "converted")  # the same weights, elsewhere
    in_place = (f"convert them in place (add model.safetensors to {model}, e.g. save_pretrained('{model}', "
                "safe_serialization=True) where you trust it)")
    line = one_error(vmr("search", "red", expect=1)[2])
    assert line.startswith(f"Error: model folder {model} holds only pickle weights (pytorch_model.bin)")
    assert line.endswith(f"a converted copy elsewhere cannot be compared with them: {in_place}")
    line = one_error(vmr("index", "--model", converted, expect=1)[2])
    assert line == (f"Error: library {isolated_library} was built before vmr recorded its model's weights, and "
                    f"that model ({model}) holds only pickle weights (pytorch_model.bin), which vmr does not load "
                    f"(they can run code), so vmr cannot tell whether {converted} holds the same weights; "
                    f"{in_place}, then run vmr index --model {converted} again")
    assert "cannot be found" not in line and loads == []
    kept.rename(safe)  # converted in place
    vmr_json("index", "--model", converted)
    assert vmr_json("status")["encoder"] == str(converted)
    assert vmr_json("search", "red")["results"]


def test_a_changed_preprocessor_config_is_refused_at_index_and_search(model, two_videos, isolated_library):
    vmr_json("index", two_videos, "--model", model)
    before = counts()
    config = model / "preprocessor_config.json"
    original = config.read_text()
    edited = json.loads(original)
    edited["image_mean"] = [0.5, 0.5, 0.5]  # same weights, frames normalised differently
    config.write_text(json.dumps(edited))
    make_video(two_videos / "new.mp4", [("yellow", 2.0)])
    for args in (("search", "red"), ("index", two_videos)):
        line = one_error(vmr(*args, expect=1)[2])
        assert "prepares frames differently" in line and "mean" in line and "--library" in line
    assert counts() == before
    config.write_text(original)  # the way out: the original file back
    assert vmr_json("search", "red")["results"]
    assert vmr_json("index", two_videos)["added"] == 1
    # a library from before the preprocessing was recorded records it on first use
    conn = sqlite3.connect(isolated_library / "catalog.db")
    conn.execute("DELETE FROM meta WHERE key='encoder_preprocessing'")
    conn.commit()
    conn.close()
    assert vmr_json("search", "red")["results"]
    conn = sqlite3.connect(isolated_library / "catalog.db")
    recorded = json.loads(conn.execute("SELECT value FROM meta WHERE key='encoder_preprocessing'").fetchone()[0])
    conn.close()
    assert recorded["mean"] == [round(x, 6) for x in json.loads(original)["image_mean"]]


# -- 12.7 a moved model folder, a symlink, another model -------------------------------------------------
def test_a_moved_model_folder_is_re_pointed_when_its_weights_agree(model, retrained, two_videos, tmp_path):
    vmr_json("index", two_videos, "--model", model)
    moved = tmp_path / "elsewhere" / "tiny-clip"
    moved.parent.mkdir()
    os.rename(model, moved)
    line = one_error(vmr("search", "red", expect=1)[2])
    assert line == (f"Error: the library's model folder {model} is gone; if it moved, point the library "
                    "at its new place: vmr index --model NEWDIR")
    for extra in (["--prune"], ["--clip-seconds", "2"], ["--backend", "pyav"]):  # ignored before: a --prune
        line = one_error(vmr("index", "--model", moved, *extra, expect=1)[2])  # that pruned nothing, exit 0
        assert line == (f"Error: {extra[0]} cannot go with --model and no PATH, which only points the library "
                        "at its model's new place; run the two apart")
    assert vmr_json("status")["encoder"] == str(model)  # not re-pointed either
    code, out, err = vmr("index", "--model", moved)  # exactly as the message says
    assert str(moved) in out and vmr_json("status")["encoder"] == str(moved)
    assert vmr_json("search", "red")["results"]
    link = tmp_path / "link-to-model"
    link.symlink_to(moved)
    code, out, err = vmr("index", two_videos, "--model", link)  # the same model through a symlink
    assert "added 0" in out and f"note: the library's model is now {link}" in err
    assert vmr_json("status")["encoder"] == str(link)
    line = one_error(vmr("index", "--model", retrained, expect=1)[2])
    assert line.startswith(f"Error: the weights in {retrained} are not the ones library ")
    assert vmr_json("status")["encoder"] == str(link)  # unchanged


def test_re_pointing_a_library_needs_a_model_and_a_library(tmp_path, model):
    code, out, err = vmr("index", expect=1)  # no PATH and an empty library: nothing to update
    assert one_error(err).endswith("say what to index: vmr index PATH")
    line = one_error(vmr("index", "--model", model, expect=1)[2])
    assert "no vmr library" in line


@pytest.mark.parametrize("command", [["index", "PATH"], ["index"], ["eval", "a.txt", "--videos", "PATH"],
                                     ["train", "a.txt", "--videos", "PATH", "--out", "OUT"]])
def test_an_empty_model_name_is_refused_not_taken_for_the_default(command, two_videos, tmp_path):
    """``--model "$MODEL"`` with MODEL unset: a new library went for the default hub model (600 MB
    to download), an existing one ran a full update instead of re-pointing."""
    (tmp_path / "a.txt").write_text("red_blue 0 2##a red screen\n")
    args = [str(two_videos) if a == "PATH" else str(tmp_path / a) if a in ("a.txt", "OUT") else a for a in command]
    code, out, err = vmr(*args, "--model", "", expect=2)
    assert "empty model name (an unset shell variable?)" in err and "Traceback" not in err
    assert not os.path.exists(os.environ["VMR_LIBRARY"]) and not (tmp_path / "OUT").exists()


# -- hub models: the same protection for files in the Hugging Face cache ----------------------------------
def _snapshot(cache, commit: str, source) -> str:
    repo = cache / "models--vmr-test--tiny-clip"
    folder = repo / "snapshots" / commit
    shutil.copytree(source, folder)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return str(folder)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_a_hub_model_updated_in_the_cache_is_refused(tiny_model, retrained, two_videos, hub_cache):
    first = _snapshot(hub_cache, "a" * 40, tiny_model)
    vmr_json("index", two_videos, "--model", "vmr-test/tiny-clip")
    assert vmr_json("status")["encoder"] == "vmr-test/tiny-clip"
    _snapshot(hub_cache, "b" * 40, retrained)  # the cache moved main to a commit with other weights
    line = one_error(vmr("search", "red", expect=1)[2])
    assert "vmr-test/tiny-clip" in line and "changed since library" in line
    assert line.endswith(f"vmr index --model {first}")  # the original is still in the cache
    vmr("index", "--model", first)
    assert vmr_json("search", "red")["results"]
    _snapshot(hub_cache, "c" * 40, tiny_model)  # a later commit with the same weights is the same model
    vmr("index", "--model", "vmr-test/tiny-clip")
    assert vmr_json("status")["encoder"] == "vmr-test/tiny-clip"
    assert vmr_json("search", "red")["results"]


# -- 11.16 no pickle, whatever the folder's index or config says ------------------------------------------
def _pickled(tiny_model, folder, how: str):
    import torch
    from safetensors.torch import load_file

    folder = shutil.copytree(tiny_model, folder)
    state = load_file(folder / "model.safetensors")
    if how == "index":  # a safetensors index whose weight map points at a pickle
        torch.save(state, folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
        weight_map = {key: "pytorch_model.bin" for key in state}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
        return folder, "pytorch_model.bin"
    torch.save(state, folder / "adapter_model.bin")  # config.json naming a pickle explicitly
    config = json.loads((folder / "config.json").read_text())
    config["transformers_weights"] = "adapter_model.bin"
    (folder / "config.json").write_text(json.dumps(config))
    return folder, "adapter_model.bin"


@pytest.mark.parametrize("how", ["index", "config"])
def test_pickle_weights_named_by_an_index_or_the_config_are_refused(tiny_model, two_videos, tmp_path, how,
                                                                     monkeypatch):
    import torch

    folder, pickle_name = _pickled(tiny_model, tmp_path / "bad-model", how)
    loads = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a) or real(*a, **k))
    line = one_error(vmr("index", two_videos, "--model", folder, expect=1)[2])
    assert line.startswith(f"Error: model folder {folder} would load {pickle_name}")
    assert "vmr loads safetensors only" in line
    assert loads == []  # refused before anything was loaded
    assert vmr_json("status")["videos"] == 0


def test_pickle_weights_in_a_hub_snapshot_are_refused(tiny_model, two_videos, tmp_path, hub_cache):
    folder, _ = _pickled(tiny_model, tmp_path / "bad-model", "index")
    snapshot = _snapshot(hub_cache, "d" * 40, folder)
    line = one_error(vmr("index", two_videos, "--model", "vmr-test/tiny-clip", expect=1)[2])
    assert line.startswith(f"Error: model folder {snapshot} would load pytorch_model.bin")


def test_a_pickle_that_slips_past_the_check_is_still_never_unpickled(tiny_model, two_videos, tmp_path,
                                                                    monkeypatch):
    folder, _ = _pickled(tiny_model, tmp_path / "bad-model", "index")
    monkeypatch.setattr(encoders, "safetensors_weights", lambda folder: ())  # the first lock fails open
    line = one_error(vmr("index", two_videos, "--model", folder, expect=1)[2])
    assert "asked to unpickle" in line and "vmr loads safetensors only" in line


@pytest.mark.parametrize("path", ["plain torch", "transformers"])
def test_damaged_weights_are_one_line_on_either_loading_path(tiny_model, two_videos, tmp_path, monkeypatch, path):
    import shutil

    folder = tmp_path / "damaged-model"
    shutil.copytree(tiny_model, folder)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:len(data) // 2])  # a download cut short
    monkeypatch.setenv("VMR_TRANSFORMERS", "1" if path == "transformers" else "0")
    line = one_error(vmr("index", two_videos, "--model", folder, expect=1)[2])
    assert "cannot load model" in line and "damaged" in line


def test_a_hub_download_fetches_weights_only_after_checking_them(tiny_model, two_videos, tmp_path, hub_cache,
                                                                monkeypatch):
    import huggingface_hub

    folder, _ = _pickled(tiny_model, tmp_path / "bad-model", "index")
    fetched = []

    def snapshot_download(repo_id, allow_patterns=None, **kwargs):  # a hub that serves `folder`
        fetched.append(allow_patterns)
        return _snapshot(hub_cache, "e" * 40, folder) if len(fetched) == 1 else kwargs.get("_folder")

    monkeypatch.setattr(encoders, "_hub_reachable", lambda: True)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda repo_id, **k: sorted(os.listdir(folder)))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    line = one_error(vmr("index", two_videos, "--model", "vmr-test/tiny-clip", expect=1)[2])
    assert "would load pytorch_model.bin" in line
    assert fetched == [encoders.HUB_SMALL_FILES]  # the pickle itself was never downloaded


# -- 12.7 the offline message names a folder that exists ---------------------------------------------------
def test_the_offline_message_suggests_an_absolute_folder_that_exists(two_videos):
    line = one_error(vmr("index", two_videos, "--model", "nobody/not-cached-clip", expect=1)[2])
    assert "cannot be reached" in line
    suggested = re.search(r"e\.g\. --model (\S+)", line)
    if suggested:
        assert os.path.isabs(suggested.group(1)) and os.path.isdir(suggested.group(1)), line


# -- status --check: catalog integrity, shard agreement, the model's hash -----------------------------------
def test_status_check_reports_catalog_shards_and_model(model, retrained, two_videos):
    vmr_json("index", two_videos, "--model", model)
    code, out, err = vmr("status", "--check")
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert lines["catalog"] == "catalog   integrity ok"
    assert lines["shards"] == ("shards    2 checked: stale 0 (re-embedded by the next vmr index), "
                               "orphan shards removed 0, index +0 -0")
    digest = sha256_of(model / "model.safetensors")
    assert lines["model"] == f"model     weights sha256 {digest}, as recorded"
    checked = vmr_json("status", "--check")["check"]
    assert checked["catalog"] == {"ok": True, "problems": [], "salvaged": None}
    assert checked["model"] == {"name": str(model), "sha256": digest, "ok": True, "error": None}
    shutil.copyfile(retrained / "model.safetensors", model / "model.safetensors")
    code, out, err = vmr("status", "--check", expect=1)
    assert "model     NOT the library's weights" in out
    line = one_error(err)
    assert "changed since library" in line


def test_status_check_shows_progress_over_the_shards_and_no_empty_frame_cache(model, two_videos, monkeypatch,
                                                                           capsys):
    """``status --check`` reads every shard (3.4 s at 20,000 videos) in silence; and status said
    'of which frame cache 0.0 MB' for a library that has none."""
    from vmr_cli import progress
    from vmr_cli.library import check_library

    vmr_json("index", two_videos, "--model", model)
    code, out, err = vmr("status")
    size = next(line for line in out.splitlines() if line.startswith("size"))
    assert re.fullmatch(r"size +[0-9.]+ MB", size), size
    monkeypatch.setattr(progress, "SHOW_AFTER_SECONDS", 0.0)
    monkeypatch.setattr(progress, "LINE_EVERY_SECONDS", 0.0)
    library, report = check_library(os.environ["VMR_LIBRARY"])
    library.close()
    assert report["shards_checked"] == 2
    assert re.search(r"^checking shards: 2/2 video, \d+ s$", capsys.readouterr().err, re.M)


# -- 11.11 disk full in the library folder -----------------------------------------------------------------
def _fill(folder) -> None:
    with open(folder / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass


def test_disk_full_on_a_real_tmpfs(tiny_model, two_videos, tmp_path, monkeypatch):
    with small_disk(tmp_path / "small-disk", "6m", "test_disk_full_when_each_write_fails") as disk:
        monkeypatch.setenv("VMR_LIBRARY", str(disk / "library"))
        vmr_json("index", two_videos, "--model", tiny_model)
        before = counts()
        _fill(disk)
        code, out, err = vmr("search", "red")  # the results are printed all the same
        assert "red_blue.mp4" in out and "Traceback" not in err
        assert "warning: this search was not logged" in err and "no space left" in err
        found = vmr_json("search", "red")
        assert found["results"] and found["search_id"] is None and "no space left" in found["stats"]["not_logged"]
        make_video(two_videos / "new.mp4", [("yellow", 2.0)])
        line = one_error(vmr("index", two_videos, expect=1)[2])
        assert "no space left on the device of library" in line and "free some space" in line
        line = one_error(vmr("forget", two_videos / "red_blue.mp4", expect=1)[2])  # was: "check the permissions"
        assert "no space left on the device of library" in line and "free some space" in line
        code, out, err = vmr("status", "--check", expect=None)
        assert code == 0 or one_error(err)
        os.unlink(disk / "filler")
        checked = vmr_json("status", "--check")
        assert checked["consistent"] and counts() == before
        assert vmr_json("index", two_videos)["added"] == 1
        assert vmr_json("search", "yellow")["search_id"] is not None


def test_disk_full_when_each_write_fails(tiny_model, two_videos, isolated_library, monkeypatch):
    import faiss
    import safetensors.numpy
    from safetensors import SafetensorError

    from vmr_cli.catalog import Catalog

    vmr_json("index", two_videos, "--model", tiny_model)
    before = counts()
    make_video(two_videos / "new.mp4", [("yellow", 2.0)])

    def no_space_shard(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    with monkeypatch.context() as patch:
        patch.setattr(safetensors.numpy, "save_file", no_space_shard)
        line = one_error(vmr("index", two_videos, expect=1)[2])
        assert "no space left on the device of library" in line
    assert counts() == before and vmr_json("status", "--check")["check"]["consistent"]

    def no_space_faiss(index, path):
        raise RuntimeError(f"Error in void faiss::write_index(const Index*, IOWriter*, int): write error in "
                           f"{path}: 0 != 4096 (No space left on device)")

    with monkeypatch.context() as patch:
        patch.setattr(faiss, "write_index", no_space_faiss)
        line = one_error(vmr("index", two_videos, expect=1)[2])
        assert "no space left on the device of library" in line
    checked = vmr_json("status", "--check")  # the video was committed; the FAISS cache is rebuilt
    assert checked["videos"] == 3 and checked["consistent"] and checked["vectors"] == checked["clips"]

    class FullTable:
        def insert(self, *args, **kwargs):
            raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as patch:
        patch.setattr(Catalog, "_tables", lambda self: {"searches": FullTable()})
        code, out, err = vmr("search", "yellow")
        assert "new.mp4" in out and "warning: this search was not logged" in err
        assert "Traceback" not in err
    assert vmr_json("status")["searches"] == 0


# -- 11.12 a damaged catalog page -----------------------------------------------------------------------------
def test_a_damaged_index_page_is_one_line_everywhere_and_check_salvages_all(model, two_videos, tmp_path,
                                                                          isolated_library):
    vmr_json("index", two_videos, "--model", model)
    found = vmr_json("search", "red")
    (tmp_path / "before").mkdir()
    (tmp_path / "after").mkdir()
    db = isolated_library / "catalog.db"
    damage_page(db, "clips_video")
    for args in (("search", "red"), ("index", two_videos), ("export", "1", "--out", tmp_path / "before")):
        code, out, err = vmr(*args, expect=None)
        if args[0] == "export" and code == 0:
            continue  # the logged search's rows are not on the damaged page
        line = one_error(err)
        assert line.startswith(f"Error: the catalog {db} is damaged (")
        assert line.endswith("run 'vmr status --check' to check it and salvage what can be read")
    checked = vmr_json("status", "--check")["check"]
    assert not checked["catalog"]["ok"] and checked["catalog"]["problems"]
    assert checked["catalog"]["salvaged"]["kept_as"] == str(db) + ".damaged"
    assert os.path.exists(str(db) + ".damaged")
    assert checked["stale_videos"] == []  # an index page only: every row was read back
    assert vmr_json("status", "--check")["check"]["catalog"]["ok"]
    again = vmr_json("search", "red")
    assert [(r["video"], r["start"]) for r in again["results"]] == \
        [(r["video"], r["start"]) for r in found["results"]]
    assert vmr_json("export", "1", "--out", tmp_path / "after")["exported"]


def test_a_damaged_table_page_is_salvaged_and_the_next_index_re_embeds(model, two_videos, isolated_library):
    vmr_json("index", two_videos, "--model", model)
    db = isolated_library / "catalog.db"
    damage_page(db, "clips")
    one_error(vmr("search", "red", expect=1)[2])
    code, out, err = vmr("status", "--check")
    assert "catalog   damaged (" in out and "salvaged 2 videos" in out
    assert vmr_json("status")["stale"] == 2  # their clip rows were on the damaged page
    summary = vmr_json("index", two_videos)
    assert summary["updated"] == 2
    status = vmr_json("status", "--check")
    assert status["consistent"] and status["videos"] == 2
    assert vmr_json("search", "red")["results"]


def test_a_catalog_that_is_not_a_database_is_refused_and_kept(model, two_videos, isolated_library):
    vmr_json("index", two_videos, "--model", model)
    db = isolated_library / "catalog.db"
    for suffix in ("-wal", "-shm"):
        assert not os.path.exists(str(db) + suffix)
    db.write_bytes(b"this is not SQLite" * 1000)
    for args in (("search", "red"), ("status",), ("status", "--check"), ("index", two_videos)):
        line = one_error(vmr(*args, expect=1)[2])
        assert "not a database" in line and "backup" in line
    assert db.read_bytes() == b"this is not SQLite" * 1000
    assert len(os.listdir(isolated_library / "shards")) == 2


# -- 11.13 a zero-byte or missing catalog beside existing shards ------------------------------------------------
def test_an_empty_or_missing_catalog_beside_shards_is_refused(model, two_videos, isolated_library):
    vmr_json("index", two_videos, "--model", model)
    db = isolated_library / "catalog.db"
    shards = sorted(os.listdir(isolated_library / "shards"))
    db.write_bytes(b"")
    for args in (("status",), ("search", "red"), ("index", two_videos), ("status", "--check")):
        line = one_error(vmr(*args, expect=1)[2])
        assert line.startswith(f"Error: library {isolated_library} holds 2 vector shards but its catalog {db} "
                               "is empty (zero bytes)")
    assert db.stat().st_size == 0 and sorted(os.listdir(isolated_library / "shards")) == shards
    db.unlink()
    for args in (("status",), ("index", two_videos)):
        line = one_error(vmr(*args, expect=1)[2])
        assert f"its catalog {db} is missing" in line
    assert not db.exists() and sorted(os.listdir(isolated_library / "shards")) == shards


# -- 11.14 crafted library files ------------------------------------------------------------------------------
def test_a_faiss_file_of_another_index_type_is_rebuilt(model, two_videos, isolated_library):
    import faiss

    vmr_json("index", two_videos, "--model", model)
    dim = vmr_json("status")["embedding_dim"]
    for crafted in (faiss.IndexFlatL2(dim), faiss.IndexIDMap2(faiss.IndexFlatL2(dim))):
        crafted.add_with_ids(np.ones((1, dim), np.float32), np.array([1])) if crafted.__class__ is \
            faiss.IndexIDMap2 else crafted.add(np.ones((1, dim), np.float32))
        faiss.write_index(crafted, str(isolated_library / "appearance.faiss"))
        (isolated_library / "appearance.faiss.json").unlink(missing_ok=True)
        assert vmr_json("search", "red")["results"]
        checked = vmr_json("status", "--check")
        assert checked["check"]["index_added"] == checked["clips"] and checked["consistent"]
        assert isinstance(faiss.read_index(str(isolated_library / "appearance.faiss")), faiss.IndexIDMap2)


def test_shard_names_with_other_digits_are_left_alone(model, two_videos, isolated_library):
    vmr_json("index", two_videos, "--model", model)
    shards = isolated_library / "shards"
    foreign = ["².safetensors", "٣.safetensors", "007.safetensors", "-1.safetensors"]
    for name in foreign:
        (shards / name).write_bytes(b"not a shard")
    checked = vmr_json("status", "--check")
    assert checked["consistent"] and checked["check"]["orphan_shards"] == 0
    assert vmr_json("search", "red")["results"]
    assert vmr_json("index", two_videos)["unchanged"] == 2
    assert all((shards / name).exists() for name in foreign)  # not vmr's: never deleted


def test_a_shard_with_arrays_of_the_wrong_shape_is_re_embedded(model, two_videos, isolated_library):
    from safetensors.numpy import load_file, save_file

    vmr_json("index", two_videos, "--model", model)
    lib = Library()
    video = lib.catalog.video_by_path(str(two_videos / "red_blue.mp4"))
    path = lib.vectors.shard_path(video["id"])
    lib.close()
    tensors = load_file(path)
    tensors["F"] = np.zeros((tensors["F"].shape[0], tensors["F"].shape[1] + 3), np.float16)  # right token
    save_file(tensors, path, metadata={"token": video["vectors_token"]})
    code, out, err = vmr("search", "red")
    assert "Traceback" not in err and "red_blue.mp4" in err  # skipped with its reason
    checked = vmr_json("status", "--check")
    assert checked["check"]["stale_videos"] == [video["id"]]
    assert vmr_json("index", two_videos)["updated"] == 1
    assert vmr_json("status", "--check")["consistent"]


def test_a_catalog_that_lost_its_model_record_says_so_and_index_model_recovers(model, two_videos):
    """A salvage that lost the catalog's meta page left videos, clips and shards but no model
    record: status called 0 vectors 'consistent', search said 'empty', index did nothing."""
    vmr_json("index", two_videos, "--model", model)
    lib = Library()
    catalog_path = os.path.join(lib.directory, "catalog.db")
    lib.close()
    with sqlite3.connect(catalog_path) as conn:
        conn.execute("DELETE FROM meta WHERE key NOT IN ('schema_version')")
    status = vmr_json("status")
    assert (status["consistent"], status["encoder_lost"]) == (False, True)
    code, out, err = vmr("status")
    assert "NOT consistent: the record of the model was lost" in out
    for args in (("search", "red"), ("index", two_videos)):
        code, out, err = vmr(*args, expect=1)
        assert "lost its record of the model its 2 videos were embedded with" in one_error(err)
    again = vmr_json("index", "--model", model)  # as the message says: no PATH, the library's own
    assert (again["updated"], again["unchanged"]) == (2, 0)
    status = vmr_json("status")
    assert (status["consistent"], status["encoder_lost"], status["vectors"]) == (True, False, status["clips"])
    assert vmr_json("search", "red")["results"]


def test_status_json_has_the_same_keys_before_any_index(model, two_videos):
    """A script reading status --json met a KeyError on a library not made yet."""
    before = vmr_json("status")
    vmr_json("index", two_videos, "--model", model)
    assert set(before) == set(vmr_json("status"))
