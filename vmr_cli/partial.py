"""A long video's index, resumed: the progress on the video being indexed, saved now and then.

A video commits in one transaction with its shard, so an index stopped part way through a video
(Ctrl-C, a kill, a flat battery, a crash) kept nothing of it, and a 2-3 hour video takes 5-20
minutes with ViT-B/32 on a laptop's CPU.  So while a video is indexed, what its commit needs of
the chunks done so far is saved every SAVE_EVERY_SECONDS of work on it (a shorter video saves
nothing), and when the run stops with STOP_SAVE_SECONDS or more of it unsaved; the next 'vmr
index' of the same, unchanged file (there, or moved with its size and time kept: renamed, put in
another folder) decodes and encodes only the chunks after it.

One file per video in the library's ``partial/`` folder, named by a hash of the video's path: a
safetensors file of the frame embeddings (float32, as the commit takes them, so a resumed video
is stored exactly as an uninterrupted one), each clip's colour histograms and motion energy, and
every frame time, whose header holds, as JSON, all that these depend on: the file (path, size,
mtime, fingerprint), the model (weights sha256, dimension, input size, preprocessing, clip
length), the chunk size, the decoder and vmr's version (``decoder_signature``), with a sha256 of
the arrays.  Written by atomic_write: a kill at any moment leaves the old file or the new one.
A saved state any of which does not match, or that cannot be read, is deleted, never used (one
saved for another file that was at that path, since moved away, is left to the end-of-run sweep:
its video may still take it at its new place).  Only
'vmr index' reads, writes or deletes them, under the writer lock ('vmr forget' drops those of the
videos it forgets); a search never looks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from contextlib import suppress
from dataclasses import dataclass

from vmr_models.atomic import atomic_write

FOLDER = "partial"
FORMAT = 1  # of the header; another is discarded
KEY = "vmr_partial"  # the safetensors metadata entry holding the header
ARRAYS = ("F", "H", "motion", "times")
NAME = re.compile(r"[0-9a-f]{40}\.safetensors", re.ASCII)
SAVE_EVERY_SECONDS = 30.0  # of work on one video between saves (bench/resume.py: what a save costs)
STOP_SAVE_SECONDS = 5.0  # unsaved work on the video that a stopped run saves before it ends


@dataclass
class Saved:
    """A video's first ``clips`` clips, as saved."""

    clips: int
    embeddings: object  # torch float32 (2 clips + 1, dim): frames 0 .. 2 clips
    hists: object       # (clips, 3, 3, bins)
    motion: object      # (clips,)
    times: list         # every frame time of the video
    fallback: str | None  # why PyAV read the file, if it did


def state_path(directory: str, path: str) -> str:
    """The saved state of the video at path, in the library at directory."""
    return os.path.join(directory, FOLDER, hashlib.sha256(os.fsencode(path)).hexdigest()[:40] + ".safetensors")


def model_identity(library) -> dict | None:
    """What the library's embeddings depend on, from its catalog: None before it has an encoder."""
    from .library import PREPROCESSING

    info = library.encoder()
    if info is None:
        return None
    return {"weights": (info["weights"] or {}).get("sha256") or info["name"], "dim": info["dim"],
            "image_size": info["image_size"], "clip_seconds": info["clip_seconds"],
            "preprocessing": library.catalog.get_meta(PREPROCESSING)}


def state_files(directory: str) -> list[str]:
    """The saved states in the library at directory (names vmr gives them only)."""
    folder = os.path.join(directory, FOLDER)
    try:
        return [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if NAME.fullmatch(n)]
    except OSError:
        return []


def size_bytes(directory: str) -> int:
    total = 0
    for path in state_files(directory):
        with suppress(OSError):
            total += os.path.getsize(path)
    return total


def states_under(directory: str, root: str) -> list[str]:
    """The saved states of videos at or under root (a file or a folder), by their headers: what
    'vmr forget root' drops with the entries.  One that cannot be read is left to the sweep."""
    from .paths import under

    found = []
    for path in state_files(directory):
        try:
            video = _header(path)["file"]["path"]
        except Exception:  # noqa: BLE001 - as Store.load
            continue
        if isinstance(video, str) and under(video, root):
            found.append(path)
    return found


def drop(directory: str, paths: list[str]) -> None:
    """Delete these saved states (and their folder, once empty)."""
    for path in paths:
        with suppress(OSError):
            os.unlink(path)
    with suppress(OSError):
        os.rmdir(os.path.join(directory, FOLDER))


