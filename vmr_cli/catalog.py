"""The SQLite catalog: videos, clips, searches and their results, operations.

All of vmr's SQL lives here: callers get methods named for what they do and
never see the connection.  One transaction per video keeps an interrupted
index run resumable.  The schema carries an integer version in ``meta``: a
newer catalog is refused; an older one is migrated, one named step at a
time, each in its own transaction, after a backup copy is made.

A catalog can be damaged (a bad sector, a copy cut short): ``integrity_problems``
runs SQLite's integrity check, and ``salvage`` copies every row that can still
be read into a new catalog that takes the old one's place, keeping the damaged
file beside it.  Any command that meets a damaged page says so in one line and
names ``vmr status --check`` (errors.storage_error).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import suppress

from .errors import NotLogged, VmrError, catalog_error, first_line, no_space_at
from .paths import from_key, printable, to_key


# -- migrations: step i brings a catalog from version i to i + 1 -----------------------------
def _initial_schema(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("""
        CREATE TABLE videos (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            path BLOB NOT NULL UNIQUE,
            root BLOB,
            size INTEGER, mtime_ns INTEGER, fingerprint TEXT,
            duration REAL, fps REAL, width INTEGER, height INTEGER, rotation INTEGER,
            n_clips INTEGER DEFAULT 0,
            status TEXT NOT NULL,           -- 'ok', 'failed' or 'stale'
            error TEXT,
            model TEXT,
            vectors_token TEXT,             -- ties the vector shard to this row
            indexed_at REAL
        )""")
    conn.execute("CREATE INDEX videos_fingerprint ON videos (size, fingerprint)")
    conn.execute("""
        CREATE TABLE clips (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
            idx INTEGER NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL,
            shot INTEGER, motion REAL
        )""")
    conn.execute("CREATE INDEX clips_video ON clips (video_id, idx)")
    conn.execute("""
        CREATE TABLE searches (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            query TEXT NOT NULL, model TEXT, options TEXT, stats TEXT, created_at REAL
        )""")
    conn.execute("""
        CREATE TABLE results (
            search_id INTEGER NOT NULL REFERENCES searches(id) ON DELETE CASCADE,
            rank INTEGER NOT NULL, video_id INTEGER, path BLOB NOT NULL,
            start REAL NOT NULL, "end" REAL NOT NULL, score REAL NOT NULL,
            PRIMARY KEY (search_id, rank)
        )""")
    conn.execute("""
        CREATE TABLE operations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            command TEXT NOT NULL, arguments TEXT, summary TEXT,
            started_at REAL, finished_at REAL
        )""")


def _videos_codec(conn: sqlite3.Connection) -> None:
    """The stream's codec as ffprobe names it: MPEG-1/2 is decoded sequentially."""
    conn.execute("ALTER TABLE videos ADD COLUMN codec TEXT")


def _videos_failed_with(conn: sqlite3.Connection) -> None:
    """What a failed file failed with (vmr, decoder and ffmpeg versions): it is tried again
    when one of them changes, not only when the file does.  And how many frames of an indexed
    file could not be decoded (a damaged stream indexed with concealment)."""
    have = _video_columns(conn)
    if "failed_with" not in have:
        conn.execute("ALTER TABLE videos ADD COLUMN failed_with TEXT")
    if "bad_frames" not in have:
        conn.execute("ALTER TABLE videos ADD COLUMN bad_frames INTEGER DEFAULT 0")


CATALOG_FILE = "catalog.db"  # in the library folder; its WAL, backups and damaged copies are named after it


def catalog_in(directory: str) -> str:
    """The path of the catalog of the library in ``directory``."""
    return os.path.join(directory, CATALOG_FILE)


TRANSPORT_STREAM_NAMES = (".ts", ".m2ts", ".mts", ".m2t", ".tp", ".trp")
READ_AGAIN_MTIME = -1  # videos.mtime_ns of a file migration 4 marked to be read again (no file has it)


def _transport_streams_read_again(conn: sqlite3.Connection) -> None:
    """Transport streams (.ts, .m2ts/.mts) indexed before vmr decoded them with PyAV hold the
    frames of the wrong times (torchcodec returned the next key frame).  Their recorded time and
    fingerprint are cleared, so the next 'vmr index' that sees them reads them again, as it does
    a changed file; until then they are searched as they were (search, show and export say so,
    not that the file changed: see ``misread_by_older_vmr``).  Known by name: the files are not
    opened here (a drive that is not mounted, a share that hangs, under the catalog's lock)."""
    from .decode import SEQUENTIAL_ONLY

    rows = conn.execute("SELECT id, path, codec FROM videos WHERE status='ok'").fetchall()
    again = [(row[0],) for row in rows if row[2] not in SEQUENTIAL_ONLY
             and os.path.splitext(bytes(row[1]))[1].lower().decode("ascii", "replace") in TRANSPORT_STREAM_NAMES]
    conn.executemany(f"UPDATE videos SET mtime_ns={READ_AGAIN_MTIME}, fingerprint=NULL WHERE id=?", again)


