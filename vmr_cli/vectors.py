"""Vector storage: one safetensors shard per video, one FAISS index over them.

The shards are the truth: each holds a video's clip ids, its Background,
Appearance and Motion index vectors, and the embeddings of the frames the
index encoded (``F``, float16, at times ``F_t``: each clip's first and middle
frame and the video's last), with a token that ties it to the catalog row
that was committed with it.  The stored frames are the search's timeline:
query-independent, so a search pays for the query, not for the library.  The FAISS file (appearance vectors of every
clip, ID-mapped by clip row id) is a cache for the coarse search: written
atomically, checked against the catalog every time it is opened, and repaired
from the shards when they disagree.  A shard that is missing or does not match
its row marks that video for re-embedding; a shard without a row is removed.
Files are trusted only as far as they are checked: a shard whose arrays do not
have the shapes vmr writes counts as damaged, a FAISS file of another index
type as absent, and only names vmr gives shards (``<id>.safetensors``, ASCII
digits, no leading zero) are taken for shards -- anything else is left alone.
"""

from __future__ import annotations

import json
import os
import re
import time

from vmr_models.atomic import atomic_write

from .paths import native

KINDS = ("A", "B", "M")
FRAMES, FRAME_TIMES = "F", "F_t"  # optional: shards written before vmr 0.2 lack them
# A cache this large is mapped from its file, not read (0.37 s to read at 210,000 clips, 430 MB);
# a smaller one is read, so most libraries never depend on a mapping (a file replaced on a
# network share under a mapping can fault).
MAP_FROM_BYTES = 64 << 20
CHECKED_NOTE = "checked.json"  # in shards/: the stat of each shard whose header was last found matching
RECENT_NS = 2_000_000_000  # a shard changed this recently is not noted (a file's times have coarse ticks)
SHARD_NAME = re.compile(r"([1-9][0-9]*)\.safetensors", re.ASCII)  # str.isdigit takes '²' and '٣'


