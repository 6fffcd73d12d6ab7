"""Indexing a library of many short clips, where each file's fixed costs add up.

    python bench/many_files.py [--files 200] [--rounds 2] [--model DIR]

``--files`` one-second clips (160x120, 10 fps, each with its own title so no two
are the same file), generated once into bench/out/; each round indexes them into
a fresh library with the tiny CLIP (or ``--model``, e.g. bench/out/vitb32: ViT-B/32's size), in this process, once with the files probed
one at a time just before each is decoded (``PROBE_WORKERS = 1``, as vmr did
before 2026-12-01) and once with vmr's default (probes run ahead in a few
threads), alternated.  Also the cost of one bare ``ffprobe`` process on such a
file, which is what each file pays at least.  Time only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

from common import OUT, TINY_MODEL


def clips(n: int):
    folder = OUT / f"many_files_{n}"
    if len(list(folder.glob("*.mp4"))) != n:
        folder.mkdir(parents=True, exist_ok=True)
        base = folder / "base.mp4.src"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "1",
                        "-pix_fmt", "yuv420p", "-f", "mp4", str(base)], check=True)
        for i in range(n):
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(base), "-metadata", f"title={i}", "-c", "copy",
                            str(folder / f"clip{i:04d}.mp4")], check=True)
        base.unlink()
    return folder


def main() -> None:
    from vmr_cli import indexer
    from vmr_cli.library import Library

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default=str(TINY_MODEL), help="encoder folder (default: the tiny CLIP)")
    args = parser.parse_args()
    folder = clips(args.files)
    first = str(next(folder.glob("*.mp4")))
    started = time.perf_counter()
    for _ in range(20):
        subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", first], capture_output=True)
    bare = (time.perf_counter() - started) / 20
    default = indexer.PROBE_WORKERS
    times = {1: [], default: []}
    for _ in range(args.rounds):
        for workers in (1, default):
            library_dir = OUT / "many_files_library"
            shutil.rmtree(library_dir, ignore_errors=True)
            indexer.PROBE_WORKERS = workers
            library = Library(str(library_dir))
            started = time.perf_counter()
            summary = indexer.index_paths(library, [str(folder)], model=args.model, progress=False)
            times[workers].append(time.perf_counter() - started)
            library.close()
            assert summary["added"] == args.files, summary
            print(f"probe workers {workers}: {times[workers][-1]:.1f} s", file=sys.stderr, flush=True)
    indexer.PROBE_WORKERS = default
    model = "tiny CLIP" if os.path.samefile(args.model, TINY_MODEL) else args.model
    print(f"\n{args.files} one-second clips, {model}, {time.strftime('%Y-%m-%d')}; one bare ffprobe "
          f"{1000 * bare:.0f} ms\n")
    print("| probes | index (s), each round | per file (ms, median) |\n|---|---|---|")
    for workers, label in ((1, "one at a time, before each decode (before)"),
                           (default, f"{default} threads, {indexer.PROBE_AHEAD} files ahead (vmr)")):
        print(f"| {label} | {', '.join(f'{t:.1f}' for t in times[workers])} | "
              f"{1000 * statistics.median(times[workers]) / args.files:.0f} |")


if __name__ == "__main__":
    main()
