"""Dense frame embeddings a search encoded, kept so that no frame is ever encoded twice.

Frame embeddings do not depend on the query: once a search has decoded and
encoded the frame of a video at some time, every later search can reuse it.
They live in their own SQLite file (``frames.db``), never in the catalog, so
the cache can never put the library at risk:

- searches write it beside a running ``vmr index`` (WAL; short transactions;
  a write that cannot get the lock in time is simply skipped);
- a crash leaves nothing half-written (each batch is one transaction);
- every entry carries the vectors token of the video it was computed from: a
  changed video gets a new token, so its old entries never match, and the
  library deletes them whenever it replaces or removes a video;
- a read-only library reads it (if present) and writes nothing;
- deleting ``frames.db`` loses nothing but time;
- it holds at most ``$VMR_FRAME_CACHE_MB`` megabytes (1024 unless set; 0 keeps none): past
  that, the videos a search used longest ago leave it (an exhaustive search of ten hour-long
  videos adds some 150 MB with ViT-B/32, about 1 KB a frame).

Times are kept in whole milliseconds (search decodes on a fixed grid).
"""

from __future__ import annotations

import math
import os
import sqlite3
import time

from .errors import VmrError

FILE_NAME = "frames.db"
VACUUM_OLD_FILE_FROM = 1 << 20  # free bytes in a frames.db made without auto-vacuum that make it rebuilt
LIMIT_VARIABLE = "VMR_FRAME_CACHE_MB"
DEFAULT_LIMIT_MB = 1024
BUSY_TIMEOUT_MS = 2000  # a write waits so long for another writer, then is skipped
KEEP_AFTER_EVICTING = 0.8  # of the limit: room for a few searches before the next eviction


def limit_bytes() -> int:
    """The most the cache may hold: $VMR_FRAME_CACHE_MB megabytes (10^6 bytes, as `vmr status`
    counts them), else DEFAULT_LIMIT_MB; 0 keeps no frames."""
    asked = os.environ.get(LIMIT_VARIABLE, "").strip()
    if not asked:
        return DEFAULT_LIMIT_MB * 10**6
    try:
        megabytes = float(asked)
    except ValueError:
        megabytes = -1.0
    if not (math.isfinite(megabytes) and megabytes >= 0):
        raise VmrError(f"{LIMIT_VARIABLE}={asked}: say a number of megabytes for the frame cache "
                       "(0 keeps no frames)")
    return int(megabytes * 10**6)