class Store:
    """The saved states one 'vmr index' run reads, writes and deletes."""

    def __init__(self, library, signature: str | None, backend: str, chunk_clips: int):
        self.library = library
        self.directory = library.directory
        self.run = {"format": FORMAT, "signature": signature, "backend": backend, "chunk_clips": chunk_clips}
        # read here, in the main thread: load() runs in the decode thread.  None for a new library:
        # no state can be its (sweep removes any), and its first save records its encoder first.
        self.model = model_identity(library)
        self._prints: dict[str, str] = {}

    def load(self, item, size: int, clips: int) -> Saved | None:
        """The saved state of item (a planned file) if it applies to it as it is now, decoded at
        ``size`` into ``clips`` clips: its own, else that of a video moved to its path since
        (_moved_to).  Its own that does not apply, or cannot be read, is deleted, unless it was
        saved for another file that was at this path (moved away: the sweep judges it)."""
        if self.model is None:
            return None
        path = state_path(self.directory, item.path)
        if os.path.exists(path):
            saved = self._try(path, item, size, clips, item.path)
            if saved is not None:
                return saved
            if not self._was_another(path, item):
                self._delete(path)
        for path, was_at in self._moved_to(item):
            saved = self._try(path, item, size, clips, was_at)  # (another's, moved: the sweep judges it)
            if saved is not None:
                return saved
        return None

    def _try(self, path: str, item, size: int, clips: int, was_at: str) -> Saved | None:
        try:
            return self._read(path, item, size, clips, was_at)
        except Exception:  # noqa: BLE001 - damaged, truncated, not safetensors, not ours: never trusted
            return None

    @staticmethod
    def _was_another(path: str, item) -> bool:
        """Whether the state at path was saved for a file of another size or mtime (moved away
        since, and this one put in its place: its state may still follow it)."""
        try:
            file = _header(path)["file"]
            return (file["size"], file["mtime_ns"]) != (item.size, item.mtime_ns)
        except Exception:  # noqa: BLE001 - unreadable: not anyone's
            return False

    def _moved_to(self, item):
        """The saved states (path, and the video's old path) of a video that may have moved to
        item's path since (renamed, or moved to another folder: its size and mtime kept, its old
        path gone or holding another file), every one of them: two videos may share a size and
        an mtime, and the fingerprint (checked by _read) tells them apart.  A state whose old path
        still holds a file of its size and mtime is not taken (a copy made with its time, cp -p,
        indexed on its own).  The old state goes with the end-of-run sweep."""
        for path in state_files(self.directory):
            try:
                file = _header(path)["file"]
                if (file["size"], file["mtime_ns"]) == (item.size, item.mtime_ns) \
                        and file["path"] != item.path and _gone(file["path"], file["size"], file["mtime_ns"]):
                    yield path, file["path"]
            except Exception:  # noqa: BLE001 - as load(): left to the sweep
                continue

    def _read(self, path: str, item, size: int, clips: int, was_at: str) -> Saved | None:
        from safetensors import safe_open

        from .scan import fingerprint

        with safe_open(path, framework="pt") as handle:
            header = json.loads((handle.metadata() or {})[KEY])
            if (header["run"] != self.run or header["model"] != self.model or size != self.model["image_size"]
                    or header["file"] != dict(_file(item), path=was_at) or header["total"] != clips):
                return None
            arrays = {key: handle.get_tensor(key) for key in ARRAYS}
        done, dim = header["clips"], self.model["dim"]
        if not (0 < done < clips) or _digest(arrays) != header["sha256"] \
                or tuple(arrays["F"].shape) != (2 * done + 1, dim) or arrays["H"].shape[0] != done \
                or tuple(arrays["motion"].shape) != (done,) or tuple(arrays["times"].shape) != (2 * clips + 1,):
            return None
        if fingerprint(item.path, item.size) != header["fingerprint"]:
            return None
        return Saved(done, arrays["F"], arrays["H"], arrays["motion"], arrays["times"].tolist(), header["fallback"])

    def save(self, item, embeddings, hists, motion, times, fallback: str | None, clips: int) -> None:
        """Save the first hists.shape[0] clips of item's ``clips`` (nothing when the file is no
        longer the one planned: its state could never apply)."""
        import numpy as np
        from safetensors.numpy import save_file

        from .scan import fingerprint

        model = model_identity(self.library)
        try:
            st = os.stat(item.path)
        except OSError:
            return
        if model is None or (st.st_size, st.st_mtime_ns) != (item.size, item.mtime_ns):
            return
        if item.path not in self._prints:
            self._prints[item.path] = fingerprint(item.path, item.size)
        arrays = {"F": np.ascontiguousarray(embeddings.numpy(), dtype=np.float32),
                  "H": np.ascontiguousarray(hists.numpy(), dtype=np.float32),
                  "motion": np.ascontiguousarray(motion.numpy(), dtype=np.float32),
                  "times": np.asarray(times, dtype=np.float64)}
        header = {"run": self.run, "model": model, "file": _file(item), "fingerprint": self._prints[item.path],
                  "clips": int(hists.shape[0]), "total": clips, "fallback": fallback, "sha256": _digest(arrays)}
        path = state_path(self.directory, item.path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, lambda tmp: save_file(arrays, tmp, metadata={KEY: json.dumps(header)}))

    def forget(self, path: str, item=None) -> None:
        """The video at path (``item``, as planned) committed, or was recorded as failed: its state
        goes (main thread); not one saved there for a file of another size or mtime, moved away
        and perhaps not read yet this run (the sweep judges it)."""
        state = state_path(self.directory, path)
        if item is not None and os.path.exists(state) and self._was_another(state, item):
            return
        self._delete(state, tidy=True)

    def discard(self, path: str) -> None:
        """The state of the video at path does not apply to it (the decode thread: the folder
        stays, as a save of the main thread may be about to write into it)."""
        self._delete(state_path(self.directory, path))

    def sweep(self) -> None:
        """Delete the states that can no longer apply: not vmr's (damaged, another format), of
        another model, of a file deleted, moved or changed since, or of one indexed (or recorded
        as failed) as it is.  Headers only are read.  A state of an unchanged file not indexed
        yet stays, whether or not this run's folders hold it."""
        paths = state_files(self.directory)
        if not paths:
            drop(self.directory, [])  # (its folder, left empty by a state the decode thread discarded)
            return
        model = model_identity(self.library)  # (now: the library may have taken its model since)
        for path in paths:
            try:
                header = _header(path)
                keep = header["run"]["format"] == FORMAT and header["model"] == model \
                    and path == state_path(self.directory, header["file"]["path"]) \
                    and _applies(self.library.catalog, header["file"])
            except Exception:  # noqa: BLE001 - as load()
                keep = False
            if not keep:
                self._delete(path, tidy=True)

    def _delete(self, path: str, tidy: bool = False) -> None:
        if tidy:  # its folder too, once empty: a library keeps no empty folder of them
            drop(self.directory, [path])
            return
        with suppress(OSError):
            os.unlink(path)


