"""Reproductions from the review of the system-folder and search --in changes."""

from __future__ import annotations

import os

from conftest import make_video, vmr, vmr_json

from vmr_cli.library import Library


def _as_older_vmr(monkeypatch, *args):
    from vmr_cli import scan

    with monkeypatch.context() as patched:
        patched.setattr(scan, "is_system_folder", lambda path: False)  # as vmr before 2026-12-02
        return vmr_json("index", *args)


def paths():
    return sorted(v["path"] for v in Library().catalog.videos())


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
    assert len(paths()) == 3
    (tmp_path / "v" / ".Trash-1000" / "files" / "0.mp4").unlink()  # emptied from the trash: goes
    assert vmr_json("index")["removed"] == 1 and len(paths()) == 2


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
    assert paths() == [str(tmp_path / "v" / "kept.mp4")]


def test_a_users_folder_that_only_resembles_a_system_one_is_indexed(tiny_model, tmp_path, monkeypatch):
    """Windows 98's RECYCLED / NT's RECYCLER are upper-case folders at a FAT/NTFS drive's top;
    matched case-folded anywhere, a user's own 'Recycled' folder of videos is passed over, and
    what an older vmr indexed there is removed."""
    make_video(tmp_path / "v" / "art" / "Recycled" / "a.mp4", [("red", 3.0)])
    make_video(tmp_path / "v" / "b.mp4", [("green", 3.0)])
    assert _as_older_vmr(monkeypatch, tmp_path / "v", "--model", tiny_model)["added"] == 2
    summary = vmr_json("index", tmp_path / "v")
    assert summary["removed"] == 0 and summary["system_folders"] == [], summary


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
