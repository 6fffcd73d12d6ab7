"""A vmr library: one folder holding the catalog, the vector shards and the FAISS cache.

Opening a library checks that catalog and vectors agree and repairs what does
not: FAISS entries without a clip row are dropped, clips missing from FAISS are
added back from their shard, and a video whose shard is missing or damaged is
marked ``stale`` so the next ``vmr index`` re-embeds just that video.
"""

from __future__ import annotations

import errno
import fcntl
import os
from contextlib import contextmanager

from .catalog import Catalog, catalog_size
from .errors import VmrError
from .paths import printable
from .vectors import VectorStore


def default_directory() -> str:
    env = os.environ.get("VMR_LIBRARY")
    if env:
        return os.path.abspath(env)
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "vmr")


class Library:
    def __init__(self, directory: str | None = None, create: bool = True):
        self.directory = os.path.abspath(directory or default_directory())
        catalog_path = os.path.join(self.directory, "catalog.db")
        if not os.path.exists(catalog_path):
            if not create:
                raise VmrError(f"no vmr library at {self.directory}; run 'vmr index PATH' first")
            try:
                os.makedirs(self.directory, exist_ok=True)
            except OSError as exc:
                raise VmrError(f"cannot create library folder {self.directory}: {exc.strerror}") from None
        writable = os.access(self.directory, os.W_OK) and (
            not os.path.exists(catalog_path) or os.access(catalog_path, os.W_OK))
        self.readonly = not writable
        if self.readonly and create:
            raise VmrError(f"library folder {printable(self.directory)} is not writable (read-only); "
                           "index into a writable --library")
        # Search, status and export only read: on a read-only library they work, but a search
        # cannot be logged (the CLI says so).
        self.catalog = Catalog(catalog_path, readonly=self.readonly)
        self.vectors = VectorStore(self.directory)
        self._lock_handle = None

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
        }

    def record_encoder(self, name: str, dim: int, image_size: int, clip_seconds: float) -> None:
        with self.catalog.transaction():
            self.catalog.set_meta("encoder", name)
            self.catalog.set_meta("embedding_dim", dim)
            self.catalog.set_meta("image_size", image_size)
            self.catalog.set_meta("clip_seconds", clip_seconds)

    def require_encoder(self) -> dict:
        info = self.encoder()
        if info is None:
            raise VmrError(f"library {self.directory} is empty; run 'vmr index PATH' first")
        return info

    # -- one writer at a time ------------------------------------------------------------
    @contextmanager
    def writer_lock(self, what: str = "vmr index"):
        if self.readonly:
            raise VmrError(f"library {self.directory} is read-only; {what} needs to write it")
        path = os.path.join(self.directory, "write.lock")
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise VmrError(f"another vmr process is writing to {self.directory}; wait for it to "
                               "finish and try again") from None
            raise
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()} {what}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def is_locked(self) -> bool:
        path = os.path.join(self.directory, "write.lock")
        if not os.path.exists(path):
            return False
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
        return False

    # -- catalog and vectors agree ---------------------------------------------------------
    def check(self, repair: bool = True, deep: bool = False, save: bool = True) -> dict:
        """Compare clip rows with the FAISS cache (and, when deep, every shard) and repair.

        Returns what was found and done.  With ``save`` False (a search while
        an index run holds the writer lock) the FAISS cache is repaired in
        memory only and the catalog is not written.
        """
        report = {"consistent": True, "stale_videos": [], "orphan_shards": 0,
                  "index_added": 0, "index_removed": 0}
        info = self.encoder()
        if info is None:
            return report
        dim = info["dim"]
        rows = self.catalog.clip_ids()
        indexed = set(self.vectors.indexed_ids(dim).tolist())
        suspect = set()
        if indexed != rows or deep:
            report["consistent"] = indexed == rows
            missing = rows - indexed
            extra = indexed - rows
            if repair and extra:
                self.vectors.remove(dim, extra)
                report["index_removed"] = len(extra)
            videos_missing = set(self.catalog.clip_video_ids(missing).values()) if missing else set()
            targets = self.catalog.videos("status='ok'") if deep else [
                self.catalog.video(v) for v in videos_missing]
            for video in targets:
                if video is None:
                    continue
                shard = self.vectors.read_shard(video["id"], video["vectors_token"])
                clip_ids = [c["id"] for c in self.catalog.clips(video["id"])]
                if shard is None or shard["clip_ids"].tolist() != clip_ids or shard["A"].shape[1:] != (dim,):
                    suspect.add(video["id"])
                    continue
                absent = [i for i, cid in enumerate(clip_ids) if cid not in indexed]
                if repair and absent:
                    self.vectors.add(dim, [clip_ids[i] for i in absent], shard["A"][absent])
                    report["index_added"] += len(absent)
            if suspect:
                report["consistent"] = False
                report["stale_videos"] = sorted(suspect)
                if repair and save:
                    self._mark_stale(dim, suspect)
        known = {v["id"] for v in self.catalog.videos("status='ok'")}
        orphans = self.vectors.shard_video_ids() - known
        if orphans:
            report["orphan_shards"] = len(orphans)
            report["consistent"] = False
            if repair and save:
                for video_id in orphans:
                    self.vectors.delete_shard(video_id)
        if repair and save:
            self.vectors.remove_temp_files()
            self.vectors.save()
        return report

    def _mark_stale(self, dim: int, video_ids) -> None:
        for video_id in video_ids:
            clip_ids = [c["id"] for c in self.catalog.clips(video_id)]
            with self.catalog.transaction():
                self.catalog.conn.execute(
                    "UPDATE videos SET status='stale', error=? WHERE id=?",
                    ("vectors missing or damaged; 'vmr index' re-embeds this video", video_id))
                self.catalog.conn.execute("DELETE FROM clips WHERE video_id=?", (video_id,))
            self.vectors.remove(dim, clip_ids)
            self.vectors.delete_shard(video_id)

    # -- numbers ---------------------------------------------------------------------------
    def status(self) -> dict:
        counts = self.catalog.counts()
        info = self.encoder()
        vectors = self.vectors.count(info["dim"]) if info else 0
        stale = self.catalog.conn.execute("SELECT count(*) FROM videos WHERE status='stale'").fetchone()[0]
        return {
            "library": self.directory,
            "videos": counts["videos"],
            "failed": counts["failed"],
            "stale": stale,
            "clips": counts["clips"],
            "vectors": vectors,
            "consistent": vectors == counts["clips"] and stale == 0,
            "duration": round(counts["duration"], 3),
            "searches": counts["searches"],
            "encoder": info["name"] if info else None,
            "embedding_dim": info["dim"] if info else None,
            "clip_seconds": info["clip_seconds"] if info else None,
            "size_bytes": catalog_size(self.directory),
        }

    @staticmethod
    def empty_status(directory: str) -> dict:
        return {"library": directory, "videos": 0, "failed": 0, "stale": 0, "clips": 0, "vectors": 0,
                "consistent": True, "duration": 0.0, "searches": 0, "encoder": None,
                "embedding_dim": None, "clip_seconds": None, "size_bytes": 0}

    def close(self) -> None:
        self.catalog.close()
