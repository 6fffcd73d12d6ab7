"""An index run that finds nothing to read, in a large library: what a cron job pays.

    python bench/noop_index.py [--videos 5000] [--rounds 3] [--code DIR ...] [--profile]

A library of ``--videos`` indexed files (100 to a folder) is built once into bench/out/: one
one-second 64x48 clip is indexed by vmr with the tiny CLIP, then every other file is that clip
with bytes of its own appended (a distinct file) and committed through ``Library.put_video``
with the first clip's row, clips and vectors (noise added), which is what ``Library.copy_video``
writes for a copy.  Then ``vmr index`` with no PATH runs in a fresh process, as cron runs it,
in three states of the library, each state timed for every ``--code`` folder (a vmr checkout:
``PYTHONPATH``) in turn, alternated, ``--rounds`` times:

- nothing changed;
- a home trash ($XDG_DATA_HOME/Trash, pointed at bench/out/) holding ``--trash`` records of
  other files (every 100th a folder, the others files of sizes no indexed file has), and one folder of the library moved away (an unmounted drive's: its entries are
  kept, so every run looks for them in the trash);
- the same with that folder back (its entries were kept: unchanged again);
- ``cold`` (not by default): nothing changed, every shard's pages dropped from the page cache
  before each run (posix_fadvise DONTNEED, which needs no root; its inode stays cached), as a
  cron job finds them after the day's other work.

``--profile`` also runs the first state once in this process under cProfile (the code
imported from this checkout) and prints the top functions by cumulative time.  Time only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import OUT, ROOT, TINY_MODEL

PER_FOLDER = 100


def build(n: int) -> Path:
    """bench/out/noop_index_N: videos/ (N files, PER_FOLDER a folder) and library/, made once."""
    import numpy as np

    from vmr_cli import indexer
    from vmr_cli.library import Library
    from vmr_cli.scan import fingerprint

    top = OUT / f"noop_index_{n}"
    if (top / "built").exists():
        return top
    shutil.rmtree(top, ignore_errors=True)
    videos = top / "videos"
    (videos / "f0000").mkdir(parents=True)
    first = videos / "f0000" / "v000000.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "1",
                    "-pix_fmt", "yuv420p", str(first)], check=True)
    library = Library(str(top / "library"))
    indexer.index_paths(library, [str(videos)], model=str(TINY_MODEL), progress=False)
    source = library.catalog.video_by_path(str(first))
    shard = library.vectors.read_shard(source["id"], source["vectors_token"])
    clips = [{k: c[k] for k in ("idx", "start", "end", "shot", "motion")} for c in library.catalog.clips(source["id"])]
    row = {k: v for k, v in source.items() if k not in library._OWN_COLUMNS}
    body = first.read_bytes()
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for i in range(1, n):
        folder = videos / f"f{i // PER_FOLDER:04d}"
        folder.mkdir(exist_ok=True)
        path = folder / f"v{i:06d}.mp4"
        path.write_bytes(body + i.to_bytes(4, "big") * (1 + i % 7))
        st = path.stat()
        vectors = {k: v for k, v in shard.items() if k != "clip_ids"}
        for k in ("A", "B", "M"):
            noisy = vectors[k] + rng.normal(0, 0.05, vectors[k].shape).astype(np.float32)
            vectors[k] = noisy / np.linalg.norm(noisy, axis=-1, keepdims=True)
        library.put_video(dict(row, path=str(path), root=str(videos), size=st.st_size, mtime_ns=st.st_mtime_ns,
                               fingerprint=fingerprint(str(path), st.st_size)), clips, vectors)
        if i % 1000 == 0:
            library.save()
            print(f"  built {i} of {n} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    library.save()
    library.close()
    (top / "built").write_text("")
    return top


def make_trash(top: Path, records: int) -> Path:
    """XDG_DATA_HOME with Trash/info holding ``records`` .trashinfo files (and their files)."""
    data = top / f"data_{records}"
    info, files = data / "Trash" / "info", data / "Trash" / "files"
    if (len(list(info.glob("*.trashinfo"))) if info.exists() else 0) != records:
        shutil.rmtree(data, ignore_errors=True)
        info.mkdir(parents=True)
        files.mkdir(parents=True)
        for i in range(records):  # files of many sizes (none an indexed one's), every 100th a folder
            name = f"old clip {i}.mp4"
            if i % 100 == 0:
                (files / name).mkdir()
                (files / name / "inside.mp4").write_bytes(b"x")
            else:
                (files / name).write_bytes(b"x" * (i % 4096))
            (info / f"{name}.trashinfo").write_text(
                f"[Trash Info]\nPath=/home/someone/Videos/2019/old%20clip%20{i}.mp4\n"
                "DeletionDate=2026-01-01T10:00:00\n")
    return data


def drop_shards(library: Path) -> None:
    """The shards' pages out of the page cache (their data is read from the disk again)."""
    for entry in os.scandir(library / "shards"):
        fd = os.open(entry.path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run_index(code: str, library: Path, data: Path | None) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [code] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    if data is not None:
        env["XDG_DATA_HOME"] = str(data)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vmr_cli", "--library", str(library), "index"], env=env,
                          capture_output=True, text=True, cwd=str(ROOT.parent))
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"vmr index failed with {code}:\n{done.stderr}")
    return seconds, done.stdout.strip()


def profile(top: Path) -> None:
    import cProfile
    import pstats

    from vmr_cli import indexer
    from vmr_cli.library import Library

    library = Library(str(top / "library"))
    profiler = cProfile.Profile()
    profiler.enable()
    indexer.index_paths(library, [], progress=False)
    profiler.disable()
    library.close()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trash", type=int, default=20000, help=".trashinfo records in the home trash")
    parser.add_argument("--code", nargs="+", default=[str(ROOT)], help="vmr checkouts to time, alternated")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--states", nargs="+", default=["unchanged", "trash", "back"])
    args = parser.parse_args()
    top = build(args.videos)
    library = top / "library"
    empty = top / "data_empty"
    empty.mkdir(exist_ok=True)
    if args.profile:
        os.environ["XDG_DATA_HOME"] = str(empty)
        profile(top)
    data = make_trash(top, args.trash)
    away = top / "videos" / "f0001"
    times: dict = {}
    for state in args.states:
        if state == "trash":
            away.rename(top / "away")
        try:
            for code in args.code:  # untimed: the first run in a state may write (kept entries, notes)
                run_index(code, library, data if state not in ("unchanged", "cold") else empty)
            for _ in range(args.rounds):
                for code in args.code:
                    if state == "cold":
                        drop_shards(library)
                    seconds, said = run_index(code, library, data if state not in ("unchanged", "cold") else empty)
                    times.setdefault((state, code), []).append(seconds)
                    print(f"{state:9s} {code}: {seconds:.2f} s  ({said})", file=sys.stderr, flush=True)
        finally:
            if state == "trash":
                (top / "away").rename(away)
    print(f"\n{args.videos} indexed videos, {args.trash} trash records, {time.strftime('%Y-%m-%d')}\n")
    print("| state | " + " | ".join(args.code) + " |\n|---|" + "---|" * len(args.code))
    for state in args.states:
        print(f"| {state} | " + " | ".join(
            f"{statistics.median(times[state, code]):.2f} ({', '.join(f'{t:.2f}' for t in times[state, code])})"
            for code in args.code) + " |")


if __name__ == "__main__":
    main()