def shard_ids(folder: str) -> set[int]:
    """Video ids of the shards in folder (names vmr writes only; none when the folder is missing)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return set()
    return {int(m.group(1)) for m in map(SHARD_NAME.fullmatch, names) if m}


def _require_readable(path: str) -> None:
    """Raise VectorsUnreadable when the file is there but cannot be opened.  safetensors says
    'No such file or directory' for a file it may not read too, and a shard taken for missing is
    deleted and its video re-embedded: every shard a 'sudo vmr index' wrote, say."""
    from .errors import ANOTHER_USER, VectorsUnreadable, open_problem
    from .paths import printable

    why = open_problem(path)
    if why:
        raise VectorsUnreadable(f"cannot read {printable(path)} ({why}): {ANOTHER_USER} nothing was changed")


def _faiss():
    import faiss  # heavy: imported only when vectors are touched

    return faiss


class VectorStore:
    def __init__(self, directory: str):
        self.directory = directory
        self.shard_dir = os.path.join(directory, "shards")
        self.index_path = os.path.join(directory, "appearance.faiss")
        os.makedirs(self.shard_dir, exist_ok=True)
        self._index = None
        self._mapped = False  # _index reads its vectors from the file (mmap): never changed in place
        self.dirty = False
        self.dim: int | None = None  # the library's embedding size, once it has an encoder

    # -- shards -------------------------------------------------------------------
    def shard_path(self, video_id: int) -> str:
        return os.path.join(self.shard_dir, f"{int(video_id)}.safetensors")

    def write_shard(self, video_id: int, token: str, clip_ids, vectors: dict) -> None:
        import numpy as np
        from safetensors.numpy import save_file

        tensors = {"clip_ids": np.asarray(clip_ids, dtype=np.int64)}
        for kind in KINDS:
            tensors[kind] = np.ascontiguousarray(vectors[kind], dtype=np.float32)
        if FRAMES in vectors:  # cosines from float16 unit vectors are within ~1e-3 of float32
            tensors[FRAMES] = np.ascontiguousarray(vectors[FRAMES], dtype=np.float16)
            tensors[FRAME_TIMES] = np.ascontiguousarray(vectors[FRAME_TIMES], dtype=np.float32)
        atomic_write(self.shard_path(video_id),
                     lambda tmp: save_file(tensors, tmp, metadata={"token": token}))

    def read_shard(self, video_id: int, token: str | None = None) -> dict | None:
        """The shard's arrays, or None when it is missing, unreadable or belongs to another row."""
        from safetensors import safe_open

        path = self.shard_path(video_id)
        try:
            with safe_open(path, framework="numpy") as handle:
                if token is not None and (handle.metadata() or {}).get("token") != token:
                    return None
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception:  # missing, truncated or not safetensors: all mean 'no vectors'
            _require_readable(path)
            return None
        return tensors if _well_formed(tensors, self.dim) else None

    def read_array(self, video_id: int, token: str | None, key: str):
        """One array of the shard (only it is read), or None when the shard is missing, unreadable,
        belongs to another row or lacks it."""
        from safetensors import safe_open

        try:
            with safe_open(self.shard_path(video_id), framework="numpy") as handle:
                if (handle.metadata() or {}).get("token") != token or key not in handle.keys():
                    return None
                return handle.get_tensor(key)
        except Exception:  # missing, truncated or not safetensors
            return None

    def shard_keys(self, video_id: int) -> set[str] | None:
        """The names of the arrays a shard holds, from its header alone; None when it cannot be read."""
        from safetensors import safe_open

        try:
            with safe_open(self.shard_path(video_id), framework="numpy") as handle:
                return set(handle.keys())
        except Exception:  # missing, truncated or not safetensors
            return None

    def shard_matches(self, video_id: int, token: str | None, n_clips: int) -> bool:
        """Whether the shard is there, whole, and the one its row was committed with: only its
        header is read (safetensors checks the file's length against it), not its vectors."""
        from safetensors import safe_open

        path = self.shard_path(video_id)
        try:
            with safe_open(path, framework="numpy") as handle:
                if (handle.metadata() or {}).get("token") != token:
                    return False
                return handle.get_slice("clip_ids").get_shape() == [n_clips]
        except Exception:  # missing, truncated or not safetensors
            _require_readable(path)
            return False

    def unmatched_shards(self, rows) -> list[int]:
        """The ids of rows (video rows: id, vectors_token, n_clips) whose shard does not match
        (shard_matches).  A shard found matching before is not opened again while its inode,
        size, mtime and ctime are the ones noted then (``CHECKED_NOTE``): vmr replaces a shard
        by renaming a new file over it (a new inode), and any write, truncation or rename of a
        file sets its ctime, which no tool can set back.  Every index run read every header:
        0.3 s at 5,000 videos from the page cache, a disk read per video from a cold one
        (bench/noop_index.py)."""
        path = os.path.join(self.shard_dir, CHECKED_NOTE)
        try:
            with open(path) as handle:
                noted = json.load(handle)
        except (OSError, ValueError):
            noted = {}
        noted = noted if isinstance(noted, dict) else {}
        now, unmatched, recent = {}, [], time.time_ns() - RECENT_NS
        for row in rows:
            key = str(row["id"])
            try:
                st = os.stat(self.shard_path(row["id"]))
                seen = [row["vectors_token"], row["n_clips"], st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
            except OSError:
                st = seen = None
            if seen is not None and noted.get(key) == seen:
                now[key] = seen
            elif not self.shard_matches(row["id"], row["vectors_token"], row["n_clips"]):
                unmatched.append(row["id"])
            elif seen is not None and max(st.st_mtime_ns, st.st_ctime_ns) < recent:  # (stat taken before the read)
                now[key] = seen
        if now != noted:
            try:
                atomic_write(path, lambda tmp: _write_json(tmp, now))
            except OSError:  # a note only: every header is read again next time
                pass
        return unmatched

    def delete_shard(self, video_id: int) -> None:
        try:
            os.unlink(self.shard_path(video_id))
        except FileNotFoundError:
            pass

    def remove_temp_files(self) -> int:
        """Delete temp files that a killed writer left (atomic_write's ``.tmp-*``, in the library,
        its shards and its saved index progress, and a migration's backup once an hour old: it
        runs without the lock); only under the writer lock.  A saved state is never one."""
        from .catalog import BACKUP_TEMPORARY
        from .partial import FOLDER
        from .paths import remove_stale

        remove_stale(self.directory, BACKUP_TEMPORARY)
        removed = 0
        for folder in (self.directory, self.shard_dir, os.path.join(self.directory, FOLDER)):
            try:
                names = os.listdir(folder)
            except FileNotFoundError:  # (no saved progress)
                continue
            for name in names:
                if name.startswith(".tmp-"):
                    try:
                        os.unlink(os.path.join(folder, name))
                        removed += 1
                    except OSError:
                        pass
        return removed

    def shard_video_ids(self) -> set[int]:
        return shard_ids(self.shard_dir)

    # -- the FAISS cache ----------------------------------------------------------------
    def index(self, dim: int):
        """The appearance index, loaded on first use (empty if absent or unreadable).

        Past MAP_FROM_BYTES its vectors are mapped from the file, not read (0.01 s instead of
        0.37 s at 210,000 clips): most processes only search it.  add and remove first take an owned copy
        (``_writable``); faiss aborts the process on a change to mapped vectors."""
        if self._index is None:
            faiss = _faiss()
            index, self._mapped = None, False
            if os.path.exists(self.index_path):
                try:
                    flag = getattr(faiss, "IO_FLAG_MMAP_IFC", None)  # faiss >= 1.11
                    with native(self.index_path) as path:
                        if flag is not None and os.path.getsize(self.index_path) >= MAP_FROM_BYTES:
                            try:
                                index, self._mapped = faiss.read_index(path, flag), True
                            except RuntimeError:  # a faiss build that cannot map this file: read it
                                pass
                        if index is None:
                            index = faiss.read_index(path)
                    if not _ours(faiss, index, dim):
                        index, self._mapped = None, False  # another index type or size: rebuilt by the check
                except Exception:  # truncated or corrupt (RuntimeError), absurd sizes (MemoryError)
                    index, self._mapped = None, False
            if index is None:
                index = _empty(faiss, dim)
                self.dirty = True
            self._index = index
        return self._index

    def _writable(self, dim: int):
        """The index, as an owned copy once it was mapped from the file."""
        import numpy as np

        index = self.index(dim)
        if self._mapped:
            faiss = _faiss()
            owned = _empty(faiss, index.d)
            if index.ntotal:
                owned.add_with_ids(index.index.reconstruct_n(0, index.ntotal),
                                   faiss.vector_to_array(index.id_map).astype(np.int64))
            self._index, self._mapped = owned, False
        return self._index

    def reset(self, dim: int) -> None:
        """An empty cache, to be filled again from the shards (its ids cannot be trusted)."""
        faiss = _faiss()
        self._index, self._mapped, self.dirty = _empty(faiss, dim), False, True

    def indexed_ids(self, dim: int):
        import numpy as np

        faiss = _faiss()
        return faiss.vector_to_array(self.index(dim).id_map).astype(np.int64)

    def add(self, dim: int, clip_ids, appearance) -> None:
        import numpy as np

        if len(clip_ids):
            self._writable(dim).add_with_ids(np.ascontiguousarray(appearance, dtype=np.float32),
                                         np.asarray(clip_ids, dtype=np.int64))
            self.dirty = True

    def remove(self, dim: int, clip_ids) -> None:
        import numpy as np

        if len(clip_ids):
            faiss = _faiss()
            self._writable(dim).remove_ids(faiss.IDSelectorBatch(np.asarray(list(clip_ids), dtype=np.int64)))
            self.dirty = True

    def save(self) -> None:
        if self._index is not None and self.dirty:
            faiss = _faiss()
            def write(tmp):
                with native(tmp, write=True) as path:
                    faiss.write_index(self._index, path)

            atomic_write(self.index_path, write)
            st = os.stat(self.index_path)
            note = {"ntotal": int(self._index.ntotal), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
            atomic_write(self.index_path + ".json", lambda tmp: _write_json(tmp, note))
            self.dirty = False

    def count(self, dim: int) -> int:
        """Vectors in the FAISS cache, from its note when that still describes the file (no faiss import)."""
        if self._index is None:
            try:
                with open(self.index_path + ".json") as handle:
                    note = json.load(handle)
                st = os.stat(self.index_path)
                if (note["size"], note["mtime_ns"]) == (st.st_size, st.st_mtime_ns):
                    return int(note["ntotal"])
            except (OSError, ValueError, KeyError):
                pass
        return int(self.index(dim).ntotal)

    def search(self, dim: int, query, k: int, among=None):
        """(scores, clip ids) of the k nearest appearance vectors (``among``: of these clip ids
        only, vmr search --in): exact, at every size.

        An IVF index trained in each search process (vmr did so past 200,000 clips) took 70 s
        at 210,000 clips where the exact search takes 0.07 s, and 1,000,000 clips (about 550
        hours of 2-second clips) search exactly in 0.6 s on 2 cores (bench/coarse_stage.py)."""
        import numpy as np

        index = self.index(dim)
        if index.ntotal == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        k = min(k, index.ntotal)
        params = None
        if among is not None:
            import faiss

            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.asarray(among, dtype=np.int64)))
        scores, ids = index.search(np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), k, params=params)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]


