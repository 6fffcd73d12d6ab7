"""What a search pays to read a few frames of a long file, with and without torchcodec's scan.

    python bench/long_videos.py [--videos FILE ...] [--minutes 180] [--rounds 2] [--size 224]

A search decodes some 12 frames around its best windows' edges (here: 4 frames half a second
apart at each of 3 random places, seeded).  Per file, alternated, each a fresh reader as search
opens it (``open_reader``), from the page cache ("warm") and with the file's pages dropped
first ("cold", ``posix_fadvise(DONTNEED)``):

  * ``search``: vmr's reader (torchcodec without its scan, each frame found by its time in the
    container's index; PyAV for MPEG-TS, seeking to each time);
  * ``scan``: the same frames with torchcodec's scan of every packet first, as search read them
    before 2026-12-02 (MP4/MOV, Matroska: not for PyAV's files).

Without ``--videos`` it generates (once, in bench/out/) a test pattern of ``--minutes`` at
640x360, 25 fps, a key frame every 10 s, AAC sound, its moov at the end (ffmpeg's default, as
cameras write it), and the same as a camcorder's .mts (320x180, a key frame every 12 frames):
time only is measured on them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from common import OUT


def make_videos(minutes: float) -> list[Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    seconds = str(minutes * 60)
    made = []
    for name, size, args in ((f"long_{minutes:g}min_360p.mp4", "640x360", ["-g", "250"]),
                             (f"long_{minutes:g}min_camcorder.mts", "320x180",
                              ["-g", "12", "-bf", "2", "-f", "mpegts", "-mpegts_m2ts_mode", "1"])):
        path = OUT / name
        if not path.exists():
            print(f"generating {name} (once)...", file=sys.stderr)
            tmp = path.with_name(".tmp-" + name)
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25",
                            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", seconds,
                            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                            *args, str(tmp)], check=True)
            tmp.rename(path)
        made.append(path)
    return made


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_frames(path: Path, info, times: list[float], size: int, scan: bool) -> tuple[float, str]:
    from vmr_cli.decode import open_reader

    reader = open_reader(str(path), info, size)  # as search opens it
    started = time.perf_counter()
    if scan:
        reader.reader._open(scan=True)
    reader.frames_at(times)
    seconds = time.perf_counter() - started
    how = reader.backend + (" (scanned)" if getattr(reader.reader, "_scanned", False) else "")
    reader.close()
    return seconds, how


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", nargs="+", type=Path)
    parser.add_argument("--minutes", type=float, default=180)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=224, help="the encoder's input size (ViT-B/32: 224)")
    args = parser.parse_args()
    from vmr_cli.decode import import_torchcodec, open_reader
    from vmr_cli.probe import probe

    import_torchcodec()  # (a search imports it too; not what is measured here)
    rows = []
    for path in args.videos or make_videos(args.minutes):
        info = probe(str(path))
        random.seed(0)
        times = sorted(at + k * 0.5 for at in (random.uniform(0, info.duration - 3) for _ in range(3)) for k in range(4))
        modes = ["search"] + (["scan"] if open_reader(str(path), info, args.size).backend == "torchcodec" else [])
        found: dict = {}
        for state in ("warm", "cold"):
            for _ in range(args.rounds):
                for mode in modes:
                    if state == "cold":
                        drop_from_page_cache(path)
                    seconds, how = read_frames(path, info, times, args.size, mode == "scan")
                    found.setdefault(f"{mode} {state}", []).append(round(seconds, 2))
                    found[f"{mode} how"] = how
        rows.append({"video": path.name, "bytes": path.stat().st_size, "duration": info.duration, **found})
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