def _videos_transfer(conn: sqlite3.Connection) -> None:
    """The colour transfer of an indexed video where it is HDR's (PQ, HLG), '' where it is not.
    Rows from before hold NULL: a vmr before 2026-12-01 did not tone-map HDR, so such a video may
    be embedded grey and washed out; the next 'vmr index' opens each unchanged one once to tell
    (indexer.py, _embedded_by_an_older_vmr), indexes again the HDR ones whose stored frames
    differ from what it embeds now, and records the rest.  Not opened here."""
    if "transfer" not in _video_columns(conn):
        conn.execute("ALTER TABLE videos ADD COLUMN transfer TEXT")


def _video_columns(conn: sqlite3.Connection) -> set[str]:
    """The columns the videos table has (a migration run twice, a read-only older catalog)."""
    return {row[1] for row in conn.execute("PRAGMA table_info(videos)")}


def misread_by_older_vmr(row: dict, size: int) -> bool:
    """Whether the video row is a transport stream migration 4 marked to be read again whose file
    (of ``size`` bytes now) is as it was: its moments may be off, but the file did not change."""
    return row.get("mtime_ns") == READ_AGAIN_MTIME and row.get("size") == size


MISREAD_BY_OLDER_VMR = ("indexed by an older vmr that read transport streams at wrong times, so its "
                        "moments may be off until 'vmr index' reads it again")


MIGRATIONS = [
    ("initial schema", _initial_schema),
    ("videos.codec", _videos_codec),
    ("videos.failed_with", _videos_failed_with),
    ("transport streams read again", _transport_streams_read_again),
    ("videos.transfer", _videos_transfer),
]
SCHEMA_VERSION = len(MIGRATIONS)


MIGRATING = "upgrading the catalog"  # what a migration's holder of the writer lock says it does
MIGRATION_WAIT = 2.0  # seconds a migration waits for the writer lock held by a process that says otherwise
BACKUP_TEMPORARY = ".vmr-backup-"  # a migration's backup being written (stale ones: remove_temp_files)


def _newer(path: str, version: int) -> str:
    return (f"catalog {path} was written by a newer vmr (schema {version}, this vmr knows {SCHEMA_VERSION}); "
            "upgrade vmr or use another --library")


class _MigratedMeanwhile(Exception):
    """The catalog another process migrated while this one was backing it up."""


def _operation(row) -> dict:
    """A logged operation's row, its arguments and summary decoded from JSON."""
    return dict(row, arguments=json.loads(row["arguments"] or "{}"), summary=json.loads(row["summary"] or "{}"))


def _under(path: str) -> tuple[str, tuple]:
    """(WHERE clause, its parameters) of the video rows at path or inside it, by the path's bytes:
    a range of the path column's index; every row for the root folder."""
    key = to_key(path).rstrip(b"/")
    if not key:  # the root folder holds everything
        return "1", ()
    return "path=? OR (path>=? AND path<?)", (key, key + b"/", key + b"0")  # b'0' is the byte after b'/'