def _header(path: str) -> dict:
    """A saved state's header (what it was saved for), its arrays not read."""
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as handle:
        return json.loads((handle.metadata() or {})[KEY])


def _gone(path: str, size: int, mtime_ns: int) -> bool:
    """Whether the file saved as at path (of that size and mtime) is no longer there."""
    try:
        st = os.stat(path)
    except OSError:
        return True
    return (st.st_size, st.st_mtime_ns) != (size, mtime_ns)


def _file(item) -> dict:
    return {"path": item.path, "size": item.size, "mtime_ns": item.mtime_ns}


def _applies(catalog, file: dict) -> bool:
    """Whether the file still is as saved and is not indexed or recorded as failed as it is."""
    try:
        st = os.stat(file["path"])
    except OSError:
        return False
    if (st.st_size, st.st_mtime_ns) != (file["size"], file["mtime_ns"]):
        return False
    row = catalog.video_by_path(file["path"])
    return not (row and row["status"] in ("ok", "failed") and (row["size"], row["mtime_ns"]) == (st.st_size, st.st_mtime_ns))


def _digest(arrays: dict) -> str:
    import numpy as np

    digest = hashlib.sha256()
    for key in ARRAYS:
        array = arrays[key]
        array = array.numpy() if hasattr(array, "numpy") else array
        digest.update(key.encode() + str(array.dtype).encode() + str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


class Keeper:
    """When to save the progress on the video being indexed: every SAVE_EVERY_SECONDS of work on
    it, and when the run stops with STOP_SAVE_SECONDS or more of it unsaved.  The last chunk is
    never saved (the video commits right after it)."""

    def __init__(self, store: Store, before_save=None):
        """``before_save()``: run once, before the first save (a new library records its encoder)."""
        self.store, self.before_save = store, before_save
        self.item = None
        self.off = False  # a save failed (a full disk, an unwritable partial/): none more this run

    def begin(self, item, times: list, saved: Saved | None, clips: int) -> None:
        self.item, self.times, self.clips, self.fallback = item, times, clips, saved.fallback if saved else None
        self.saved = saved.clips if saved else 0
        self.last = time.monotonic()

    def chunk(self, embeddings: list, measures: list, fallback: str | None) -> None:
        """A chunk of the video was encoded (``embeddings``, ``measures``: the video's so far)."""
        self.fallback = fallback
        if not self.off and time.monotonic() - self.last >= SAVE_EVERY_SECONDS:
            self._save(embeddings, measures)

    def stopped(self, embeddings: list, measures: list) -> None:
        """The run stops (an interrupt, an error) or the file could not be read on: keep what can be."""
        if self.item is not None and not self.off and time.monotonic() - self.last >= STOP_SAVE_SECONDS:
            with suppress(Exception):  # (a full disk: the stop's own error is the one to report)
                self._save(embeddings, measures)
        self.item = None

    def end(self) -> None:
        self.item = None

    def _save(self, embeddings: list, measures: list) -> None:
        import torch

        n = min(len(embeddings), len(measures))  # (a stop can land between the two appends)
        if self.item is None or not n:
            return
        hists = torch.cat([h for h, _ in measures[:n]])
        clips = hists.shape[0]
        if not self.saved < clips < self.clips:
            return
        frames = torch.cat(embeddings[:n])
        if frames.shape[0] != 2 * clips + 1:
            return
        if self.before_save is not None:
            self.before_save()
            self.before_save = None
        try:
            self.store.save(self.item, frames, hists, torch.cat([m for _, m in measures[:n]]), self.times,
                            self.fallback, self.clips)
        except OSError:  # the progress is a convenience: the index goes on without it (it stopped
            self.off = True  # the run, though the video's own commit, smaller, might still fit)
            return
        self.saved, self.last = clips, time.monotonic()
