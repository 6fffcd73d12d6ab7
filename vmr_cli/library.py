"""A vmr library: one folder holding the catalog, the vector shards and the FAISS cache.

This class is the one owner of their agreement (TESTING.md: the library's main
promise).  Every change to a video goes through one method here (put, move,
remove, mark failed, mark stale), each one catalog transaction plus the
video's shard plus the FAISS cache, so no caller can leave them out of step.
Opening a library for writing checks that they agree and repairs what does
not: FAISS entries without a clip row are dropped, clips missing from FAISS
are added back from their shard, and a video whose shard is missing or
damaged is marked stale so the next ``vmr index`` re-embeds just that video.

The library also knows which weights built it (the sha256 of the model's
weight files, in the catalog's meta): a model whose weights changed in place
is refused at index and search, and the same weights reached through another
path (a moved folder, a symlink, a copy) are accepted and can be recorded as
the library's model.  ``check_library`` is ``vmr status --check``: SQLite's
integrity check (a damaged catalog is salvaged row by row into a new one, the
damaged file kept), every shard against the catalog, and the model's hash.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager, suppress

from . import partial
from .catalog import Catalog, catalog_in, folder_size, integrity_problems, salvage
from .encoders import (ModelFiles, PickleWeights, is_folder_name, locate_model, model_name,
                       weights_fingerprint, weights_identity)
from .errors import ANOTHER_USER, VectorsUnreadable, VmrError, no_space_at, no_space_message
from .frame_cache import FrameCache, limit_bytes as frame_cache_limit
from .lock import is_locked, writer_lock
from .paths import printable
from .progress import progress
from .vectors import VectorStore, shard_ids

STALE = "vectors missing or damaged; 'vmr index' re-embeds this video"
WEIGHTS = "encoder_weights"  # meta: {"sha256", "files"} of the weights the library was built with
PREPROCESSING = "encoder_preprocessing"  # meta: {"image_size", "mean", "std"} its frames were encoded with


def default_directory() -> str:
    env = os.environ.get("VMR_LIBRARY")
    if env:  # '~' too: export VMR_LIBRARY="~/vmr" (quoted) made a folder named '~' here
        return os.path.abspath(os.path.expanduser(env))  # (library_directory: home_library's check)
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "vmr")


def home_library(raw: str, given: str = "") -> str:
    """raw with a leading '~' as the home folder (a quoted '~' the shell left alone).  A library
    that vmr made before in a folder literally named '~' (it did not expand it) is pointed out
    rather than passed over for an empty one."""
    expanded = os.path.expanduser(raw)
    literal = os.path.abspath(raw)
    if expanded != raw and not os.path.exists(catalog_in(expanded)) \
            and os.path.exists(catalog_in(literal)):
        said = f"{given} {printable(raw)}".lstrip()
        raise VmrError(f"{said} is {printable(expanded)}, which holds no library, but an older vmr made "
                       f"it in a folder named '~' here: {printable(literal)}; move that to "
                       f"{printable(expanded)}, or name it as ./{printable(raw)}")
    return expanded


def library_directory(directory: str | None = None) -> str:
    """The library folder, absolute: the one named, else the default.  A file where it or a
    folder above it should be is said before anything reads an inner path (the error was
    'Not a directory: LIB/shards')."""
    from_env = not directory and bool(os.environ.get("VMR_LIBRARY"))
    if from_env:
        home_library(os.environ["VMR_LIBRARY"], "$VMR_LIBRARY")
    resolved = os.path.abspath(directory or default_directory())
    path = resolved
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return resolved
        path = parent
    if os.path.isdir(path) or not os.path.exists(path):  # (a dangling link: as before)
        return resolved
    given = "$VMR_LIBRARY" if from_env else "--library"
    raise VmrError(f"cannot use {printable(resolved)} as the library folder: {printable(path)} is a file; "
                   f"name a folder with {given}")


class Library:
    def __init__(self, directory: str | None = None, create: bool = True, locked: bool = False):
        """``locked``: the caller holds the library's writer lock (an old catalog is migrated
        under it: Catalog._migrate)."""
        self.directory = library_directory(directory)
        catalog_path = catalog_in(self.directory)
        lost = lost_catalog(self.directory)
        if lost:
            raise VmrError(lost)
        # A library this process creates is removed again if it ends up holding nothing
        # (discard_if_empty): what was in its folder before is remembered and never touched.
        self.created = False
        self._before: set[str] | None = None
        if not os.path.exists(catalog_path):
            if not create:
                raise VmrError(f"no vmr library at {self.directory}; run 'vmr index PATH' first")
            try:
                self._before = set(os.listdir(self.directory)) if os.path.isdir(self.directory) else None
                os.makedirs(self.directory, exist_ok=True)
            except OSError as exc:
                raise VmrError(f"cannot create library folder {self.directory}: {exc.strerror}") from None
            self.created = True
        writable = os.access(self.directory, os.W_OK) and (
            not os.path.exists(catalog_path) or os.access(catalog_path, os.W_OK))
        self.readonly = not writable
        if self.readonly and create and os.access(self.directory, os.W_OK):  # the folder is, its catalog not
            raise VmrError(f"the catalog {printable(catalog_path)} cannot be written (permission denied); "
                           f"{ANOTHER_USER} check the permissions of {printable(self.directory)}")
        if self.readonly and create:
            raise VmrError(f"library folder {printable(self.directory)} is not writable (read-only); "
                           "index into a writable --library")
        # Search, status and export only read: on a read-only library they work, but a search
        # cannot be logged (the CLI says so).
        try:
            self.catalog = Catalog(catalog_path, readonly=self.readonly, read_when_full=not create,
                                   locked=locked)
        except BaseException as exc:  # a first 'vmr index' on a full disk: no half-made catalog left
            # behind; only then (any failure: another process making its library in this folder at
            # this moment would lose it, and it would fail too on a full disk)
            if self.created and (no_space_at(exc, self.directory) or str(exc) == no_space_message(self.directory)):
                with suppress(OSError):
                    self._remove_made_files()
                self._remove_made_folder()
            raise
        self.vectors = VectorStore(self.directory)
        self.vectors.dim = self._dim()
        self.frames = FrameCache(self.directory, readonly=self.readonly)

    # -- the encoder this library was built with -----------------------------------------
    def encoder(self) -> dict | None:
        name = self.catalog.get_meta("encoder")
        if name is None:
            return None
        return {
            "name": name,
            "dim": int(self.catalog.get_meta("embedding_dim")),
            "clip_seconds": float(self.catalog.get_meta("clip_seconds")),
            "image_size": int(self.catalog.get_meta("image_size")),
            "weights": _json(self.catalog.get_meta(WEIGHTS)),
        }

    def record_encoder(self, name: str, dim: int, image_size: int, clip_seconds: float,
                       files: ModelFiles | None = None, weights: dict | None = None,
                       preprocessing: dict | None = None) -> None:
        """The encoder of a new library; with ``files``, the hash of its weights too (``weights``:
        their ``weights_identity``, when the caller computed it already), and its
        ``preprocessing(encoder)``, all in one transaction."""
        if weights is None and files is not None:
            weights = weights_identity(files)
        with self.catalog.transaction():
            self.catalog.set_meta("encoder", name)
            self.catalog.set_meta("embedding_dim", dim)
            self.catalog.set_meta("image_size", image_size)
            self.catalog.set_meta("clip_seconds", clip_seconds)
            if weights:
                self.catalog.set_meta(WEIGHTS, json.dumps(weights))
            if preprocessing:
                self.catalog.set_meta(PREPROCESSING, json.dumps(preprocessing))
        self.vectors.dim = dim
        # A new library has no clips: a FAISS cache already in its folder (left when the catalog
        # was deleted to start over) holds another library's ids, which start at 1 again.
        if os.path.exists(self.vectors.index_path):
            self.vectors.reset(dim)
            self.vectors.save()  # now, not at the end: a first run stopped early must not leave it

    def drop_encoder(self) -> None:
        """Forget the model of a library that holds no video yet (a first index stopped part way,
        its progress saved): the next index records the one it is given, as in a new library.
        The saved progress, made with the old one, goes first."""
        partial.drop(self.directory, partial.state_files(self.directory))
        with self.catalog.transaction():
            self.catalog.delete_meta(["encoder", "embedding_dim", "image_size", "clip_seconds", WEIGHTS,
                                      PREPROCESSING])

    def lost_encoder(self) -> str | None:
        """What to do when the catalog holds videos but no record of the model that embedded
        them (a catalog salvaged by 'vmr status --check' that lost its meta page), else None.
        The vectors cannot be vouched for: they are embedded again with the model named."""
        if self.encoder() is not None:
            return None
        counts = self.catalog.counts()
        held = counts["videos"] + counts["stale"]
        if not held:
            return None
        return (f"library {printable(self.directory)} lost its record of the model its {held} "
                f"video{'s were' if held != 1 else ' was'} embedded with (a salvaged catalog?); run "
                "'vmr index --model NAME' to embed them again with that model or another")

    def require_encoder(self) -> dict:
        """The library's encoder, after checking that its model still has the recorded weights."""
        if self.encoder() is None:
            raise VmrError(self.lost_encoder() or f"library {self.directory} is empty; run 'vmr index PATH' first")
        self.verify_model()
        return self.encoder()

    def verify_model(self, model: str | None = None, rehash: bool = False) -> ModelFiles:
        """The files of the model to encode with, whose weights are the ones this library was built
        with; a one-line error naming the way out when they are not.

        ``model`` names the model another way (a moved folder, a symlink, a
        copy, a hub id again): when its weights hash to the recorded sha256 it
        becomes the library's model.  A search pays a few ``stat`` calls: the
        hash is computed again only when the weight files' fingerprint changed
        (or ``rehash``, for ``vmr status --check``), and the new fingerprint is
        remembered when the catalog can take it.
        """
        info = self.encoder()
        current = info["name"]
        name = model_name(model) if model else current
        try:
            files = locate_model(name)
        except PickleWeights as exc:
            if name != current or info["weights"] is not None:
                raise
            # A copy converted elsewhere could not be compared with weights never recorded: in place.
            raise VmrError(f"{exc.what}; vmr loads safetensors only, and this library "
                           "was built before vmr recorded its model's weights, so a converted copy elsewhere "
                           f"cannot be compared with them: {_convert_in_place(exc)}") from None
        except VmrError:
            if name == current and is_folder_name(current) and not os.path.exists(current):
                raise VmrError(f"the library's model folder {printable(current)} is gone; if it moved, point the "
                               "library at its new place: vmr index --model NEWDIR") from None
            raise
        recorded = info["weights"]
        if recorded is None:  # a library from before vmr recorded weights: trusted, then recorded
            if name == current:
                if not self.readonly:
                    self.catalog.try_set_meta({WEIGHTS: json.dumps(weights_identity(files))})
                return files
            self._record_first_weights(current, name)
            return self.verify_model(model)
        identity = weights_identity(files, known=None if rehash else recorded)
        if identity["sha256"] != recorded["sha256"]:
            raise VmrError(self._mismatch(files, current, recorded["sha256"], identity["sha256"]))
        if name != current:
            self._write_model(name, identity)
        elif identity["files"] != recorded["files"]:
            self.catalog.try_set_meta({WEIGHTS: json.dumps(identity)})  # a cache: best effort
        return files

    def _record_first_weights(self, current: str, name: str) -> None:
        """Before another name can be accepted, the weights of the current one must be known."""
        before = f"library {printable(self.directory)} was built before vmr recorded its model's weights"
        try:
            files = locate_model(current, download=False)
        except PickleWeights as exc:  # there, but never unpickled: nothing to compare with
            raise VmrError(
                f"{before}, and that model ({printable(current)}) holds only pickle weights "
                f"({', '.join(map(printable, exc.names))}), which vmr does not load (they can run code), so vmr "
                f"cannot tell whether {printable(name)} holds the same weights; {_convert_in_place(exc)}, "
                f"then run vmr index --model {printable(name)} again") from None
        except VmrError as exc:
            if os.path.exists(current):  # there, but unusable: say why, not that it is missing
                raise VmrError(
                    f"{before}, and that model ({printable(current)}) cannot be used ({exc}), so vmr cannot "
                    f"tell whether {printable(name)} holds the same weights; put it right and run vmr index "
                    f"--model {printable(name)} again") from None
            raise VmrError(
                f"{before}, and that model ({printable(current)}) cannot be found, so vmr cannot tell whether "
                f"{printable(name)} holds the same weights; put the model back at {printable(current)} once "
                f"(a symlink will do) and run vmr index --model {printable(name)} again") from None
        self._write_model(current, weights_identity(files))

    def _write_model(self, name: str, identity: dict) -> None:
        if self.readonly:
            raise VmrError(f"library {self.directory} is read-only; pointing it at another model needs to write it")
        with self.catalog.transaction():
            self.catalog.set_meta("encoder", name)
            self.catalog.set_meta(WEIGHTS, json.dumps(identity))

    def _mismatch(self, files: ModelFiles, current: str, recorded: str, now: str) -> str:
        library = printable(self.directory)
        sums = f"(sha256 {recorded[:12]} recorded, {now[:12]} "
        if files.name != current:
            return (f"the weights in {printable(files.name)} are not the ones library {library} was built with "
                    f"{sums}there); the library keeps its model {printable(current)}; to use this model, index "
                    "into a new library with --library NEWDIR")
        where = (f"of {files.name} in the Hugging Face cache" if files.hub else f"in {printable(files.folder)}")
        message = (f"the model weights {where} changed since library {library} was built {sums}now): "
                   "indexing or searching with them would mix two embedding spaces; ")
        original = _sibling_snapshot(files, self.encoder()["weights"]) if files.hub else None
        if original:
            return message + f"the original is still in the cache: vmr index --model {printable(original)}"
        return message + ("put the original weights back (or point the library at a copy of them: "
                          "vmr index --model DIR), or build a new library with --library NEWDIR")

    def check_preprocessing(self, encoder) -> None:
        """The encoder prepares frames as this library's were prepared (input size, mean, std), or
        a one-line error.  The weights' hash does not cover ``preprocessor_config.json``: edited,
        or another folder with the same weights and other preprocessing, it would mix two
        embedding spaces silently.  A library from before this was recorded records it now."""
        current = preprocessing(encoder)
        recorded = _json(self.catalog.get_meta(PREPROCESSING))
        if recorded is None:
            size = self.catalog.get_meta("image_size")
            recorded = {"image_size": int(size)} if size is not None else {}
            if all(recorded[k] == current[k] for k in recorded):
                self.catalog.try_set_meta({PREPROCESSING: json.dumps(current)})
                return
        changed = [f"{k.replace('_', ' ')} {recorded[k]} recorded, {current[k]} now" for k in current
                   if k in recorded and recorded[k] != current[k]]
        if changed:
            raise VmrError(f"model {printable(encoder.name)} prepares frames differently from when library "
                           f"{printable(self.directory)} was built ({'; '.join(changed)}): its "
                           "preprocessor_config.json changed, and encoding with it would mix two embedding "
                           "spaces; put the original file back, or build a new library with --library NEWDIR")

    def check_model(self) -> dict | None:
        """``vmr status --check``: the model's weights hashed in full and compared with the record."""
        info = self.encoder()
        if info is None:
            return None
        try:
            self.verify_model(rehash=True)
        except VmrError as exc:
            return {"name": info["name"], "sha256": (info["weights"] or {}).get("sha256"), "ok": False,
                    "error": str(exc)}
        return {"name": info["name"], "sha256": self.encoder()["weights"]["sha256"], "ok": True, "error": None}

    def _dim(self) -> int | None:
        info = self.encoder()
        return info["dim"] if info else None

    # -- one writer at a time ------------------------------------------------------------
    @contextmanager
    def writer_lock(self, what: str = "vmr index"):
        if self.readonly:
            raise VmrError(f"library {self.directory} is read-only; {what} needs to write it")
        if self.catalog.full:  # opened read-only for want of space: not a permissions problem
            raise VmrError(no_space_message(self.directory))
        with writer_lock(self.directory, what):
            if not os.path.exists(self.catalog.path):  # a first run that failed removed it meanwhile
                raise VmrError(f"library {printable(self.directory)} was removed while this command "
                               "started; run it again")
            yield

    def is_locked(self) -> bool:
        return is_locked(self.directory)

    def discard_if_empty(self) -> bool:
        """Remove a library that this process created and that holds no indexed video (a first
        'vmr index' that failed or found nothing), so no empty library is left behind.  Only
        what vmr created goes: the folder itself only if it did not exist before."""
        if not self.created or self.readonly:
            return False
        try:
            with writer_lock(self.directory, "removing an empty new library"):
                counts = self.catalog.counts()
                if counts["videos"] or counts["stale"] or partial.state_files(self.directory):
                    return False  # (the progress saved on a long video: the next run resumes it)
                self.close()
                self._remove_made_files()
        except (VmrError, OSError):
            return False  # another process holds it now: not ours to remove
        self._remove_made_folder()  # once its lock is let go
        return True

    def _remove_made_files(self) -> None:
        """What this process put into the library folder it created (what was there stays)."""
        for name in set(os.listdir(self.directory)) - (self._before or set()):
            path = os.path.join(self.directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with suppress(OSError):
                    os.unlink(path)

    def _remove_made_folder(self) -> None:
        """The library folder, where this process made it (and it is empty now)."""
        self.created = False
        if self._before is None:
            with suppress(OSError):
                os.rmdir(self.directory)

    # -- changes to one video: catalog row, shard and FAISS cache together --------------------
    def put_video(self, row: dict, clips: list[dict], vectors: dict) -> int:
        """Commit an indexed video: its row, clips and shard in one transaction, then FAISS.

        ``row`` holds the video's columns (path, root, size, mtime_ns, fingerprint,
        model and what the probe found); ``vectors`` the shard's arrays per clip.
        A video already at that path is replaced, its old vectors with it, under a
        new id: its new shard is then a new file, and the old row keeps its own
        shard until the transaction commits (a kill in between loses neither).
        """
        dim = self._dim()
        token = uuid.uuid4().hex
        existing = self.catalog.video_by_path(row["path"])
        old_ids = self.catalog.clip_ids_of(existing["id"]) if existing else []
        with self.catalog.transaction():
            if existing:
                self.catalog.delete_video(existing["id"])
            video_id = self.catalog.upsert_video(dict(
                row, n_clips=len(clips), status="ok", error=None, failed_with=None, vectors_token=token,
                indexed_at=time.time()))
            clip_ids = self.catalog.replace_clips(video_id, clips)
            self.vectors.write_shard(video_id, token, clip_ids, vectors)
            if existing and all(existing[k] == row.get(k) for k in ("size", "mtime_ns", "fingerprint")):
                # the file as it was (embedded again by an upgrade, or for a shard lost): an export
                # of an earlier search said it had "changed since this search"
                self.catalog.results_follow(existing["id"], video_id)
        self.vectors.remove(dim, old_ids)
        self.vectors.add(dim, clip_ids, vectors["A"])
        if existing:
            self.vectors.delete_shard(existing["id"])
            self.frames.forget(existing["id"])
        return video_id

    # What describes a video's content (copied with its vectors) rather than its file or its row.
    _OWN_COLUMNS = ("id", "path", "root", "mtime_ns", "n_clips", "status", "error", "failed_with",
                    "vectors_token", "indexed_at")

    def copy_video(self, source: dict, path: str, root: str, mtime_ns: int) -> int | None:
        """Index the file at path, a copy of the indexed video ``source`` (scan.copy_source), with
        source's clips and vectors: nothing is decoded.  None when source's vectors cannot be read
        (the copy is then indexed as any new file)."""
        shard = self.vectors.read_shard(source["id"], source["vectors_token"])
        clips = [{k: c[k] for k in ("idx", "start", "end", "shot", "motion")} for c in self.catalog.clips(source["id"])]
        if shard is None or len(shard["clip_ids"]) != len(clips):
            return None
        row = {k: v for k, v in source.items() if k not in self._OWN_COLUMNS}
        return self.put_video(dict(row, path=path, root=root, mtime_ns=mtime_ns), clips,
                              {k: v for k, v in shard.items() if k != "clip_ids"})

    def move_video(self, row: dict, new_path: str, root: str, mtime_ns: int) -> None:
        """A file that moved keeps its vectors: only its path changes."""
        with self.catalog.transaction():
            self.catalog.move_video(row["id"], new_path, root, mtime_ns)

    def record_transfers(self, transfers: dict[int, str]) -> None:
        """The colour transfer of videos indexed before the catalog kept it, in one transaction."""
        if transfers:
            with self.catalog.transaction():
                self.catalog.record_transfers(transfers)

    def remove_video(self, row: dict) -> None:
        self.remove_videos([row])

    def remove_videos(self, rows: list[dict]) -> None:
        """Rows, clips, shards and FAISS entries of these videos, the rows in one transaction."""
        if not rows:
            return
        clip_ids = {row["id"]: self.catalog.clip_ids_of(row["id"]) for row in rows}
        with self.catalog.transaction():
            for row in rows:
                self.catalog.delete_video(row["id"])
        self._drop_vectors(clip_ids)

    def forget(self, path: str) -> list[dict]:
        """Drop every entry at or under path (a file or a folder, present or not), on purpose:
        the way out when a folder is gone for good.  Returns the rows removed."""
        from .scan import KEPT_META, held_before

        rows = self.catalog.videos_under(path)
        self.remove_videos(rows)
        held = held_before(self.catalog)  # (see scan.plan_index; a record not JSON is none)
        if rows and any(row["path"] in held for row in rows):
            with self.catalog.transaction():
                self.catalog.set_meta(KEPT_META, json.dumps({p: m for p, m in held.items()
                                                             if p not in {row["path"] for row in rows}}))
        return rows

    def mark_failed(self, row: dict, error: str, failed_with: str | None = None) -> None:
        """Record a file that could not be indexed because of what it holds, with its reason and
        what it failed with (tried again when that changes); its old vectors (if it had any)
        describe a file that is no longer there and go."""
        existing = self.catalog.video_by_path(row["path"])
        if existing and existing["status"] == "ok":
            self.remove_video(existing)
        with self.catalog.transaction():
            self.catalog.upsert_video(dict(row, status="failed", error=error, failed_with=failed_with,
                                           n_clips=0, bad_frames=0, indexed_at=time.time()))

    def mark_stale(self, video_ids, reason: str = STALE) -> None:
        """Videos whose vectors are gone or damaged keep their row; 'vmr index' re-embeds them.
        One transaction and one FAISS removal for all: one at a time (a removal scans the whole
        cache), 20,000 videos whose shards were lost took 37 s before the index said anything."""
        clip_ids = {video_id: self.catalog.clip_ids_of(video_id) for video_id in video_ids}
        if not clip_ids:
            return
        with self.catalog.transaction():
            for video_id in clip_ids:
                self.catalog.mark_stale(video_id, reason)
        self._drop_vectors(clip_ids)

    def repair_missing_shards(self) -> list[int]:
        """Mark stale every indexed video whose shard is gone or is not the one its row was
        committed with (its header is read, not its vectors), so that the next index run
        re-embeds it: what a search's 'vectors missing' asks 'vmr index' to do."""
        missing = self.vectors.unmatched_shards(self.catalog.videos("ok"))
        self.mark_stale(missing)
        return missing

    def _drop_vectors(self, clip_ids: dict[int, list[int]]) -> None:
        """The vectors of these videos ({video id: its clip ids}), once their rows no longer need them."""
        dim = self._dim()
        if dim:
            self.vectors.remove(dim, [c for ids in clip_ids.values() for c in ids])
        for video_id in clip_ids:
            self.vectors.delete_shard(video_id)
        self.frames.forget(*clip_ids)

    def drop_leftovers(self) -> None:
        """What a writer killed after its commit left of videos the catalog no longer holds (their
        FAISS entries, their shards), and nothing else: no entry changes and no shard is read, so
        a shard that cannot be read (another user's) cannot stop it, as it stops check()."""
        dim = self._dim()
        if dim:
            extra = set(self.vectors.indexed_ids(dim).tolist()) - self.catalog.clip_ids()
            if extra:
                self.vectors.remove(dim, extra)
        self._remove_orphan_shards({}, True)
        self.vectors.save()  # now: the command may end in an error (nothing left to forget)

    def save(self) -> None:
        """Write the FAISS cache if it changed (the shards are written as videos commit)."""
        self.vectors.save()

    # -- catalog and vectors agree ---------------------------------------------------------
    def check(self, repair: bool = True, deep: bool = False, save: bool = True) -> dict:
        """Compare clip rows with the FAISS cache (and, when deep, every shard) and repair.

        Returns what was found and done.  With ``save`` False (a search while
        an index run holds the writer lock) the FAISS cache is repaired in
        memory only and the catalog is not written.
        """
        report = {"consistent": True, "stale_videos": [], "stale_paths": [], "orphan_shards": 0,
                  "index_added": 0, "index_removed": 0, "shards_checked": 0}
        dim = self._dim()
        if dim is None:
            return report
        rows = self.catalog.clip_ids()
        ids = self.vectors.indexed_ids(dim).tolist()
        indexed = set(ids)
        if len(indexed) != len(ids):
            # One id twice: a cache left from a catalog that was deleted (clip ids start again at
            # 1) -- its vectors would answer for the new clips.  Built again from the shards.
            report["consistent"] = False
            if repair:
                report["index_removed"] = len(ids)
                self.vectors.reset(dim)
                indexed = set()
        if indexed != rows or deep:
            report["consistent"] = report["consistent"] and indexed == rows
            extra = indexed - rows
            if repair and extra:
                self.vectors.remove(dim, extra)
                report["index_removed"] = len(extra)
            unreadable: list = []
            suspect = self._restore_from_shards(dim, rows - indexed, indexed, deep, repair, report, unreadable)
            if unreadable and save:  # index, status: stop and say so; a search skips those videos
                raise unreadable[0]
            if suspect:
                report["consistent"] = False
                report["stale_videos"] = sorted(suspect)  # row ids (kept for scripts of 0.2.0)
                report["stale_paths"] = [row["path"] for row in map(self.catalog.video, sorted(suspect)) if row]
                if repair and save:
                    self.mark_stale(suspect)
        self._remove_orphan_shards(report, repair and save)
        if repair and save:
            self.vectors.remove_temp_files()
            self.vectors.save()
        return report

    def _restore_from_shards(self, dim: int, missing: set, indexed: set, deep: bool, repair: bool,
                             report: dict, unreadable: list) -> set[int]:
        """Add clips missing from FAISS back from their shards; the ids of videos whose shard
        is missing or does not match their rows (every video when deep).  A shard that cannot be
        read is neither: its VectorsUnreadable goes to ``unreadable``."""
        if deep:
            targets = self.catalog.videos("ok")
            report["shards_checked"] = len(targets)
        else:
            owners = set(self.catalog.clip_video_ids(missing).values()) if missing else set()
            targets = [v for v in (self.catalog.video(i) for i in owners) if v is not None]
        suspect = set()
        bar = progress(len(targets), "checking shards", "video", enabled=None if deep else False)
        for video in targets:
            bar.update(1)
            try:
                shard = self.vectors.read_shard(video["id"], video["vectors_token"])
            except VectorsUnreadable as exc:
                unreadable.append(exc)
                continue
            clip_ids = self.catalog.clip_ids_of(video["id"])
            if shard is None or shard["clip_ids"].tolist() != clip_ids or shard["A"].shape[1:] != (dim,):
                suspect.add(video["id"])
                continue
            absent = [i for i, cid in enumerate(clip_ids) if cid not in indexed]
            if repair and absent:
                self.vectors.add(dim, [clip_ids[i] for i in absent], shard["A"][absent])
                report["index_added"] += len(absent)
        bar.close()
        return suspect

    def _remove_orphan_shards(self, report: dict, repair: bool) -> None:
        """Shards without an 'ok' row: a video removed or re-embedded before a crash."""
        orphans = self.vectors.shard_video_ids() - self.catalog.video_ids("ok")
        if orphans:
            report["orphan_shards"] = len(orphans)
            report["consistent"] = False
            if repair:
                for video_id in orphans:
                    self.vectors.delete_shard(video_id)

    # -- numbers ---------------------------------------------------------------------------
    def status(self) -> dict:
        counts = self.catalog.counts()
        info = self.encoder()
        vectors = self.vectors.count(info["dim"]) if info else 0
        # A shard deleted by hand while the FAISS cache still holds its vectors: the counts agree,
        # but a search skips the video ("vectors missing").  Names only, no file opened.
        shards = self.vectors.shard_video_ids()
        no_shard = len(self.catalog.video_ids("ok") - shards)
        lost = self.lost_encoder()
        consistent = vectors == counts["clips"] and counts["stale"] == 0 and not no_shard and not lost
        lag = 0
        if not consistent and counts["stale"] == 0 and not no_shard and not lost and self._shards_match():
            # The FAISS cache is written every minute and at the end of an index run, so during
            # one, or after one was interrupted, it lags what was committed; every committed
            # video's vectors are in its shard, from which the cache is rebuilt.
            consistent, lag = True, abs(counts["clips"] - vectors)
        return {
            "library": self.directory,
            "exists": True,
            "videos": counts["videos"],
            "failed": counts["failed"],
            "stale": counts["stale"],
            "unchecked_since_upgrade": counts["unchecked"],
            "clips": counts["clips"],
            "vectors": vectors,
            "consistent": consistent,
            "vector_cache_lag": lag,
            "videos_without_vectors": no_shard,
            "encoder_lost": lost is not None,
            "index_running": self._index_running(),
            "duration": round(counts["duration"], 3),
            "searches": counts["searches"],
            "encoder": info["name"] if info else None,
            "embedding_dim": info["dim"] if info else None,
            "clip_seconds": info["clip_seconds"] if info else None,
            "size_bytes": folder_size(self.directory),
            "partial_bytes": partial.size_bytes(self.directory),
            "frame_cache_bytes": self.frames.size_bytes(),
            "frame_cache_limit_bytes": self.frames.limit,
        }

    def _index_running(self) -> bool:
        try:
            return self.is_locked()
        except OSError:  # a library this user can only read: nobody indexes it as this user
            return False

    def _shards_match(self) -> bool:
        """Whether every indexed video's shard is there and is the one its row was committed
        with (headers only)."""
        return all(self.vectors.shard_matches(v["id"], v["vectors_token"], v["n_clips"])
                   for v in self.catalog.videos("ok"))

    def failed_files(self) -> list[dict]:
        """The files that could not be indexed: path, why, and what they failed with."""
        return [{"path": v["path"], "error": v["error"], "failed_with": v.get("failed_with"),
                 "size": v["size"], "failed_at": v["indexed_at"]} for v in self.catalog.videos("failed")]

    @staticmethod
    def empty_status(directory: str) -> dict:
        return {"library": directory, "exists": False, "videos": 0, "failed": 0, "stale": 0, "unchecked_since_upgrade": 0, "clips": 0, "vectors": 0,
                "consistent": True, "vector_cache_lag": 0, "videos_without_vectors": 0, "encoder_lost": False,
                "index_running": False,
                "duration": 0.0, "searches": 0, "encoder": None,
                "embedding_dim": None, "clip_seconds": None, "size_bytes": 0, "partial_bytes": 0, "frame_cache_bytes": 0,
                "frame_cache_limit_bytes": frame_cache_limit()}

    def close(self) -> None:
        self.catalog.close()
        self.frames.close()


def lost_catalog(directory: str) -> str | None:
    """Why the library's catalog must not be created afresh, or None: vector shards are there but the
    catalog is missing or empty (zero bytes, and no WAL holding its pages), so a new catalog would
    silently drop them."""
    catalog = catalog_in(directory)
    exists = os.path.exists(catalog)
    if exists and (_size(catalog) or _size(catalog + "-wal")):
        return None
    shards = len(shard_ids(os.path.join(directory, "shards")))
    if not shards:
        return None
    state = "is empty (zero bytes)" if exists else "is missing"
    return (f"library {printable(directory)} holds {shards} vector shards but its catalog {printable(catalog)} "
            f"{state}: the catalog was lost, and a new one would drop them; restore catalog.db from a backup, or "
            f"start over (delete {printable(os.path.join(directory, 'shards'))}, or use another --library DIR)")


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def check_library(directory: str | None = None) -> tuple[Library, dict]:
    """``vmr status --check``: the catalog's integrity (a damaged one is salvaged into a new catalog,
    the damaged file kept), every shard against the catalog, and the model's weights hashed in full.

    Returns the library, open, and the report (``check`` plus ``catalog`` and ``model``)."""
    directory = library_directory(directory)
    catalog = catalog_in(directory)
    lost = lost_catalog(directory)
    if lost:
        raise VmrError(lost)
    if not os.path.exists(catalog):
        raise VmrError(f"no vmr library at {directory}; run 'vmr index PATH' first")
    if not (os.access(directory, os.W_OK) and os.access(catalog, os.W_OK)):
        raise VmrError(f"library {directory} is read-only; vmr status --check needs to write it")
    with writer_lock(directory, "vmr status --check"):
        problems = integrity_problems(catalog)
        saved = salvage(catalog, why=problems[0]) if problems else None
        library = Library(directory, create=False, locked=True)
        report = library.check(repair=True, deep=True)
        report["catalog"] = {"ok": not problems, "problems": problems, "salvaged": saved}
        report["model"] = library.check_model()
    return library, report


def _convert_in_place(exc: PickleWeights) -> str:
    folder = printable(exc.folder)
    return (f"convert them in place (add model.safetensors to {folder}, e.g. save_pretrained('{folder}', "
            "safe_serialization=True) where you trust it)")


def _sibling_snapshot(files: ModelFiles, recorded: dict) -> str | None:
    """Another snapshot of the same hub model in the cache whose weight files are the very ones
    recorded (same fingerprint: the blobs the library was built with are still there)."""
    snapshots = os.path.dirname(files.folder)
    try:
        names = sorted(os.listdir(snapshots))
    except OSError:
        return None
    for name in names:
        other = ModelFiles(files.name, os.path.join(snapshots, name), files.weights, hub=True)
        try:
            if other.folder != files.folder and weights_fingerprint(other) == recorded["files"]:
                return other.folder
        except OSError:
            continue
    return None


def preprocessing(encoder) -> dict:
    """How an encoder prepares frames, as a library records it: input size, mean, std."""
    return {"image_size": int(encoder.image_size), "mean": [round(float(x), 6) for x in encoder.mean],
            "std": [round(float(x), 6) for x in encoder.std]}


def _json(text: str | None):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None