class Catalog:
    """Typed access to the catalog tables; callers never write SQL."""

    def __init__(self, path: str, readonly: bool = False, read_when_full: bool = False,
                 locked: bool = False):
        """``read_when_full``: on a full disk, where a writable WAL catalog cannot even be opened
        (its index file cannot be created), open it read-only instead (``full`` says why); a
        search then still answers, unlogged.  ``locked``: the caller holds the writer lock of the
        catalog's folder (an old catalog is migrated only under it: ``_migrate``)."""
        self.path = path
        self._locked = locked
        self.full = None
        try:
            if readonly:
                conn = _connect_readonly(path)
            else:
                conn = sqlite3.connect(path, isolation_level=None, timeout=30)
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as exc:
            error = catalog_error(exc, path)
            if readonly or not read_when_full or not no_space_at(exc, os.path.dirname(os.path.abspath(path))):
                raise error from None
            conn, readonly, self.full = _connect_readonly(path), True, str(error)
        conn.row_factory = sqlite3.Row
        self._conn = conn
        self._table_writer = None
        self.readonly = readonly
        if not readonly:
            self._migrate()
        else:
            self._check_version(self.schema_version())

    # -- schema -----------------------------------------------------------------
    def schema_version(self) -> int:
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            if "no such table" in str(exc):
                return 0
            raise catalog_error(exc, self.path) from None
        return int(row[0]) if row else 0

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise VmrError(_newer(self.path, version))

    def _migrate(self) -> None:
        """An older catalog is migrated under the writer lock of its folder (the library's), which
        every vmr's 'vmr index' holds, older ones too: migrated while an older vmr indexed, the
        catalog took a schema that process does not know, and the rows it wrote after escaped
        the migration.  Refused while another process holds the lock; waited for while it says
        it is migrating (two new commands opening an old catalog at once).  A new catalog (schema
        0: no other vmr knows it yet) is made without it."""
        version = self.schema_version()
        self._check_version(version)
        if version == SCHEMA_VERSION:
            return
        if version == 0 or self._locked:
            self._migrate_from(version)
            return
        from .lock import writer_lock

        directory = os.path.dirname(os.path.abspath(self.path))
        busy = (f"another vmr (perhaps an older one) is writing the library {printable(directory)}, whose "
                f"catalog this vmr must upgrade first (schema {version} to {SCHEMA_VERSION}); run the command "
                "again when it ends")
        # Another new vmr migrating it meanwhile ends the wait: its command may take the lock back
        # at once for its own work (forget, index), which a search never needs.
        with writer_lock(directory, MIGRATING, busy=busy, wait=MIGRATION_WAIT, wait_while=MIGRATING,
                         unless=lambda: self.schema_version() == SCHEMA_VERSION) as held:
            if held:
                version = self.schema_version()  # another process may have migrated it while we waited
                self._check_version(version)
                self._migrate_from(version)

    def _migrate_from(self, version: int) -> None:
        if version == SCHEMA_VERSION:
            return
        if version > 0:
            self._back_up(version)
        for number in range(version, SCHEMA_VERSION):
            _name, step = MIGRATIONS[number]
            with self.transaction():
                # Another process may have migrated since we looked: re-read under the write lock.
                if self.schema_version() != number:
                    continue
                step(self._conn)
                self.set_meta("schema_version", number + 1)

    def _back_up(self, version: int) -> None:
        """CATALOG.vN.bak: the catalog as schema N had it, before it is migrated.  Copied through
        SQLite (one consistent snapshot, the WAL included) into a temporary file that replaces
        the backup only if it still holds schema N: another process migrating meanwhile (two
        commands started at once on an old catalog, or one holding the writer lock already, as
        'vmr status --check' does) had put the migrated catalog in the backup."""
        from vmr_models.atomic import atomic_write

        def write(tmp):
            target = sqlite3.connect(tmp)
            try:
                target.execute("PRAGMA journal_mode=OFF")  # a throwaway until renamed: no -journal left
                self._conn.backup(target)
                found = target.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            finally:
                target.close()
            if found is None or int(found[0]) != version:
                raise _MigratedMeanwhile()

        try:
            # The catalog's own mode (it logs every query: a private catalog's backup stays private);
            # a prefix of its own: a writer's remove_temp_files() takes every '.tmp-' file (a
            # backup is made under the writer lock now, but by any command, as it opens the library).
            atomic_write(f"{self.path}.v{version}.bak", write, prefix=BACKUP_TEMPORARY, like=self.path)
        except _MigratedMeanwhile:
            pass  # the other process made the backup from schema N

    def _tables(self):
        """sqlite-utils over the same connection, for writes of whole rows (dicts); imported
        on first write so that read-only commands start fast."""
        if self._table_writer is None:
            import sqlite_utils

            self._table_writer = sqlite_utils.Database(self._conn)
        return self._table_writer

    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT around a block of the methods below."""
        return _Transaction(self._conn)

    # -- meta -------------------------------------------------------------------
    def get_meta(self, key: str, default=None):
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))

    def delete_meta(self, keys: list[str]) -> None:
        self._conn.executemany("DELETE FROM meta WHERE key=?", [(key,) for key in keys])

    def try_set_meta(self, values: dict) -> bool:
        """Write meta values that only save work later (a cache); False, and no error, when the
        catalog cannot take them now (read-only, busy, disk full)."""
        if self.readonly:
            return False
        try:
            with self.transaction():
                for key, value in values.items():
                    self.set_meta(key, value)
        except sqlite3.Error:
            return False
        return True

    # -- videos -----------------------------------------------------------------
    def videos(self, status: str | None = None) -> list[dict]:
        """Every video row (paths as str), or those with the given status, in id order."""
        if status is None:
            rows = self._conn.execute("SELECT * FROM videos ORDER BY id")
        else:
            rows = self._conn.execute("SELECT * FROM videos WHERE status=? ORDER BY id", (status,))
        return [_video(row) for row in rows]

    def video_ids(self, status: str = "ok") -> set[int]:
        """The ids of the videos with that status: what a check needs, without building every row
        (0.17 s a call at 18,000 videos)."""
        return {row[0] for row in self._conn.execute("SELECT id FROM videos WHERE status=?", (status,))}

    def video(self, video_id: int) -> dict | None:
        row = self._conn.execute("SELECT * FROM videos WHERE id=?", (int(video_id),)).fetchone()
        return _video(row) if row else None

    def video_by_path(self, path: str) -> dict | None:
        row = self._conn.execute("SELECT * FROM videos WHERE path=?", (to_key(path),)).fetchone()
        return _video(row) if row else None

    def videos_with_print(self, size: int, fingerprint: str) -> list[dict]:
        """The indexed ('ok') videos of that size and fingerprint, in id order: copies of one file."""
        rows = self._conn.execute("SELECT * FROM videos WHERE size=? AND fingerprint=? AND status='ok' ORDER BY id",
                                  (size, fingerprint))
        return [_video(row) for row in rows]

    def videos_under(self, path: str) -> list[dict]:
        """The rows of path itself and of everything inside it (by the path's bytes), in id order."""
        where, params = _under(path)
        return [_video(row) for row in self._conn.execute(f"SELECT * FROM videos WHERE {where} ORDER BY id", params)]

    def holds_under(self, path: str) -> bool:
        """Whether a row is path itself or inside it (videos_under's rows, none read)."""
        where, params = _under(path)
        return self._conn.execute(f"SELECT 1 FROM videos WHERE {where} LIMIT 1", params).fetchone() is not None

    def roots(self) -> list[str]:
        """The files and folders that index runs were given, as recorded with their videos; for a
        failed file recorded without its root (by vmr before 2026-12-01), its folder."""
        rows = self._conn.execute("SELECT DISTINCT root FROM videos WHERE root IS NOT NULL")
        found = {from_key(row[0]) for row in rows}
        rows = self._conn.execute("SELECT path FROM videos WHERE root IS NULL AND status='failed'")
        return sorted(found | {os.path.dirname(from_key(row[0])) for row in rows})

    def upsert_video(self, row: dict) -> int:
        """Insert or update the row for row['path']; returns its id (kept when it existed)."""
        row = dict(row, path=to_key(row["path"]))
        if row.get("root") is not None:
            row["root"] = to_key(row["root"])
        existing = self._conn.execute("SELECT id FROM videos WHERE path=?", (row["path"],)).fetchone()
        if existing:
            self._tables()["videos"].update(existing[0], row)
            return existing[0]
        return self._tables()["videos"].insert(row).last_pk

    def move_video(self, video_id: int, new_path: str, root: str, mtime_ns: int) -> None:
        self._conn.execute("UPDATE videos SET path=?, root=?, mtime_ns=? WHERE id=?",
                           (to_key(new_path), to_key(root), mtime_ns, video_id))

    def record_transfers(self, transfers: dict[int, str]) -> None:
        """video id -> its colour transfer (schema 5's column), for videos indexed before it."""
        self._conn.executemany("UPDATE videos SET transfer=? WHERE id=?",
                               [(transfer, video_id) for video_id, transfer in transfers.items()])

    def delete_video(self, video_id: int) -> None:
        self._conn.execute("DELETE FROM clips WHERE video_id=?", (video_id,))
        self._conn.execute("DELETE FROM videos WHERE id=?", (video_id,))

    def mark_stale(self, video_id: int, reason: str) -> None:
        """The video keeps its row but loses its clips; the next index run re-embeds it."""
        self._conn.execute("UPDATE videos SET status='stale', error=? WHERE id=?", (reason, video_id))
        self._conn.execute("DELETE FROM clips WHERE video_id=?", (video_id,))

    # -- clips ------------------------------------------------------------------
    def replace_clips(self, video_id: int, clips: list[dict]) -> list[int]:
        """Delete the video's clips and insert new ones; returns the new clip ids in order."""
        self._conn.execute("DELETE FROM clips WHERE video_id=?", (video_id,))
        ids = []
        for clip in clips:
            cur = self._conn.execute(
                'INSERT INTO clips (video_id, idx, start, "end", shot, motion) VALUES (?, ?, ?, ?, ?, ?)',
                (video_id, clip["idx"], clip["start"], clip["end"], clip.get("shot"), clip.get("motion")),
            )
            ids.append(cur.lastrowid)
        return ids

    def clips(self, video_id: int) -> list[dict]:
        rows = self._conn.execute("SELECT * FROM clips WHERE video_id=? ORDER BY idx", (video_id,))
        return [dict(row) for row in rows]

    def clip_ids_of(self, video_id: int) -> list[int]:
        return [row[0] for row in self._conn.execute(
            "SELECT id FROM clips WHERE video_id=? ORDER BY idx", (video_id,))]

    def clip_ids_of_videos(self, video_ids) -> list[int]:
        """The clip ids of these videos (many at once)."""
        ids, out = [int(i) for i in video_ids], []
        for chunk in range(0, len(ids), 500):
            part = ids[chunk:chunk + 500]
            out += [row[0] for row in self._conn.execute(
                f"SELECT id FROM clips WHERE video_id IN ({','.join('?' * len(part))})", part)]
        return out

    def clip_ids(self) -> set[int]:
        return {row[0] for row in self._conn.execute("SELECT id FROM clips")}

    def clip_video_ids(self, clip_ids) -> dict[int, int]:
        """clip id -> video id, for the given clip ids."""
        ids = [int(i) for i in clip_ids]
        out: dict[int, int] = {}
        for chunk in range(0, len(ids), 500):
            part = ids[chunk:chunk + 500]
            marks = ",".join("?" * len(part))
            for cid, vid in self._conn.execute(f"SELECT id, video_id FROM clips WHERE id IN ({marks})", part):
                out[cid] = vid
        return out

    # -- searches -----------------------------------------------------------------
    def log_search(self, query: str, model: str, options: dict, stats: dict,
                   results: list[dict]) -> int | None:
        """The new search's id; None on a read-only catalog, where nothing is logged.  NotLogged when
        the catalog cannot take it (disk full, busy, damaged): the search itself stands."""
        library = os.path.dirname(os.path.abspath(self.path))
        full = f"no space left on the device of library {printable(library)}"
        if self.full:
            raise NotLogged(_unlogged(full))
        if self.readonly:
            return None
        try:
            return self._log_search(query, model, options, stats, results)
        except sqlite3.Error as exc:
            reason = full if no_space_at(exc, library) else f"the catalog {printable(self.path)}: {first_line(exc)}"
            raise NotLogged(_unlogged(reason)) from None

    def _log_search(self, query: str, model: str, options: dict, stats: dict, results: list[dict]) -> int:
        # Each result's copies, as recorded now (path, size, mtime_ns, row id): export and play use one still
        # as it was when the shown file is gone or changed since (kept in stats: no new column).
        copies = {str(r["rank"]): [[path, row["size"], row["mtime_ns"], row["id"]] for path in r.get("copies", ())
                                   if (row := self.video_by_path(path)) is not None]
                  for r in results if r.get("copies")}
        with self.transaction():
            search_id = self._tables()["searches"].insert({
                "query": query, "model": model, "options": json.dumps(options),
                "stats": json.dumps(dict(stats, **{LOGGED_COPIES: copies}) if copies else stats),
                "created_at": time.time(),
            }).last_pk
            for r in results:
                self._conn.execute(
                    'INSERT INTO results (search_id, rank, video_id, path, start, "end", score) '
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (search_id, r["rank"], r.get("video_id"), to_key(r["video"]), r["start"], r["end"], r["score"]),
                )
        return search_id

    def search(self, search_id: int | None = None) -> dict | None:
        """A logged search with its results; the last one when search_id is None."""
        if search_id is not None and not -2**63 <= search_id < 2**63:
            return None  # no row can have an id SQLite cannot even hold
        if search_id is None:
            search_id = self._conn.execute("SELECT max(id) FROM searches").fetchone()[0]
            if search_id is None:
                return None
        row = self._conn.execute("SELECT * FROM searches WHERE id=?", (search_id,)).fetchone()
        if row is None:
            return None
        search = dict(row)
        search["options"] = json.loads(search["options"] or "{}")
        search["stats"] = json.loads(search["stats"] or "{}")
        copies = search["stats"].pop(LOGGED_COPIES, {})  # (none in a search logged before 2026-12-02)
        rows = self._conn.execute("SELECT * FROM results WHERE search_id=? ORDER BY rank", (search_id,))
        search["results"] = [dict(_result(r), logged_copies=copies.get(str(r["rank"]), [])) for r in rows]
        return search

    def logged_moments(self, up_to: int | None = None):
        """(path, start, end) of every logged result, each once; with ``up_to``, only those of the
        searches up to that id (read through the results' key, not the whole table)."""
        if up_to is None:
            rows = self._conn.execute('SELECT DISTINCT path, start, "end" FROM results')
        else:
            rows = self._conn.execute('SELECT DISTINCT path, start, "end" FROM results WHERE search_id <= ?',
                                      (int(up_to),))
        for path, start, end in rows:
            yield from_key(path), start, end

    def last_search_by(self, when: float) -> int:
        """The id of the last search logged at or before ``when`` (seconds since 1970; 0 when none
        was).  Searches are logged in the order of their times, so the ids are bisected: some 17
        rows read for a year of 50,000 searches, where a scan read the whole table (its options and
        stats, 34 MB).  Only a clock set back between searches can move the answer, among the
        searches logged around that change."""
        low, high = self._conn.execute("SELECT min(id), max(id) FROM searches").fetchone()
        found = 0
        while low is not None and low <= high:
            middle = (low + high) // 2
            search_id, created_at = self._conn.execute(
                "SELECT id, created_at FROM searches WHERE id >= ? ORDER BY id LIMIT 1", (middle,)).fetchone()
            if created_at is None or created_at <= when:
                found, low = search_id, search_id + 1
            else:
                high = middle - 1
        return found

    def searches(self, limit: int | None = None) -> list[dict]:
        """Logged searches, newest first: id, query, created_at, the number of results and the
        paths it was limited to (``within``, vmr search --in).  A limit past SQLite's 64-bit
        integers (which it cannot bind) is more than any log holds: all."""
        sql = ("SELECT id, query, created_at, (SELECT count(*) FROM results WHERE search_id=searches.id) "
               "AS n_results, options FROM searches ORDER BY id DESC")
        if limit and limit < 2**63:
            rows = self._conn.execute(sql + " LIMIT ?", (limit,))
        else:
            rows = self._conn.execute(sql)
        return [dict({k: row[k] for k in row.keys() if k != "options"}, within=_within(row["options"]))
                for row in rows]

    def results_follow(self, old_id: int, new_id: int) -> None:
        """Logged results of video row old_id name new_id: the same file, embedded again under a
        new id (Library.put_video), still shows what its searches found at their times."""
        self._conn.execute("UPDATE results SET video_id=? WHERE video_id=?", (new_id, old_id))

    def forget_searches(self, keep: int) -> int:
        """Drop every logged search but the newest ``keep``, with their results, in one transaction;
        how many went.  Their ids are never handed out again (AUTOINCREMENT keeps the highest)."""
        with self.transaction():
            row = self._conn.execute("SELECT id FROM searches ORDER BY id DESC LIMIT 1 OFFSET ?",
                                     (int(keep),)).fetchone()
            if row is None:
                return 0
            self._conn.execute("DELETE FROM results WHERE search_id <= ?", (row[0],))  # by their key
            return self._conn.execute("DELETE FROM searches WHERE id <= ?", (row[0],)).rowcount

    def compact(self) -> bool:
        """The catalog's free pages given back to the disk (VACUUM, then its WAL emptied): a
        catalog never shrinks by itself.  False where SQLite could not (busy, a full disk)."""
        try:
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error:
            return False
        return True

    # -- operations log -------------------------------------------------------------
    def log_operation(self, command: str, arguments: dict, summary: dict, started_at: float,
                      operation_id: int | None = None) -> int | None:
        """Log an operation; with ``operation_id``, that operation's summary is replaced (an export
        logs each cut as it lands).  Returns its id (None for a read-only library)."""
        if self.readonly:
            return None
        with self.transaction():
            if operation_id is not None:
                self._conn.execute("UPDATE operations SET summary=?, finished_at=? WHERE id=?",
                                   (json.dumps(summary, default=str), time.time(), operation_id))
                return operation_id
            return self._tables()["operations"].insert({
                "command": command, "arguments": json.dumps(arguments, default=str),
                "summary": json.dumps(summary, default=str),
                "started_at": started_at, "finished_at": time.time(),
            }).last_pk

    def last_operation(self) -> dict | None:
        """The operation logged last, decoded as ``operations`` decodes them (None: none yet)."""
        row = self._conn.execute("SELECT * FROM operations ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else _operation(row)

    def operations(self, command: str | None = None, search_id: int | None = None) -> list[dict]:
        """Logged operations (oldest first), with arguments and summary decoded; with ``search_id``,
        only those whose summary names that search (an export's), picked out by SQLite: decoding
        every export of a year in Python cost each 'vmr export' 0.1 s at 5,000 of them."""
        if command is None:
            rows = self._conn.execute("SELECT * FROM operations ORDER BY id")
        elif search_id is None:
            rows = self._conn.execute("SELECT * FROM operations WHERE command=? ORDER BY id", (command,))
        else:
            try:
                rows = self._conn.execute(
                    "SELECT * FROM operations WHERE command=? AND json_extract(summary, '$.search_id')=? "
                    "ORDER BY id", (command, int(search_id))).fetchall()
            except sqlite3.OperationalError as exc:  # an SQLite built without its JSON functions
                if "json_extract" not in str(exc):
                    raise
                return [op for op in self.operations(command) if op["summary"].get("search_id") == search_id]
        return [_operation(row) for row in rows]

    # -- numbers for status -----------------------------------------------------------
    def counts(self) -> dict:
        one = lambda sql: self._conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "videos": one("SELECT count(*) FROM videos WHERE status='ok'"),
            "failed": one("SELECT count(*) FROM videos WHERE status='failed'"),
            "stale": one("SELECT count(*) FROM videos WHERE status='stale'"),
            "clips": one("SELECT count(*) FROM clips"),
            "duration": one("SELECT coalesce(sum(duration), 0.0) FROM videos WHERE status='ok'"),
            "searches": one("SELECT count(*) FROM searches"),
            # indexed by a vmr before schema 5: the next 'vmr index' looks at each once (a read-only
            # catalog of an older schema, not migrated, holds only such videos)
            "unchecked": one("SELECT count(*) FROM videos WHERE status='ok' AND transfer IS NULL")
            if "transfer" in _video_columns(self._conn)
            else one("SELECT count(*) FROM videos WHERE status='ok'"),
        }

    def close(self) -> None:
        self._conn.close()


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
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error:  # disk full at commit: leave no transaction open behind the error
                self._rollback()
                raise
        else:
            self._rollback()
        return False

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite rolled back already (it may, on a full disk)


def _unlogged(reason: str) -> str:
    return f"this search was not logged: {reason}; its results cannot be exported by rank"


def _video(row) -> dict:
    row = dict(row)
    row["path"] = from_key(row["path"])
    row["root"] = from_key(row["root"]) if row.get("root") is not None else None
    return row


def _within(options) -> list[str]:
    """The --in paths of a logged search's options ([] for one of the whole library)."""
    try:
        within = json.loads(options or "{}").get("within") or []
    except (ValueError, AttributeError):
        return []
    return [str(p) for p in within] if isinstance(within, list) else []


LOGGED_COPIES = "copies_of_results"  # a logged search's stats: {rank: [[path, size, mtime_ns, id], ...]}


def _result(row) -> dict:
    result = dict(row)
    result["video"] = from_key(result.pop("path"))
    return result


def folder_size(directory: str) -> int:
    """Bytes on disk under the library directory."""
    total = 0
    for base, _dirs, files in os.walk(directory):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(base, name))
            except OSError:
                pass
    return total


