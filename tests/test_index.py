"""vmr index: incremental runs, moves, deletions, failures, encoder checks."""

from __future__ import annotations

import os
import sys
import shutil

from conftest import make_video, vmr, vmr_json

from vmr_cli.library import Library


def index(*args, expect=0):
    return vmr_json("index", *args, expect=expect)


def test_first_run_indexes_everything_and_second_does_nothing(videos, tiny_model):
    first = index(videos, "--model", tiny_model)
    assert (first["added"], first["unchanged"], first["failed"]) == (3, 0, [])
    # 6 s, 4 s and 5 s at 2 s clips: 3 + 2 + 3 clips
    assert first["clips"] == 8
    second = index(videos)
    assert second == {"added": 0, "updated": 0, "moved": 0, "unchanged": 3, "touched": 0, "failed_before": 0,
                      "own_outputs": 0, "removed": 0,
                      "failed": [], "fallbacks": [], "damaged": [], "kept": [], "same_file": [],
                      "skipped": {"files": 0, "extensions": {}}, "system_folders": [], "copies": [], "resumed": [], "clips": 8,
                      "embedded_again": {"hdr": 0, "no_stored_frames": 0}}
    status = vmr_json("status")
    assert (status["videos"], status["clips"], status["vectors"], status["failed"]) == (3, 8, 8, 0)
    assert status["encoder"] == os.path.abspath(tiny_model) and status["consistent"]


def test_a_touched_file_keeps_its_vectors_and_a_rewritten_one_does_not(videos, tiny_model, isolated_library):
    """touch, or a copy back that did not keep the times: same size and print, so the same content
    (it was embedded again, hours for a whole library); new bytes of the same size are indexed."""
    index(videos, "--model", tiny_model)
    path = videos / "green.mp4"
    before = Library().catalog.video_by_path(str(path))
    os.utime(path, ns=(before["mtime_ns"] + 10**9, before["mtime_ns"] + 10**9))
    summary = index(videos)
    assert (summary["updated"], summary["unchanged"], summary["touched"]) == (0, 3, 1)
    after = Library().catalog.video_by_path(str(path))
    assert (after["id"], after["vectors_token"]) == (before["id"], before["vectors_token"])
    assert after["mtime_ns"] == os.stat(path).st_mtime_ns and index(videos)["touched"] == 0
    code, out, _err = vmr("index", videos)
    assert "unchanged 3, removed 0" in out
    data = bytearray(path.read_bytes())  # a small file: the print covers every byte
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    summary = index(videos)
    assert (summary["updated"], summary["touched"]) == (1, 0)


def test_a_file_moved_over_another_keeps_its_vectors(videos, tiny_model, isolated_library):
    """The edited version renamed over the original: the path's content changed to what another
    entry held; that entry moves here with its vectors, the original's entry is removed."""
    index(videos, "--model", tiny_model)
    lib = Library()
    green = lib.catalog.video_by_path(str(videos / "green.mp4"))
    lib.close()
    os.replace(videos / "green.mp4", videos / "red_then_blue.mp4")
    summary = index(videos)
    assert (summary["moved"], summary["removed"], summary["updated"], summary["added"]) == (1, 1, 0, 0)
    lib = Library()
    now = lib.catalog.video_by_path(str(videos / "red_then_blue.mp4"))
    assert (now["id"], now["vectors_token"]) == (green["id"], green["vectors_token"])
    assert len(lib.catalog.videos()) == 2 and lib.check(deep=True)["consistent"]


def test_renamed_file_keeps_its_vectors(videos, tiny_model, isolated_library):
    index(videos, "--model", tiny_model)
    lib = Library()
    before = lib.catalog.video_by_path(str(videos / "green.mp4"))
    lib.close()
    os.rename(videos / "green.mp4", videos / "sub" / "renamed green.mp4")
    summary = index(videos)
    assert (summary["moved"], summary["added"], summary["removed"]) == (1, 0, 0)
    lib = Library()
    after = lib.catalog.video_by_path(str(videos / "sub" / "renamed green.mp4"))
    assert after["id"] == before["id"]
    assert after["vectors_token"] == before["vectors_token"]  # not re-embedded
    assert lib.catalog.video_by_path(str(videos / "green.mp4")) is None


def test_deleted_file_disappears_from_catalog_vectors_and_search(videos, tiny_model):
    index(videos, "--model", tiny_model)
    os.unlink(videos / "green.mp4")
    summary = index(videos)
    assert summary["removed"] == 1 and summary["clips"] == 6
    status = vmr_json("status")
    assert (status["videos"], status["vectors"]) == (2, 6)
    found = vmr_json("search", "a green screen", "--top-k", "50")
    assert found["results"]
    assert all(not r["video"].endswith("green.mp4") for r in found["results"])


def test_changed_file_is_reindexed(videos, tiny_model):
    index(videos, "--model", tiny_model)
    make_video(videos / "green.mp4", [("green", 2.0), ("yellow", 6.0)])
    summary = index(videos)
    assert (summary["updated"], summary["unchanged"]) == (1, 2)
    assert summary["clips"] == 8 - 2 + 4