class FrameCache:
    def __init__(self, directory: str, readonly: bool = False):
        self.path = os.path.join(directory, FILE_NAME)
        self.readonly = readonly
        self.limit = limit_bytes()
        self._conn = None

    def _connect(self):
        if self._conn is None:
            if self.readonly:
                if not os.path.exists(self.path):
                    return None
                from .catalog import _connect_readonly

                # As the catalog: in a read-only folder, with no -shm left by a writer, only an
                # immutable open can read a WAL database.
                self._conn = _connect_readonly(self.path)
            else:
                self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
                self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect in a new file only
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("CREATE TABLE IF NOT EXISTS frames (video_id INTEGER NOT NULL, "
                                   "token TEXT NOT NULL, t_ms INTEGER NOT NULL, embedding BLOB NOT NULL, "
                                   "PRIMARY KEY (video_id, t_ms))")
                # When a search last used each video's frames (a file made before has none: its
                # videos count as the oldest).
                self._conn.execute("CREATE TABLE IF NOT EXISTS used (video_id INTEGER PRIMARY KEY, "
                                   "at REAL NOT NULL)")
        return self._conn

    def get(self, video_id: int, token: str, times_ms: list[int], dim: int) -> dict:
        """{t_ms: float16 numpy vector} for the times this cache holds for that video version."""
        import numpy as np

        if self.limit == 0:
            return {}  # kept none: a search encodes every frame it looks at
        try:
            conn = self._connect()
            if conn is None:
                return {}
            found = {}
            for at in range(0, len(times_ms), 500):
                part = times_ms[at:at + 500]
                marks = ",".join("?" * len(part))
                for t_ms, blob in conn.execute(
                        f"SELECT t_ms, embedding FROM frames WHERE video_id=? AND token=? AND t_ms IN ({marks})",
                        [video_id, token, *part]):
                    vector = np.frombuffer(blob, dtype=np.float16)
                    if vector.shape == (dim,):
                        found[t_ms] = vector
            if found and not self.readonly:
                try:  # not waited for: beside another writer each get waited out the busy timeout (2 s)
                    conn.execute("PRAGMA busy_timeout=0")
                    conn.execute("INSERT OR REPLACE INTO used VALUES (?, ?)", (video_id, time.time()))
                except sqlite3.Error:
                    pass  # busy beside another writer: the frames were read all the same
                finally:
                    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            return found
        except sqlite3.Error:  # a damaged or busy cache is an empty one
            return {}

    def put(self, video_id: int, token: str, vectors: dict) -> None:
        """Store {t_ms: vector} for that video version; best effort, never an error."""
        import numpy as np

        if self.readonly or not vectors or (self.limit == 0 and not os.path.exists(self.path)):
            return
        rows = [(video_id, token, int(t), np.asarray(v, dtype=np.float16).tobytes()) for t, v in vectors.items()]
        try:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if self.limit:
                    conn.executemany("INSERT OR REPLACE INTO frames VALUES (?, ?, ?, ?)", rows)
                    conn.execute("INSERT OR REPLACE INTO used VALUES (?, ?)", (video_id, time.time()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if _filled(conn) > self.limit:
                self._evict(conn, video_id)
        except sqlite3.Error:
            pass  # disk full, locked by another writer for too long, damaged: search goes on

    def _evict(self, conn, current: int) -> None:
        """Drop whole videos, the one a search used longest ago first (``current`` last), until
        what the entries fill is under KEEP_AFTER_EVICTING of the limit; then shrink the file."""
        order = [video for (video,) in conn.execute(
            "SELECT f.video_id FROM (SELECT DISTINCT video_id FROM frames) f "
            "LEFT JOIN used u ON u.video_id = f.video_id ORDER BY f.video_id = ?, coalesce(u.at, 0)", (current,))]
        conn.execute("BEGIN IMMEDIATE")
        try:
            while order and _filled(conn) > KEEP_AFTER_EVICTING * self.limit:
                video = order.pop(0)
                conn.execute("DELETE FROM frames WHERE video_id=?", (video,))
                conn.execute("DELETE FROM used WHERE video_id=?", (video,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._shrink(conn)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()  # the -wal held the freed pages (busy: later)

    def forget(self, *video_ids: int) -> None:
        """Drop the entries of videos re-indexed or removed (many at once: one commit, one vacuum)."""
        if self.readonly or not video_ids or not os.path.exists(self.path):
            return
        try:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("DELETE FROM frames WHERE video_id=?", [(v,) for v in video_ids])
                conn.executemany("DELETE FROM used WHERE video_id=?", [(v,) for v in video_ids])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._shrink(conn)
        except sqlite3.Error:
            pass  # its entries carry the old token and can never match

    @staticmethod
    def _shrink(conn) -> None:
        """Give the freed pages back: the file only grew, even emptied (execute() would free one
        page only); a file made before auto-vacuum is rebuilt once it holds enough free space."""
        conn.executescript("PRAGMA incremental_vacuum;")
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0:
            pages, size = (conn.execute(f"PRAGMA {name}").fetchone()[0] for name in ("freelist_count", "page_size"))
            if pages * size > VACUUM_OLD_FILE_FROM:
                conn.executescript("PRAGMA auto_vacuum=INCREMENTAL; VACUUM;")

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        return total

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _filled(conn) -> int:
    """Bytes the database's pages in use hold (the -wal's newest included, free pages not)."""
    pages, free, size = (conn.execute(f"PRAGMA {name}").fetchone()[0]
                         for name in ("page_count", "freelist_count", "page_size"))
    return (pages - free) * size