# -- a damaged catalog ---------------------------------------------------------------------------
def integrity_problems(path: str, limit: int = 10) -> list[str]:
    """What SQLite's integrity check finds wrong with the catalog at path ([] when it is sound)."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            rows = conn.execute(f"PRAGMA integrity_check({int(limit)})").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if not any(words in str(exc).lower() for words in ("malformed", "not a database")):
            raise catalog_error(exc, path) from None  # a full disk or a lock is not damage
        return [first_line(exc)]
    lines = (line.strip() for row in rows for line in str(row[0]).splitlines())
    return [line for line in lines if line and line != "ok" and not line.startswith("***")]


SALVAGE_STEP = 256  # rows copied at once; the size of a range of rowids read where a copy broke off


def salvage(path: str, why: str = "no video row can be read") -> dict:
    """Copy every row that can still be read from the damaged catalog at path into a new catalog
    that takes its place; the damaged file is kept as ``catalog.db.damaged`` (its WAL with it).

    Rows are copied table by table; where a table cannot be read whole, it is
    read in ranges of rowids, and a range that fails row by row, so one bad
    page loses only the rows on it.  Clips and results whose video or search
    was lost are dropped; the library's check then finds videos whose clips
    are gone and marks them for re-embedding.  The rows go into a catalog of the
    damaged one's schema, which is then migrated as it would have been.  Returns,
    per table, rows kept (and the rowid range looked at), and where the damaged
    file went.

    The salvaged catalog takes the damaged one's place through SQLite (its backup
    API, one transaction), not by renaming files: a kill at any point leaves
    either the damaged catalog with its WAL or the salvaged one, and a process
    that has the catalog open (a search) reads and logs into the salvaged one.
    """
    new_path = path + ".salvage"
    _remove_catalog_files(new_path)  # a salvage cut short before it replaced anything
    try:
        old = sqlite3.connect(f"file:{_uri_path(path)}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error:
        old = None
    try:
        for _attempt in range(SALVAGE_ATTEMPTS):
            seen = _data_version(old)
            kept = _salvage_into(new_path, old, path)
            if not kept.get("videos", {}).get("complete") and not kept.get("videos", {}).get("kept"):
                raise VmrError(f"the catalog {printable(path)} is damaged beyond salvage ({why}); "
                               f"restore it from a backup, or start a new library (another --library DIR, or "
                               f"delete {printable(os.path.dirname(path))})")
            damaged = _free_name(path + ".damaged")
            try:
                _replace_contents(new_path, path, damaged, lambda: _data_version(old) == seen)
            except _ChangedMeanwhile:
                continue  # another process committed (a search logged) since the rows were read
            return {"tables": {name: info["kept"] for name, info in kept.items()}, "kept_as": damaged}
        raise VmrError(f"the catalog {printable(path)} kept changing while it was salvaged (searches logging "
                       "into it?); run 'vmr status --check' again")
    finally:
        if old is not None:
            old.close()
        _remove_catalog_files(new_path)


SALVAGE_ATTEMPTS = 5  # salvages begun again because another process committed meanwhile


class _ChangedMeanwhile(Exception):
    """The damaged catalog took a commit after its rows were read for a salvage."""


def _salvage_into(new_path: str, old: sqlite3.Connection | None, path: str) -> dict:
    """The readable rows of old, in a new catalog at new_path of old's schema, then migrated to
    the current one (migration 4 changes rows, not only tables); what ``_copy_readable_rows`` kept."""
    _remove_catalog_files(new_path)
    version = _schema_of(old)
    if version > SCHEMA_VERSION:
        raise VmrError(_newer(path, version))  # its newer columns would be dropped
    conn = sqlite3.connect(new_path, isolation_level=None)
    try:
        if old is not None:  # the backup into a WAL catalog needs the same page size
            with suppress(sqlite3.Error):
                conn.execute(f"PRAGMA page_size={int(old.execute('PRAGMA page_size').fetchone()[0])}")
        conn.execute("PRAGMA journal_mode=WAL")
        _run_migrations(conn, 0, version or SCHEMA_VERSION)
        kept = _copy_readable_rows(conn, old)
        _run_migrations(conn, version or SCHEMA_VERSION, SCHEMA_VERSION)
    finally:
        conn.close()
    return kept


def _run_migrations(conn: sqlite3.Connection, start: int, end: int) -> None:
    for number in range(start, end):
        with _Transaction(conn):
            MIGRATIONS[number][1](conn)
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(number + 1),))


def _schema_of(old: sqlite3.Connection | None) -> int:
    """The damaged catalog's schema version; 0 when its meta cannot tell."""
    try:
        row = old.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else 0
    except (sqlite3.Error, AttributeError, TypeError, ValueError):
        return 0