def test_corrupt_files_are_recorded_and_the_run_goes_on(videos, tiny_model, tmp_path):
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "noise.mp4").write_bytes(os.urandom(50_000))
    good = (videos / "green.mp4").read_bytes()
    (videos / "truncated.mp4").write_bytes(good[: len(good) // 3])
    os.symlink(tmp_path / "nowhere.mp4", videos / "broken link.mp4")
    summary = index(videos, "--model", tiny_model, expect=1)
    failed = {os.path.basename(f["path"]): f["error"] for f in summary["failed"]}
    assert {"empty.mp4", "noise.mp4", "broken link.mp4"} <= set(failed)
    assert all(failed.values())
    assert summary["added"] >= 3
    status = vmr_json("status")
    assert status["failed"] >= 2 and status["videos"] >= 3
    # Failed files are not retried while unchanged, and stay out of search.
    again = index(videos, expect=None)
    assert again["added"] == 0 and again["updated"] == 0


def test_error_messages_are_one_line(videos, tiny_model, other_model):
    code, out, err = vmr("index", videos / "missing", "--model", tiny_model, expect=1)
    assert "no such file or folder" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    index(videos, "--model", tiny_model)
    code, out, err = vmr("index", videos, "--model", other_model, expect=1)
    assert "are not the ones library" in err and len(err.strip().splitlines()) == 1
    code, out, err = vmr("index", videos, "--clip-seconds", "5", expect=1)
    assert "clip" in err
    assert vmr_json("status")["videos"] == 3  # nothing lost


def test_offline_hub_model_fails_clearly(videos):
    code, out, err = vmr("index", videos, "--model", "openai/clip-vit-base-patch32", expect=1)
    assert "openai/clip-vit-base-patch32" in err and "--model DIR" in err
    assert "Traceback" not in err


def test_moving_a_whole_folder_keeps_vectors(videos, tiny_model, tmp_path):
    index(videos, "--model", tiny_model)
    moved = tmp_path / "moved"
    shutil.move(str(videos / "sub"), str(moved))
    summary = index(videos, moved)
    assert (summary["moved"], summary["added"], summary["removed"]) == (1, 0, 0)


def test_a_folder_moved_out_of_the_indexed_tree_is_followed_when_its_new_place_is_indexed(
        videos, tiny_model, tmp_path):
    """Only the new place is indexed: its files match the entries whose old paths are gone
    (moved, vectors kept) instead of being embedded again beside ghosts of the old folder."""
    make_video(videos / "trip" / "a.mp4", [("red", 2.0)])
    make_video(videos / "trip" / "b.mp4", [("blue", 2.0)])
    index(videos, "--model", tiny_model)
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.move(str(videos / "trip"), str(archive / "trip"))
    summary = index(archive)
    assert (summary["moved"], summary["added"], summary["removed"]) == (2, 0, 0)
    summary = index()  # every root: nothing missing is left to keep or to search
    assert (summary["kept"], summary["removed"], summary["unchanged"]) == ([], 0, 5)
    code, out, err = vmr("search", "red")
    assert "warning" not in err and str(archive / "trip" / "a.mp4") in out


def test_status_reads_without_heavy_imports(videos, tiny_model, isolated_library):
    import subprocess
    import sys

    from conftest import ROOT

    index(videos, "--model", tiny_model)
    code = ("import sys; from vmr_cli.cli import cli\n"
            "try:\n    cli(['status', '--json'], standalone_mode=False)\nfinally:\n"
            "    print([m for m in ('numpy', 'torch', 'faiss', 'transformers') if m in sys.modules], "
            "file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "VMR_LIBRARY": str(isolated_library)})
    assert '"vectors": 8' in out.stdout
    assert out.stderr.strip().splitlines()[-1] == "[]"


def test_a_folder_named_twice_is_walked_once_and_mac_metadata_files_are_not_videos(videos, tiny_model):
    """'vmr index DIR DIR DIR/' counted every passed-over file three times; '._NAME.MP4' files a
    Mac leaves on other disks are metadata, not videos that fail every run."""
    (videos / "notes.txt").write_text("x")
    (videos / "._green.mp4").write_bytes(os.urandom(4096))
    summary = index(videos, videos, str(videos) + "/", "--model", tiny_model)
    assert summary["added"] == 3 and summary["failed"] == []
    assert summary["skipped"] == {"files": 2, "extensions": {".txt": 1, "._*": 1}}


def test_a_library_inside_the_indexed_folder_is_not_listed_as_skipped_files(videos, tiny_model, tmp_path):
    """``--library ~/videos/.vmr``: every run said 'skipped 8 files by extension (.safetensors 2,
    .db 1, .db-shm 1, ...): name a file to index it anyway' of the library's own files; a user's
    file beside them still counts."""
    inside = videos / ".vmr"
    (videos / "notes.txt").write_text("x")
    first = index(videos, "--model", tiny_model, "--library", inside)
    vmr_json("search", "red", "--library", inside)
    (inside / "notes.txt").write_text("mine")  # not a library file: still the user's
    again = index(videos, "--library", inside)
    assert first["added"] == 3 and again["unchanged"] == 3 and again["added"] == 0
    assert again["skipped"] == {"files": 2, "extensions": {".txt": 2}}, again["skipped"]


def test_a_file_reached_by_two_names_is_indexed_once(tiny_model, tmp_path):
    """A symlinked folder and its target (a home folder linked to a data disk), or a hard link:
    one file, so one entry (every result used to appear twice, embedded twice)."""
    real = tmp_path / "real"
    make_video(real / "a.mp4", [("red", 2.0)])
    os.link(real / "a.mp4", real / "hard link.mp4")
    (tmp_path / "link").symlink_to(real)
    summary = index(tmp_path / "link", real, "--model", tiny_model)
    assert summary["added"] == 1
    assert sorted(n["path"] for n in summary["same_file"]) == sorted(
        [str(tmp_path / "link" / "hard link.mp4"), str(real / "a.mp4"), str(real / "hard link.mp4")])
    assert {n["indexed_as"] for n in summary["same_file"]} == {str(tmp_path / "link" / "a.mp4")}
    summary = index(real)  # later, the other name alone: still one entry
    assert summary["added"] == 0 and len(summary["same_file"]) == 2
    code, out, err = vmr("index", real)
    assert f"note: {real / 'a.mp4'}: the same file as {tmp_path / 'link' / 'a.mp4'}" in err
    results = vmr_json("search", "red", "--top-k", "10")["results"]
    assert {r["video"] for r in results} == {str(tmp_path / "link" / "a.mp4")}


def test_a_copy_is_not_embedded_again_and_its_moments_are_shown_once(videos, tiny_model, monkeypatch):
    """A backup beside the original (or a phone's dump copied twice): the copy takes the
    original's vectors without being decoded, and a search shows each moment once, naming
    the copy (every result used to appear twice, and the copy cost a full decode)."""
    original = videos / "red_then_blue.mp4"
    (videos / "backup" / "2024").mkdir(parents=True)
    shutil.copy2(original, videos / "backup" / "2024" / "red_then_blue.mp4")
    shutil.copy2(videos / "green.mp4", videos / "zz green copy.mp4")  # both new in one run
    from vmr_cli import indexer

    decoded, decode_one = [], indexer._decode_one
    monkeypatch.setattr(indexer, "_decode_one", lambda i, item, *a: decoded.append(item.path) or decode_one(i, item, *a))
    summary = index(videos, "--model", tiny_model)
    assert summary["added"] == 5 and summary["failed"] == []
    assert len(decoded) == 3 and not {c["path"] for c in summary["copies"]} & set(decoded)
    assert sorted(sorted((c["path"], c["copy_of"])) for c in summary["copies"]) == [  # whichever is walked first
        [str(videos / "backup" / "2024" / "red_then_blue.mp4"), str(original)],  # is embedded
        [str(videos / "green.mp4"), str(videos / "zz green copy.mp4")]]
    library = Library()
    rows = {row["path"]: row for row in library.catalog.videos("ok")}
    copy, source = rows[str(videos / "backup" / "2024" / "red_then_blue.mp4")], rows[str(original)]
    assert copy["id"] != source["id"] and copy["n_clips"] == source["n_clips"] == 3
    shards = [library.vectors.read_shard(row["id"], row["vectors_token"]) for row in (copy, source)]
    assert all((shards[0][k] == shards[1][k]).all() for k in ("A", "B", "M", "F", "F_t"))
    library.close()
    results = vmr_json("search", "red", "--top-k", "20")["results"]
    spans = [(r["video"], r["start"], r["end"]) for r in results]
    assert len(spans) == len(set(spans)) and str(videos / "backup" / "2024" / "red_then_blue.mp4") not in {
        r["video"] for r in results}  # shown: the one nearest the top of its folders
    assert {tuple(r["copies"]) for r in results if r["video"] == str(original)} == {
        (str(videos / "backup" / "2024" / "red_then_blue.mp4"),)}
    assert len({r["video"] for r in results}) == 3  # the three contents, each once
    code, out, err = vmr("search", "red")
    assert "(+1 copy: --json lists them)" in out
    # A copy made later is recognised too; the original deleted, its copy still answers.
    shutil.copy2(videos / "sub" / "pattern.mp4", videos / "pattern again.mp4")
    summary = index(videos)
    assert [c["copy_of"] for c in summary["copies"]] == [str(videos / "sub" / "pattern.mp4")]
    original.unlink()
    results = vmr_json("search", "red", "--top-k", "20")["results"]
    assert str(videos / "backup" / "2024" / "red_then_blue.mp4") in {r["video"] for r in results}
    assert all(str(original) not in r["copies"] for r in results)
    # An indexed file overwritten by a copy of another: its entry takes that one's vectors too
    decoded.clear()
    shutil.copy(videos / "green.mp4", videos / "sub" / "pattern.mp4")
    summary = index(videos)
    assert (summary["updated"], decoded) == (1, [])  # (it was decoded and embedded again)
    assert [c["path"] for c in summary["copies"]] == [str(videos / "sub" / "pattern.mp4")]


def test_same_size_and_fingerprint_but_another_middle_is_not_a_copy(tiny_model, tmp_path):
    """The fingerprint reads a file's first and last 256 KiB; a file that differs only in its
    middle (a frame repaired in place) is embedded as itself, not given another's vectors."""
    from vmr_cli.scan import FINGERPRINT_BYTES, SAMPLES, fingerprint

    folder = tmp_path / "v"
    make_video(folder / "a.mp4", [("testsrc", 20.0)], size="640x480")
    data = bytearray((folder / "a.mp4").read_bytes())
    size, block = len(data), FINGERPRINT_BYTES // 4
    at = (size - block) * (SAMPLES // 2) // (SAMPLES - 1)  # a sampled block, clear of both ends
    assert FINGERPRINT_BYTES < at and at + block < size - FINGERPRINT_BYTES
    data[at + 100:at + 116] = bytes(16)
    (folder / "b.mp4").write_bytes(bytes(data))
    assert fingerprint(str(folder / "a.mp4"), size) == fingerprint(str(folder / "b.mp4"), size)
    summary = index(folder, "--model", tiny_model)
    assert summary["copies"] == [] and summary["added"] + len(summary["failed"]) == 2


def test_a_file_named_once_stays_indexed_when_its_folder_is(videos, tiny_model):
    """A video under a name the walk passes over (a VCD's .DAT, say), indexed by naming it, was
    removed by the next index of its folder, which then said to name it again."""
    shutil.copy(videos / "green.mp4", videos / "AVSEQ01.DAT")
    first = index(videos / "AVSEQ01.DAT", videos, "--model", tiny_model)  # named with its folder:
    assert (first["added"], first["skipped"]["files"]) == (4, 0)  # taken, not counted as passed over
    for again in (index(videos), index()):
        assert (again["removed"], again["skipped"]["files"]) == (0, 0), again
    assert Library().catalog.video_by_path(str(videos / "AVSEQ01.DAT"))["status"] == "ok"
    (videos / "AVSEQ01.DAT").unlink()
    assert index(videos)["removed"] == 1  # gone is still gone


def test_a_symlinked_folder_indexed_by_name_is_kept_by_a_plain_index(tiny_model, tmp_path):
    """A folder linked into an indexed folder (not followed by its walk) and indexed by name: a
    plain 'vmr index' and 'vmr index OUTER' took its entries for deleted (one) or for an unmounted
    drive's (two or more, then never refreshed)."""
    outer, elsewhere = tmp_path / "videos", tmp_path / "elsewhere"
    make_video(outer / "home.mp4", [("red", 2.0)])
    make_video(elsewhere / "a.mp4", [("green", 2.0)])
    make_video(elsewhere / "b.mp4", [("blue", 2.0)])
    (outer / "linked").symlink_to(elsewhere)
    index(outer, "--model", tiny_model)
    assert index(outer / "linked")["added"] == 2
    for again in (index(), index(outer)):
        assert (again["removed"], again["kept"], again["added"]) == (0, [], 0), again
    make_video(elsewhere / "c.mp4", [("red", 2.0)])
    assert index()["added"] == 1  # a plain index refreshes it as a root of its own
    (elsewhere / "a.mp4").unlink()
    assert index()["removed"] == 1
    make_video(elsewhere / "b.mp4", [("red", 3.0)])  # changed: recorded again under its own root,
    assert index(outer, outer / "linked")["updated"] == 1  # not the outer one (then it was forgotten)
    make_video(elsewhere / "d.mp4", [("green", 2.0)])
    assert index()["added"] == 1
    assert vmr_json("status")["videos"] == 4


def test_a_plan_over_many_named_files_is_not_quadratic(tmp_path, monkeypatch):
    """'vmr index ~/Downloads/*.mp4' makes each file a root; comparing each entry with each root
    took 14 s to plan a no-op at 6,000 files.  Counted: how often a path is tested against a root."""
    from vmr_cli import scan

    folder = tmp_path / "many"
    folder.mkdir()
    files = [str(folder / f"{i}.mp4") for i in range(2000)]
    rows = []
    for name in files:
        open(name, "wb").close()
        rows.append({"path": name, "status": "ok", "size": 0, "mtime_ns": os.stat(name).st_mtime_ns,
                     "fingerprint": "x", "bad_frames": 0})

    class Catalog:  # what plan_index reads of one
        path = str(tmp_path / "lib" / "catalog.db")

        def videos(self, status=None):
            return rows

        def operations(self, kind):
            return []

        def get_meta(self, key, default=None):
            return default

    calls = 0
    real = scan.under

    def counted(path, root):
        nonlocal calls
        calls += 1
        return real(path, root)

    monkeypatch.setattr(scan, "under", counted)
    roots = scan.collapse(files)
    plan = scan.plan_index(Catalog(), roots)
    assert (plan.unchanged, plan.remove, plan.add) == (2000, [], [])
    assert calls < 10 * len(files), calls


def test_trash_and_nas_preview_folders_are_passed_over(tiny_model, tmp_path):
    """A drive's trash (.Trash-1000, $RECYCLE.BIN), the desktop's own (~/.local/share/Trash) and a
    Synology's @eaDir (an MP4 transcode of every video) were indexed: deleted videos came back in
    searches, and every video of a NAS share was indexed twice."""
    home = tmp_path / "home"
    drive = home / "drive"
    make_video(drive / "holiday.mp4", [("red", 3.0), ("blue", 3.0)])
    passed = [drive / ".Trash-1000" / "files" / "old.mp4", drive / ".Trash-1000" / "files" / "older.mp4",
              drive / "@eaDir" / "holiday.mp4" / "SYNOPHOTO_FILM_M.mp4", drive / "$RECYCLE.BIN" / "S-1-5" / "x.mp4",
              home / ".local" / "share" / "Trash" / "files" / "y.mp4"]
    for n, path in enumerate(passed):
        make_video(path, [(("green", "yellow", "red", "blue", "green")[n], 2.0 + n)])
    (drive / "empty" / "#recycle").mkdir(parents=True)  # holds no video: not said
    code, out, err = vmr("index", home, "--model", tiny_model)
    assert "note: passed over 4 system folders holding videos (a trash, a NAS's previews or snapshots), " \
           f"e.g. {home / '.local' / 'share' / 'Trash'}: name one to index it (--json lists them)" in err
    assert [v["path"] for v in Library().catalog.videos()] == [str(drive / "holiday.mp4")]
    summary = vmr_json("index", home)
    assert summary["unchanged"] == 1 and summary["system_folders"] == sorted(
        [str(home / ".local" / "share" / "Trash"), str(drive / "$RECYCLE.BIN"), str(drive / ".Trash-1000"),
         str(drive / "@eaDir")], key=os.fsencode)
    # Named, one is indexed; walking its parent again leaves those entries alone.
    assert vmr_json("index", drive / ".Trash-1000")["added"] == 2
    assert vmr_json("index", home)["removed"] == 0 and len(Library().catalog.videos()) == 3
    (drive / ".Trash-1000" / "files" / "old.mp4").unlink()  # emptied from the trash: a run with no PATH sees it
    again = vmr_json("index")
    assert (again["removed"], again["unchanged"], again["added"]) == (1, 2, 0)
    assert str(drive / ".Trash-1000") not in again["system_folders"]  # named: no news
    code, out, err = vmr("--library", tmp_path / "other", "index", home / ".local", "--model", tiny_model, expect=1)
    assert err == (f"Error: no video files in {home / '.local'}; passed over the system folder "
                   f"{home / '.local' / 'share' / 'Trash'} (a trash, a NAS's previews or snapshots): name it to "
                   "index it\n")


def _as_older_vmr(monkeypatch, *args):
    from vmr_cli import scan

    with monkeypatch.context() as patched:
        patched.setattr(scan, "is_system_folder", lambda path: False)  # as vmr before 2026-12-02
        return vmr_json("index", *args)


def indexed_paths():
    return sorted(v["path"] for v in Library().catalog.videos())


def test_what_an_older_vmr_indexed_in_a_trash_goes_and_is_not_kept_as_a_lost_drive(tiny_model, tmp_path,
                                                                                     monkeypatch):
    make_video(tmp_path / "v" / "kept.mp4", [("red", 3.0)])
    for n, colour in enumerate(("green", "blue")):
        make_video(tmp_path / "v" / ".Trash-1000" / "files" / f"{n}.mp4", [(colour, 3.0)])
    assert _as_older_vmr(monkeypatch, tmp_path / "v", "--model", tiny_model)["added"] == 3
    summary = vmr_json("index", tmp_path / "v")
    assert (summary["removed"], summary["kept"], summary["unchanged"]) == (2, [], 1)
    assert {r["video"] for r in vmr_json("search", "a green screen")["results"]} == {str(tmp_path / "v" / "kept.mp4")}


def test_a_trash_named_after_the_upgrade_is_not_emptied_by_the_next_walk(tiny_model, tmp_path, monkeypatch):
    """README: 'indexed with such a folder named, they stay'.  An older vmr indexed the trash by
    walking its parent (root = the parent); the user, told to, names the trash: its entries are
    unchanged, so they keep the parent as their root, and the next walk of the parent (or a
    cron 'vmr index') removes what the user just named."""
    make_video(tmp_path / "v" / "kept.mp4", [("red", 3.0)])
    for n, colour in enumerate(("green", "blue")):
        make_video(tmp_path / "v" / ".Trash-1000" / "files" / f"{n}.mp4", [(colour, 3.0)])
    assert _as_older_vmr(monkeypatch, tmp_path / "v", "--model", tiny_model)["added"] == 3
    named = vmr_json("index", tmp_path / "v" / ".Trash-1000")
    assert named["unchanged"] == 2 and named["removed"] == 0
    again = vmr_json("index")  # the cron job: no PATH
    assert again["removed"] == 0, again
    assert vmr_json("index", tmp_path / "v")["removed"] == 0
    assert len(indexed_paths()) == 3
    (tmp_path / "v" / ".Trash-1000" / "files" / "0.mp4").unlink()  # emptied from the trash: goes
    assert vmr_json("index")["removed"] == 1 and len(indexed_paths()) == 2


def test_entries_under_a_system_folder_that_is_gone_are_removed(tiny_model, tmp_path, monkeypatch):
    """An older vmr indexed v/@eaDir (Synology's transcodes) by walking v.  The @eaDir is then
    deleted (a common clean-up on a NAS).  Its entries' files are gone, but since 507dddb no
    walk judges them (a system folder counts as a link): never removed, not even by --prune."""
    make_video(tmp_path / "v" / "kept.mp4", [("red", 3.0)])
    make_video(tmp_path / "v" / "@eaDir" / "kept.mp4" / "SYNOPHOTO_FILM_M.mp4", [("green", 3.0)])
    assert _as_older_vmr(monkeypatch, tmp_path / "v", "--model", tiny_model)["added"] == 2
    import shutil

    shutil.rmtree(tmp_path / "v" / "@eaDir")
    first = vmr_json("index", tmp_path / "v")
    pruned = vmr_json("index", "--prune", tmp_path / "v")
    assert first["removed"] + pruned["removed"] == 1, (first, pruned)
    assert indexed_paths() == [str(tmp_path / "v" / "kept.mp4")]


def test_a_users_folder_that_only_resembles_a_system_one_is_indexed(tiny_model, tmp_path, monkeypatch):
    """Windows 98's RECYCLED / NT's RECYCLER are upper-case folders at a FAT/NTFS drive's top;
    matched case-folded anywhere, a user's own 'Recycled' folder of videos is passed over, and
    what an older vmr indexed there is removed."""
    make_video(tmp_path / "v" / "art" / "Recycled" / "a.mp4", [("red", 3.0)])
    make_video(tmp_path / "v" / "b.mp4", [("green", 3.0)])
    assert _as_older_vmr(monkeypatch, tmp_path / "v", "--model", tiny_model)["added"] == 2
    summary = vmr_json("index", tmp_path / "v")
    assert summary["removed"] == 0 and summary["system_folders"] == [], summary


def _trip(folder, names=("a.mp4", "b.mp4")):
    for n, name in enumerate(names):
        make_video(folder / name, [(("red", "green", "blue")[n % 3], 3.0 + n)])


def _videos_with_a_trip(tiny_model, tmp_path, monkeypatch):
    """An indexed ~/Videos holding trip/a.mp4, trip/b.mp4 and other.mp4; the desktop's trash under
    tmp_path/data (XDG_DATA_HOME)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    home = tmp_path / "Videos"
    _trip(home / "trip")
    make_video(home / "other.mp4", [("testsrc", 3.0)])
    vmr_json("index", home, "--model", tiny_model)
    return home


def _trashinfo(trash, name, original):
    from urllib.parse import quote

    (trash / "info").mkdir(parents=True, exist_ok=True)
    (trash / "info" / f"{name}.trashinfo").write_text(
        f"[Trash Info]\nPath={quote(str(original))}\nDeletionDate=2026-12-02T10:00:00\n")


def test_a_folder_deleted_to_the_desktops_trash_is_removed_not_kept_as_a_drive(tiny_model, tmp_path, monkeypatch):
    """Deleting a folder of videos in a file manager moves it to ~/.local/share/Trash; from inside
    the folder that looks like an unmounted drive, so its videos stayed in every search."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    home = tmp_path / "Videos"
    _trip(home / "trip one")
    make_video(home / "other.mp4", [("testsrc", 3.0)])
    assert vmr_json("index", home, "--model", tiny_model)["added"] == 3
    trash = tmp_path / "data" / "Trash"
    (trash / "files").mkdir(parents=True)
    os.rename(home / "trip one", trash / "files" / "trip one")
    _trashinfo(trash, "trip one", home / "trip one")
    summary = vmr_json("index", home)
    assert (summary["removed"], summary["kept"]) == (2, []), summary
    assert indexed_paths() == [str(home / "other.mp4")]


def test_what_an_earlier_run_kept_goes_once_the_trash_says_it_was_deleted(tiny_model, tmp_path, monkeypatch):
    home = _videos_with_a_trip(tiny_model, tmp_path, monkeypatch)
    away = tmp_path / "away"
    os.rename(home / "trip", away)  # not in a trash (a drive that is away): kept, as before
    summary = vmr_json("index", home)
    assert summary["removed"] == 0 and [k["videos"] for k in summary["kept"]] == [2]
    trash = tmp_path / "data" / "Trash"
    (trash / "files").mkdir(parents=True)
    os.rename(away, trash / "files" / "trip")  # an older vmr kept it; the trash says it was deleted
    _trashinfo(trash, "trip", home / "trip")
    assert vmr_json("index", home)["removed"] == 2 and indexed_paths() == [str(home / "other.mp4")]


def test_a_trash_that_no_longer_holds_the_file_says_nothing(tiny_model, tmp_path, monkeypatch):
    """Emptied since, the trash's record is no proof: a drive's folder of the same name stays kept."""
    home = _videos_with_a_trip(tiny_model, tmp_path, monkeypatch)
    shutil.rmtree(home / "trip")
    _trashinfo(tmp_path / "data" / "Trash", "trip", home / "trip")  # its files/trip emptied
    summary = vmr_json("index", home)
    assert summary["removed"] == 0 and [k["videos"] for k in summary["kept"]] == [2]


def test_a_folder_deleted_on_a_drive_or_a_nas_share_is_removed(tiny_model, tmp_path, monkeypatch):
    """A drive's own trash ($top/.Trash-UID, paths relative to the drive's top) and a NAS share's
    recycle bin (#recycle keeps the share's folders), both passed over by the walk."""
    from vmr_cli import trash

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    drive, share = tmp_path / "drive", tmp_path / "share"
    monkeypatch.setattr(trash, "drive_top", lambda path: str(drive) if path.startswith(str(drive)) else "/")
    _trip(drive / "DCIM" / "trip")
    make_video(drive / "other.mp4", [("testsrc", 3.0)])
    _trip(share / "2026" / "trip", names=("c.mp4", "d.mp4", "e.mp4"))
    make_video(share / "x.mp4", [("testsrc", 4.0)])
    (share / "#recycle").mkdir()
    assert vmr_json("index", drive, share, "--model", tiny_model)["added"] == 7
    own = drive / f".Trash-{os.getuid()}"
    (own / "files").mkdir(parents=True)
    os.rename(drive / "DCIM" / "trip", own / "files" / "trip")
    _trashinfo(own, "trip", "DCIM/trip")
    (share / "#recycle" / "2026").mkdir()
    os.rename(share / "2026" / "trip", share / "#recycle" / "2026" / "trip")
    summary = vmr_json("index")
    assert (summary["removed"], summary["kept"]) == (5, []), summary
    assert indexed_paths() == [str(drive / "other.mp4"), str(share / "x.mp4")]


def test_a_folder_deleted_on_a_drive_indexed_through_a_link_is_removed(tiny_model, tmp_path, monkeypatch):
    """~/Videos a link to a folder on a data drive: a file manager trashes ~/Videos/trip into the
    drive's .Trash-UID, its record naming the real path relative to the drive's top.  It was
    looked for under the link's own drive (the home's), so the folder was kept as an unmounted
    drive's and searched until --prune."""
    from vmr_cli import trash

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    drive = tmp_path / "drive"
    monkeypatch.setattr(trash, "drive_top", lambda path: str(drive) if path.startswith(str(drive)) else "/")
    _trip(drive / "videos" / "trip")
    make_video(drive / "videos" / "other.mp4", [("testsrc", 3.0)])
    home = tmp_path / "home" / "Videos"
    home.parent.mkdir()
    home.symlink_to(drive / "videos")
    assert vmr_json("index", home, "--model", tiny_model)["added"] == 3
    own = drive / f".Trash-{os.getuid()}"
    (own / "files").mkdir(parents=True)
    os.rename(drive / "videos" / "trip", own / "files" / "trip")
    _trashinfo(own, "trip", "videos/trip")
    summary = vmr_json("index", home)
    assert (summary["removed"], summary["kept"]) == (2, []), summary
    assert indexed_paths() == [str(home / "other.mp4")]


def test_the_trash_is_looked_up_per_folder_not_per_missing_file(tmp_path, monkeypatch):
    """Every 'vmr index' with a drive unplugged asks the trash about its entries: their folders'
    real paths and drives are found once a folder (per file, 10,000 entries took 0.8 s, 0.06 s
    before the real paths were looked up), and a file in a linked folder is still found by its
    real path."""
    from vmr_cli import trash

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    calls = {"drive_top": 0, "realpath": 0}
    drive_top, realpath = trash.drive_top, os.path.realpath

    def counted_top(path):
        calls["drive_top"] += 1
        return drive_top(path)

    def counted_realpath(path, *args, **kwargs):
        calls["realpath"] += sys._getframe(1).f_code.co_filename == trash.__file__
        return realpath(path, *args, **kwargs)

    monkeypatch.setattr(trash, "drive_top", counted_top)
    monkeypatch.setattr(trash.os.path, "realpath", counted_realpath)
    rows = [{"path": str(tmp_path / "gone" / f"clip{i}.mp4"), "size": 100 + i} for i in range(200)]
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "data" / "Trash" / "files").mkdir(parents=True)
    (tmp_path / "data" / "Trash" / "files" / "x.mp4").write_bytes(b"v" * 7)
    _trashinfo(tmp_path / "data" / "Trash", "x.mp4", str(tmp_path / "real" / "x.mp4"))
    rows.append({"path": str(tmp_path / "link" / "x.mp4"), "size": 7})
    assert trash.trashed(rows) == {str(tmp_path / "link" / "x.mp4")}
    assert calls["realpath"] <= 2 and calls["drive_top"] <= 4, calls


def test_another_cards_trash_does_not_make_this_cards_folder_deleted(tiny_model, tmp_path, monkeypatch):
    """Two cards in the same reader (one mount point): card B's .Trash-UID holds an older
    DCIM/100/a.mp4 of its own. With card A's files indexed and card B in the reader, card A's
    entries are an unmounted drive's: kept, not removed (its a.mp4 is not the trashed one)."""
    from vmr_cli import trash

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    drive = tmp_path / "drive"
    monkeypatch.setattr(trash, "drive_top", lambda path: str(drive) if path.startswith(str(drive)) else "/")
    _trip(drive / "DCIM" / "100")
    make_video(drive / "other.mp4", [("testsrc", 3.0)])
    assert vmr_json("index", drive, "--model", tiny_model)["added"] == 3
    os.rename(drive / "DCIM" / "100", tmp_path / "card-a")  # card A out, card B in: its own DCIM/100 ...
    (drive / "DCIM" / "100").mkdir()
    own = drive / f".Trash-{os.getuid()}"
    make_video(own / "files" / "a.mp4", [("testsrc", 7.0)])  # ... and an a.mp4 of its own it trashed once
    _trashinfo(own, "a.mp4", "DCIM/100/a.mp4")
    summary = vmr_json("index")
    assert (summary["removed"], [k["videos"] for k in summary["kept"]]) == (0, [2]), summary



def test_one_trashed_file_does_not_make_its_folders_other_entries_deleted(tiny_model, tmp_path, monkeypatch):
    """a.mp4 deleted to the trash, then the folder's drive went away before the next run: a.mp4's
    entry goes, b.mp4 and c.mp4 are kept as the drive's."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    home = tmp_path / "Videos"
    _trip(home / "cam", names=("a.mp4", "b.mp4", "c.mp4"))
    make_video(home / "other.mp4", [("testsrc", 3.0)])
    assert vmr_json("index", home, "--model", tiny_model)["added"] == 4
    trash = tmp_path / "data" / "Trash"
    (trash / "files").mkdir(parents=True)
    os.rename(home / "cam" / "a.mp4", trash / "files" / "a.mp4")
    _trashinfo(trash, "a.mp4", home / "cam" / "a.mp4")
    os.rename(home / "cam", tmp_path / "away")  # the drive is unmounted
    summary = vmr_json("index", home)
    assert (summary["removed"], [k["videos"] for k in summary["kept"]]) == (1, [2]), summary
    assert str(home / "cam" / "b.mp4") in indexed_paths()



def test_only_the_trash_records_that_could_be_a_missing_entry_are_read(tmp_path, monkeypatch):
    """A record whose trashed file is not a folder and has none of the missing entries' sizes
    decides nothing: it is not opened (a home trash of thousands of records was read whole on
    every run while a drive's entries were kept); those that could decide still do."""
    from vmr_cli import trash

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr(trash, "drive_top", lambda path: "/")
    bin_ = tmp_path / "data" / "Trash"
    (bin_ / "files" / "trip").mkdir(parents=True)
    home = tmp_path / "Videos"
    rows = [{"path": str(home / "a.mp4"), "size": 5}, {"path": str(home / "trip" / "b.mp4"), "size": 6},
            {"path": str(home / "c.mp4"), "size": 7}, {"path": str(home / "d.mp4"), "size": 8}]
    (bin_ / "files" / "a.mp4").write_bytes(b"12345")  # a.mp4, trashed
    _trashinfo(bin_, "a.mp4", home / "a.mp4")
    (bin_ / "files" / "trip" / "b.mp4").write_bytes(b"123456")  # its folder, trashed whole
    _trashinfo(bin_, "trip", home / "trip")
    (bin_ / "files" / "c.mp4").write_bytes(b"another c.mp4 of that place")  # not the indexed one
    _trashinfo(bin_, "c.mp4", home / "c.mp4")
    _trashinfo(bin_, "d.mp4", home / "d.mp4")  # emptied since
    for n in range(20):
        (bin_ / "files" / f"photo{n}.jpg").write_bytes(b"x" * (100 + n))
        _trashinfo(bin_, f"photo{n}.jpg", tmp_path / "Pictures" / f"photo{n}.jpg")
    opened = []
    monkeypatch.setattr(trash, "open", lambda path, *a: (opened.append(os.path.basename(path)), open(path, *a))[1],
                        raising=False)
    assert trash.trashed(rows) == {str(home / "a.mp4"), str(home / "trip" / "b.mp4")}
    assert sorted(opened) == ["a.mp4.trashinfo", "trip.trashinfo"]


def test_a_large_passed_over_folder_is_looked_into_only_so_far(tmp_path, monkeypatch):
    """Whether a passed-over folder holds videos (for its note) walked all of it on every run: a
    NAS's #snapshot copies whole shares."""
    from vmr_cli import scan

    snap = tmp_path / "share" / "#snapshot"
    for n in range(30):
        (snap / f"s{n:02d}").mkdir(parents=True)
        (snap / f"s{n:02d}" / "notes.txt").write_text("x")
    make_video(snap / "s29" / "late.mp4", [("red", 1.0)])
    assert scan._holds_videos(str(snap))
    monkeypatch.setattr(scan, "HOLDS_VIDEOS_LOOK", 20)
    assert not scan._holds_videos(str(snap))


def test_a_path_trashed_twice_and_a_fifo_in_the_trash_are_read_right(tiny_model, tmp_path, monkeypatch):
    """The trash holds an older a.mp4 from the same place (another size) beside the indexed one
    ('a.2.mp4'): one record per path was kept, so it hung on listing order whether the folder was
    taken for deleted; a FIFO named *.trashinfo was opened, waiting for a writer for ever."""
    home = _videos_with_a_trip(tiny_model, tmp_path, monkeypatch)
    trash = tmp_path / "data" / "Trash"
    (trash / "files").mkdir(parents=True)
    (trash / "files" / "a.mp4").write_bytes(b"an older a.mp4 of the same place")
    _trashinfo(trash, "a.mp4", home / "trip" / "a.mp4")
    os.rename(home / "trip" / "a.mp4", trash / "files" / "a.2.mp4")
    _trashinfo(trash, "a.2.mp4", home / "trip" / "a.mp4")
    os.rename(home / "trip" / "b.mp4", trash / "files" / "b.mp4")
    _trashinfo(trash, "b.mp4", home / "trip" / "b.mp4")
    os.mkfifo(trash / "info" / "pipe.trashinfo")
    summary = vmr_json("index", home)
    assert (summary["removed"], summary["kept"]) == (2, []), summary
