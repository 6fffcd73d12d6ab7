"""A library after a year of daily use: what each everyday command costs as its history grows.

    python bench/aged_library.py [--sizes 100 10000 50000] [--rounds 3] [--code DIR ...]

One small library is indexed once by vmr (six 6-11 s testsrc2 clips, the tiny CLIP) and
searched once, for real, into bench/out/aged_library/base.  For each size N a copy of it is
then aged through the catalog's own methods, the ones the commands call, with what the real
search and a real export logged as the model of every row:

- N searches, ``Catalog.log_search`` (each with the real search's 8 results moved to times of
  their own, its options and stats, a query of its own, times spread over a year), as
  ``vmr search`` logs them;
- N / 10 exports of 2 cuts each, ``Catalog.log_operation("export", ...)``, each with its own
  search id and cut prints, as ``vmr export`` logs them; every fifth into a folder of its own;
- N / 5 index runs that found nothing to do, ``Catalog.log_operation("index", ...)`` with the
  summary a real no-op run logs (a cron job's), a row each, as a vmr before 2026-12-02's
  round 10 logged them (this one counts such runs in one row);
- one cut of an earlier export moved into the indexed folder (README: recognised by its size
  and fingerprint, so never indexed).

Then, for each size side by side, in a fresh process each (as a user runs them), ``--rounds``
times, alternated, for each ``--code`` checkout (default: this one; a worktree of an older
commit to compare), the median wall time of: ``vmr search`` (logged), ``vmr export 1`` (of
that last search, into a new folder), ``vmr show``, ``vmr searches``, ``vmr status``,
``vmr index`` (no PATH: nothing to do), and the catalog's size on disk (with its WAL).  In-process, with SQLite's
progress handler, the virtual-machine steps the catalog ran for each (a count of work that does
not depend on the machine's load), with this checkout's code.  Last, ``vmr searches --keep 1000``
on a copy of each, its time and the catalog's size before and after.  Time, steps and sizes
only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import OUT, ROOT, TINY_MODEL

TOP = OUT / "aged_library"
YEAR = 365 * 86400.0


def vmr(library: Path, *args, env=None, code: Path = ROOT) -> subprocess.CompletedProcess:
    """A vmr command in a fresh process, run from the checkout ``code`` (its vmr_cli first on the path)."""
    cmd = [sys.executable, "-m", "vmr_cli", "--library", str(library), *map(str, args)]
    return subprocess.run(cmd, cwd=code, capture_output=True, text=True,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", XDG_VIDEOS_DIR=str(TOP / "Videos"), **(env or {})))


def build_base() -> Path:
    """Six indexed videos, one real search and one real export of it."""
    base = TOP / "base"
    if (base / "built").exists():
        return base
    shutil.rmtree(TOP, ignore_errors=True)
    videos = TOP / "videos"
    videos.mkdir(parents=True)
    for i in range(6):
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size=160x120:rate=10:duration={6 + i}", "-vf", f"hue=h={i * 60}",
                        "-c:v", "libx264", "-pix_fmt", "yuv420p", str(videos / f"v{i}.mp4")], check=True)
    library = base / "library"
    for args in (("index", videos, "--model", TINY_MODEL), ("search", "a red pattern"), ("export", "1", "2")):
        done = vmr(library, *args)
        assert done.returncode == 0, done.stderr
    (base / "built").touch()
    return base


def age(base: Path, n: int) -> Path:
    """A copy of the base library with n searches, n/10 exports and n/5 index runs logged."""
    from vmr_cli.catalog import Catalog

    top = TOP / f"aged_{n}"
    if (top / "built").exists():
        return top
    shutil.rmtree(top, ignore_errors=True)
    shutil.copytree(base / "library", top / "library")
    catalog = Catalog(str(top / "library" / "catalog.db"))
    catalog._conn.execute("PRAGMA synchronous=OFF")  # what is written is the same; only faster to write
    model = catalog.search(1)
    exports = catalog.operations("export")
    index_run = catalog.operations("index")[0]
    results = [dict(r, video=r["video"], copies=[]) for r in model["results"]]
    noop = dict(index_run["summary"], added=0, unchanged=6)
    start = time.time() - YEAR
    for i in range(n):
        shift = (i * 0.37) % 50  # moments of their own: a year's searches found many
        search_id = catalog.log_search(f"query number {i} of a year: a red pattern at the beach", model["model"],
                                       model["options"], model["stats"],
                                       [dict(r, start=r["start"] + shift, end=r["end"] + shift) for r in results])
        catalog._conn.execute("UPDATE searches SET created_at=? WHERE id=?", (start + YEAR * i / n, search_id))
        if i % 10 == 0:
            summary = json.loads(json.dumps(exports[0]["summary"]))
            summary["search_id"] = search_id
            if i % 50 == 0:
                summary["folder"] = f"/tmp/elsewhere/{i}"
            for k, f in enumerate(summary["files"]):
                f["fingerprint"] = f"{i:032x}{k:032x}"
                f["size"] += i
            catalog.log_operation("export", dict(exports[0]["arguments"], search_id=search_id), summary,
                                  time.time())
        if i % 5 == 0:
            catalog.log_operation("index", index_run["arguments"], noop, time.time())
    catalog._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    catalog.close()
    # a cut moved into the indexed folder: recognised by its print, never indexed
    cut = next((TOP / "Videos" / "vmr").glob("*.mp4"))
    shutil.copy2(cut, TOP / "videos" / cut.name)
    (top / "built").touch()
    return top


def catalog_bytes(library: Path) -> int:
    return sum(os.path.getsize(p) for p in library.glob("catalog.db*") if p.is_file() and not p.name.endswith(".bak"))


COMMANDS = {
    "search": lambda lib, out: ("search", "a red pattern"),
    "export 1": lambda lib, out: ("export", "1", "--out", out),
    "show": lambda lib, out: ("show",),
    "searches": lambda lib, out: ("searches",),
    "status": lambda lib, out: ("status",),
    "index (nothing to do)": lambda lib, out: ("index",),
}


def timed(library: Path, name: str, round_: int, code: Path = ROOT) -> float:
    out = TOP / "cuts" / f"{library.parent.name}_{name.split()[0]}_{round_}_{code.name}"
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(exist_ok=True)
    started = time.perf_counter()
    done = vmr(library, *COMMANDS[name](library, out), code=code)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, (name, done.stderr)
    return seconds


def steps(library: Path, name: str) -> int:
    """SQLite virtual-machine steps (in hundreds of instructions) the command ran, in process."""
    from click.testing import CliRunner

    from vmr_cli.cli import cli

    counted = [0]
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        conn.set_progress_handler(lambda: counted.__setitem__(0, counted[0] + 1) or 0, 100)
        return conn

    out = TOP / "cuts" / f"{library.parent.name}_steps"
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(exist_ok=True)
    sqlite3.connect = connect
    try:
        result = CliRunner().invoke(cli, ["--library", str(library), *map(str, COMMANDS[name](library, out))])
    finally:
        sqlite3.connect = real_connect
    assert result.exit_code == 0, (name, result.output)
    return counted[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 10000, 50000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--code", type=Path, nargs="+", default=[ROOT],
                        help="vmr checkouts to time, alternated (another's catalog must be this one's schema)")
    args = parser.parse_args()
    os.environ["XDG_VIDEOS_DIR"] = str(TOP / "Videos")
    os.environ["HF_HUB_OFFLINE"] = "1"
    base = build_base()
    libraries = {n: age(base, n) / "library" for n in args.sizes}
    print(f"searches logged: {', '.join(str(n) for n in args.sizes)}")
    print("catalog on disk (MB): " + ", ".join(f"{catalog_bytes(lib) / 1e6:.1f}" for lib in libraries.values()))
    for name in COMMANDS:
        times = {(code, n): [] for code in args.code for n in args.sizes}
        for r in range(args.rounds):
            for code in args.code:
                for n, lib in libraries.items():  # alternated: the machine's load falls on each alike
                    times[code, n].append(timed(lib, name, r, code))
        counted = {n: steps(lib, name) for n, lib in libraries.items()}
        for code in args.code:
            label = name if len(args.code) == 1 else f"{name} [{code}]"
            print(f"{label:<22} " + "  ".join(
                f"{n}: {statistics.median(times[code, n]):.2f} s" + (
                    f", {counted[n] / 10:.1f}k steps" if code == ROOT else "") for n in args.sizes))
    print("catalog on disk after (MB): " + ", ".join(f"{catalog_bytes(lib) / 1e6:.1f}"
                                                     for lib in libraries.values()))
    for n, lib in libraries.items():  # the history pruned, on a copy
        copy = TOP / f"pruned_{n}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(lib, copy)
        started = time.perf_counter()
        done = vmr(copy, "searches", "--keep", "1000", "--limit", "1")
        seconds = time.perf_counter() - started
        assert done.returncode == 0, done.stderr
        print(f"searches --keep 1000 at {n}: {seconds:.2f} s, catalog {catalog_bytes(lib) / 1e6:.1f} MB -> "
              f"{catalog_bytes(copy) / 1e6:.1f} MB")
        shutil.rmtree(copy)


if __name__ == "__main__":
    main()