def _data_version(old: sqlite3.Connection | None):
    """Changes when another connection commits to the catalog (None when it cannot be read)."""
    try:
        return old.execute("PRAGMA data_version").fetchone()[0]
    except (sqlite3.Error, AttributeError):
        return None


def _replace_contents(new_path: str, path: str, damaged: str, unchanged) -> None:
    """The salvaged catalog's pages written over the damaged one's in one SQLite transaction.  Once
    it holds the write lock (no one can commit), ``unchanged()`` is asked whether the rows read are
    still all there are, and the damaged file and its WAL are copied to ``damaged``."""
    source = sqlite3.connect(new_path, isolation_level=None)
    target = sqlite3.connect(path, isolation_level=None, timeout=30)
    kept = []

    def progress(status, _remaining, _total):
        # 0: a step done, and the write lock held until the last one (the catalog has many pages)
        if status != 0 or kept:
            return
        if not unchanged():
            raise _ChangedMeanwhile()
        for suffix in ("", "-wal"):
            if os.path.exists(path + suffix):
                _copy_file(path + suffix, damaged + suffix)
        kept.append(damaged)

    try:
        source.backup(target, pages=1, progress=progress)
    finally:
        source.close()
        target.close()


def _copy_file(source: str, destination: str) -> None:
    """A copy with the source's permissions (the catalog logs every query: private stays private)."""
    import shutil
    import stat

    mode = stat.S_IMODE(os.stat(source).st_mode)
    with open(source, "rb") as reading, \
            open(os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode & 0o600), "wb") as writing:
        shutil.copyfileobj(reading, writing)
        writing.flush()
        os.fsync(writing.fileno())
    os.chmod(destination, mode)