def _write_json(path: str, data: dict) -> None:
    with open(path, "w") as handle:
        json.dump(data, handle)


def _empty(faiss, dim: int):
    """An empty index of the kind vmr writes (see _ours)."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def _ours(faiss, index, dim: int) -> bool:
    """The index vmr writes: exact inner product over dim-sized vectors, mapped by clip id."""
    return (isinstance(index, faiss.IndexIDMap2) and index.d == dim
            and isinstance(faiss.downcast_index(index.index), faiss.IndexFlatIP))


def _well_formed(tensors: dict, dim: int | None) -> bool:
    """The shapes vmr writes: clip ids (n,), A, B, M (n, d) with d the library's, frames F (m, d)
    at times F_t (m,)."""
    try:
        ids = tensors["clip_ids"]
        n = ids.shape[0]
        d = tensors["A"].shape[1] if tensors["A"].ndim == 2 else -1
        if ids.ndim != 1 or ids.dtype.kind not in "iu" or (dim is not None and d != dim):
            return False
        if any(tensors[k].shape != (n, d) or tensors[k].dtype.kind != "f" for k in KINDS):
            return False
        if FRAMES in tensors or FRAME_TIMES in tensors:
            frames, times = tensors[FRAMES], tensors[FRAME_TIMES]
            return (frames.ndim == 2 and frames.shape[1] == d and frames.dtype.kind == "f"
                    and times.shape == (frames.shape[0],) and times.dtype.kind == "f")
        return True
    except (KeyError, IndexError, AttributeError):
        return False
