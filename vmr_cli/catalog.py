"""The SQLite catalog: videos, clips, searches and their results, operations.

One transaction per video keeps an interrupted index run resumable.  The
schema carries an integer version in ``meta``: a newer catalog is refused, an
older one is migrated after a backup copy is made.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time

from .errors import VmrError
from .paths import from_key, to_key

SCHEMA_VERSION = 2

# Named migrations: index i brings a catalog from version i to i + 1.
MIGRATIONS = [
    (
        "initial schema",
        """
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE videos (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            path BLOB NOT NULL UNIQUE,
            root BLOB,
            size INTEGER, mtime_ns INTEGER, fingerprint TEXT,
            duration REAL, fps REAL, width INTEGER, height INTEGER, rotation INTEGER,
            n_clips INTEGER DEFAULT 0,
            status TEXT NOT NULL,           -- 'ok' or 'failed'
            error TEXT,
            model TEXT,
            vectors_token TEXT,             -- ties the vector shard to this row
            indexed_at REAL
        );
        CREATE INDEX videos_fingerprint ON videos (size, fingerprint);
        CREATE TABLE clips (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
            idx INTEGER NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL,
            shot INTEGER, motion REAL
        );
        CREATE INDEX clips_video ON clips (video_id, idx);
        CREATE TABLE searches (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            query TEXT NOT NULL, model TEXT, options TEXT, stats TEXT, created_at REAL
        );
        CREATE TABLE results (
            search_id INTEGER NOT NULL REFERENCES searches(id) ON DELETE CASCADE,
            rank INTEGER NOT NULL, video_id INTEGER, path BLOB NOT NULL,
            start REAL NOT NULL, "end" REAL NOT NULL, score REAL NOT NULL,
            PRIMARY KEY (search_id, rank)
        );
        CREATE TABLE operations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            command TEXT NOT NULL, arguments TEXT, summary TEXT,
            started_at REAL, finished_at REAL
        );
        """,
    ),
    (
        "videos.codec: the stream's codec as ffprobe names it",
        "ALTER TABLE videos ADD COLUMN codec TEXT;",
    ),
]


class Catalog:
    """Typed access to the catalog tables; callers never write SQL."""

    def __init__(self, path: str, readonly: bool = False):
        self.path = path
        try:
            if readonly:
                conn = _connect_readonly(path)
            else:
                conn = sqlite3.connect(path, isolation_level=None, timeout=30)
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as exc:
            raise VmrError(f"cannot open catalog {path}: {exc}") from None
        self.conn = conn
        self.readonly = readonly
        self._db = None
        if not readonly:
            self._migrate()
        else:
            self._check_version(self.schema_version())

    @property
    def db(self):
        """sqlite-utils over the same connection, imported on first use to keep start-up fast."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    # -- schema -----------------------------------------------------------------
    def schema_version(self) -> int:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            if "no such table" in str(exc):
                return 0
            raise VmrError(f"catalog {self.path} is not a vmr catalog: {exc}") from None
        return int(row[0]) if row else 0

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise VmrError(
                f"catalog {self.path} was written by a newer vmr (schema {version}, this vmr knows "
                f"{SCHEMA_VERSION}); upgrade vmr or use another --library"
            )

    def _migrate(self) -> None:
        version = self.schema_version()
        self._check_version(version)
        if version == SCHEMA_VERSION:
            return
        if version > 0:
            backup = f"{self.path}.v{version}.bak"
            self.conn.execute("PRAGMA wal_checkpoint(FULL)")
            shutil.copy2(self.path, backup)
        for number in range(version, SCHEMA_VERSION):
            _name, sql = MIGRATIONS[number]
            with self.transaction():
                # Another process may have migrated since we looked: re-read under the write lock.
                if self.schema_version() != number:
                    continue
                for statement in sql.split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.set_meta("schema_version", str(number + 1))

    def transaction(self):
        return _Transaction(self.conn)

    # -- meta -------------------------------------------------------------------
    def get_meta(self, key: str, default=None):
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))

    # -- videos -----------------------------------------------------------------
    def videos(self, where: str = "1", params=()) -> list[dict]:
        rows = self.db.query(f"SELECT * FROM videos WHERE {where} ORDER BY id", params)
        return [_video(row) for row in rows]

    def video(self, video_id: int) -> dict | None:
        found = self.videos("id = ?", (video_id,))
        return found[0] if found else None

    def video_by_path(self, path: str) -> dict | None:
        found = self.videos("path = ?", (to_key(path),))
        return found[0] if found else None

    def upsert_video(self, row: dict) -> int:
        """Insert or replace the row for row['path']; returns its id (kept when it existed)."""
        row = dict(row, path=to_key(row["path"]))
        if "root" in row and row["root"] is not None:
            row["root"] = to_key(row["root"])
        existing = self.conn.execute("SELECT id FROM videos WHERE path=?", (row["path"],)).fetchone()
        if existing:
            self.db["videos"].update(existing[0], row)
            return existing[0]
        return self.db["videos"].insert(row).last_pk

    def move_video(self, video_id: int, new_path: str, root: str, mtime_ns: int) -> None:
        self.db["videos"].update(video_id, {"path": to_key(new_path), "root": to_key(root),
                                            "mtime_ns": mtime_ns})

    def delete_video(self, video_id: int) -> None:
        self.conn.execute("DELETE FROM clips WHERE video_id=?", (video_id,))
        self.conn.execute("DELETE FROM videos WHERE id=?", (video_id,))

    # -- clips ------------------------------------------------------------------
    def replace_clips(self, video_id: int, clips: list[dict]) -> list[int]:
        """Delete the video's clips and insert new ones; returns the new clip ids in order."""
        self.conn.execute("DELETE FROM clips WHERE video_id=?", (video_id,))
        ids = []
        for clip in clips:
            cur = self.conn.execute(
                'INSERT INTO clips (video_id, idx, start, "end", shot, motion) VALUES (?, ?, ?, ?, ?, ?)',
                (video_id, clip["idx"], clip["start"], clip["end"], clip.get("shot"), clip.get("motion")),
            )
            ids.append(cur.lastrowid)
        return ids

    def clips(self, video_id: int) -> list[dict]:
        return list(self.db.query("SELECT * FROM clips WHERE video_id=? ORDER BY idx", (video_id,)))

    def clip_ids(self) -> set[int]:
        return {row[0] for row in self.conn.execute("SELECT id FROM clips")}

    def clip_video_ids(self, clip_ids) -> dict[int, int]:
        """clip id -> video id, for the given clip ids."""
        ids = [int(i) for i in clip_ids]
        out: dict[int, int] = {}
        for chunk in range(0, len(ids), 500):
            part = ids[chunk:chunk + 500]
            marks = ",".join("?" * len(part))
            for cid, vid in self.conn.execute(f"SELECT id, video_id FROM clips WHERE id IN ({marks})", part):
                out[cid] = vid
        return out

    # -- searches -----------------------------------------------------------------
    def log_search(self, query: str, model: str, options: dict, stats: dict,
                   results: list[dict]) -> int | None:
        """The new search's id; None on a read-only catalog, where nothing is logged."""
        if self.readonly:
            return None
        with self.transaction():
            search_id = self.db["searches"].insert({
                "query": query, "model": model, "options": json.dumps(options),
                "stats": json.dumps(stats), "created_at": time.time(),
            }).last_pk
            for r in results:
                self.conn.execute(
                    'INSERT INTO results (search_id, rank, video_id, path, start, "end", score) '
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (search_id, r["rank"], r.get("video_id"), to_key(r["video"]), r["start"], r["end"], r["score"]),
                )
        return search_id

    def search(self, search_id: int | None = None) -> dict | None:
        """A logged search with its results; the last one when search_id is None."""
        if search_id is None:
            row = self.conn.execute("SELECT max(id) FROM searches").fetchone()
            search_id = row[0] if row else None
            if search_id is None:
                return None
        found = list(self.db.query("SELECT * FROM searches WHERE id=?", (search_id,)))
        if not found:
            return None
        search = dict(found[0])
        search["options"] = json.loads(search["options"] or "{}")
        search["stats"] = json.loads(search["stats"] or "{}")
        search["results"] = [
            dict(r, video=from_key(r.pop("path")))
            for r in self.db.query("SELECT * FROM results WHERE search_id=? ORDER BY rank", (search_id,))
        ]
        return search

    # -- operations log -------------------------------------------------------------
    def log_operation(self, command: str, arguments: dict, summary: dict, started_at: float) -> None:
        if self.readonly:
            return
        with self.transaction():
            self.db["operations"].insert({
                "command": command, "arguments": json.dumps(arguments, default=str),
                "summary": json.dumps(summary, default=str),
                "started_at": started_at, "finished_at": time.time(),
            })

    # -- numbers for status -----------------------------------------------------------
    def counts(self) -> dict:
        one = lambda sql: self.conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "videos": one("SELECT count(*) FROM videos WHERE status='ok'"),
            "failed": one("SELECT count(*) FROM videos WHERE status='failed'"),
            "clips": one("SELECT count(*) FROM clips"),
            "duration": one("SELECT coalesce(sum(duration), 0) FROM videos WHERE status='ok'"),
            "searches": one("SELECT count(*) FROM searches"),
        }

    def close(self) -> None:
        self.conn.close()


def _connect_readonly(path: str) -> sqlite3.Connection:
    """Read-only: a WAL catalog needs its -shm file, which a read-only folder cannot get,
    so such a folder is opened as immutable (nothing can write it meanwhile)."""
    quoted = _uri_path(path)
    conn = sqlite3.connect(f"file:{quoted}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
    return sqlite3.connect(f"file:{quoted}?mode=ro&immutable=1", uri=True, isolation_level=None)


def _uri_path(path: str) -> str:
    from urllib.parse import quote

    return quote(os.fsencode(os.path.abspath(path)), safe="/")


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (KeyboardInterrupt too)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
        return False


def _video(row: dict) -> dict:
    row = dict(row)
    row["path"] = from_key(row["path"])
    row["root"] = from_key(row["root"]) if row.get("root") is not None else None
    return row


def catalog_size(directory: str) -> int:
    """Bytes on disk under the library directory."""
    total = 0
    for base, _dirs, files in os.walk(directory):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(base, name))
            except OSError:
                pass
    return total