def _remove_catalog_files(path: str) -> None:
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        if os.path.exists(name):
            os.unlink(name)


def _copy_readable_rows(conn: sqlite3.Connection, old: sqlite3.Connection | None) -> dict:
    """Rows of the damaged catalog (read through a connection of their own, so an error there never
    touches the new catalog's transaction) inserted into the new one on conn."""
    if old is None:
        return {}
    try:
        names = {r[0] for r in old.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError:
        return {}
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("BEGIN IMMEDIATE")
    out = {}
    for table in [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]:
        if table in names:
            out[table] = _copy_table(old, conn, table)
    conn.execute("DELETE FROM clips WHERE video_id NOT IN (SELECT id FROM videos)")
    conn.execute("DELETE FROM results WHERE search_id NOT IN (SELECT id FROM searches)")
    try:  # ids are never reused, even those of rows that were lost
        sequences = old.execute("SELECT name, seq FROM sqlite_sequence").fetchall()
    except sqlite3.DatabaseError:
        sequences = []
    for name, seq in sequences:
        conn.execute("UPDATE sqlite_sequence SET seq=max(seq, ?) WHERE name=?", (seq, name))
        conn.execute("INSERT INTO sqlite_sequence (name, seq) SELECT ?, ? WHERE NOT EXISTS "
                     "(SELECT 1 FROM sqlite_sequence WHERE name=?)", (name, seq, name))
    conn.execute("COMMIT")
    conn.execute("PRAGMA foreign_keys=ON")
    return out


def _copy_table(old: sqlite3.Connection, conn: sqlite3.Connection, table: str) -> dict:
    """Rows of one table, copied in rowid order; where the copy breaks off, the rest is read in
    ranges of rowids, and a range that fails row by row.  {"kept": n, "complete": bool}."""
    mine = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
    try:
        theirs = {r[1] for r in old.execute(f'PRAGMA table_info("{table}")')}
    except sqlite3.DatabaseError:
        theirs = set(mine)
    columns = [c for c in mine if c in theirs]
    names = ", ".join(f'"{c}"' for c in columns)
    insert = f'INSERT OR IGNORE INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})'
    skip = (lambda row: row[0] == "schema_version") if table == "meta" else (lambda row: False)
    kept, last = 0, -1
    try:
        cursor = old.execute(f'SELECT rowid, {names} FROM "{table}" ORDER BY rowid')
        while True:
            rows = cursor.fetchmany(SALVAGE_STEP)
            if not rows:
                return {"kept": kept, "complete": True}
            last = rows[-1][0]
            rows = [row[1:] for row in rows if not skip(row[1:])]
            conn.executemany(insert, rows)
            kept += len(rows)
    except sqlite3.DatabaseError:
        pass
    select = f'SELECT {names} FROM "{table}" WHERE rowid BETWEEN ? AND ?'
    for low in range(last + 1, _last_rowid(old, table) + 1, SALVAGE_STEP):
        rows = [row for row in _read_rows(old, select, low, low + SALVAGE_STEP - 1) if not skip(row)]
        conn.executemany(insert, rows)
        kept += len(rows)
    return {"kept": kept, "complete": False}


def _read_rows(old: sqlite3.Connection, sql: str, low: int, high: int) -> list:
    try:
        return old.execute(sql, (low, high)).fetchall()
    except sqlite3.DatabaseError:
        pass
    rows = []
    for rowid in range(low, high + 1):
        try:
            rows += old.execute(sql, (rowid, rowid)).fetchall()
        except sqlite3.DatabaseError:
            pass  # this row was on the damaged page
    return rows


def _last_rowid(old: sqlite3.Connection, table: str) -> int:
    """The highest rowid to look at: the table's own, else what AUTOINCREMENT handed out."""
    for sql, args in ((f'SELECT max(rowid) FROM "{table}"', ()),
                      ("SELECT seq FROM sqlite_sequence WHERE name=?", (table,))):
        try:
            row = old.execute(sql, args).fetchone()
            if row and row[0] is not None:
                return int(row[0])
        except sqlite3.DatabaseError:
            continue
    return 0


def _free_name(path: str) -> str:
    if not os.path.exists(path):
        return path
    n = 2
    while os.path.exists(f"{path}-{n}"):
        n += 1
    return f"{path}-{n}"
