"""Index speed against the bare decode cost of the same file, measured side by side.

    python bench/index.py [--minutes 5] [--model DIR] [--repeat 2] [--fps 30] [--gop 60]
    python bench/index.py --camcorder [--code OTHER_CHECKOUT ...]
    python bench/index.py --trimmed 1.3 [--code OTHER_CHECKOUT ...]

Generates (once, cached in bench/out/) a 1080p H.264 video at 30 fps with a
2 s key-frame interval (``--fps 29.97 --gop 30``: as phones record, a key frame
every 30 frames that seldom falls on the second; ``--camcorder``: a camcorder's AVCHD .mts,
1080i at 25 fps, a key frame every 12 frames, B-frames, 192-byte packets; ``--trimmed S``: a phone's
29.97 fps with a key frame every 30 frames and B-frames, trimmed from S seconds on with ``-c copy``, as
LosslessCut and a phone's trim do: an edit list that starts inside a GOP), then times,
alternately:
  * ffmpeg decoding the whole file scaled to the encoder's input size
    (``-vf scale=S:S -f null -``), and
  * ``vmr index`` of that file into a fresh library (the whole process: start-up,
    probe, decode, encode, BAM vectors, commit),
and prints both and their ratio.  The target is vmr <= 1.5x the decode.  ``--code DIR ...``:
``vmr index`` of other checkouts of vmr too (a git worktree of an earlier commit), in the same
alternation, each with its own ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import OUT, TINY_MODEL


RATES = {"30": "30", "29.97": "30000/1001", "25": "25", "60": "60", "59.94": "60000/1001"}


def make_video(minutes: float, fps: str = "30", gop: int = 60) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    name = "" if (fps, gop) == ("30", 60) else f"_{fps}fps_gop{gop}"
    path = OUT / f"bench_{minutes:g}min_1080p30{name}.mp4"
    if not path.exists():
        print(f"generating {path.name} (once)...", file=sys.stderr)
        tmp = path.with_suffix(".tmp.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size=1920x1080:rate={RATES[fps]}:duration={minutes * 60}",
                        "-c:v", "libx264", "-preset", "ultrafast", "-g", str(gop), "-keyint_min", str(gop),
                        "-sc_threshold", "0", "-pix_fmt", "yuv420p", str(tmp)], check=True)
        tmp.rename(path)
    return path


def make_camcorder_video(minutes: float) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"bench_{minutes:g}min_1080i25_camcorder.mts"
    if not path.exists():
        print(f"generating {path.name} (once)...", file=sys.stderr)
        tmp = path.with_name(".tmp-" + path.name)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size=1920x1080:rate=50:duration={minutes * 60}", "-vf",
                        "tinterlace=interleave_top,fieldorder=tff", "-c:v", "libx264", "-preset", "ultrafast",
                        "-flags", "+ildct+ilme", "-g", "12", "-bf", "2", "-pix_fmt", "yuv420p", "-f", "mpegts",
                        "-mpegts_m2ts_mode", "1", str(tmp)], check=True)
        tmp.rename(path)
    return path


def make_trimmed_video(minutes: float, start: float) -> Path:
    """The phone-like source (29.97 fps, a key frame every 30 frames, B-frames), trimmed from
    ``start`` without re-encoding; its whole length less ``start``."""
    OUT.mkdir(parents=True, exist_ok=True)
    source = OUT / f"bench_{minutes:g}min_1080p2997_gop30_bframes.mp4"
    path = OUT / f"bench_{minutes:g}min_1080p2997_gop30_bframes_trimmed{start:g}.mp4"
    if not source.exists():
        print(f"generating {source.name} (once)...", file=sys.stderr)
        tmp = source.with_suffix(".tmp.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size=1920x1080:rate=30000/1001:duration={minutes * 60}", "-c:v", "libx264",
                        "-preset", "ultrafast", "-g", "30", "-bf", "2", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
                        str(tmp)], check=True)
        tmp.rename(source)
    if not path.exists():
        tmp = path.with_suffix(".tmp.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", str(start), "-i", str(source), "-c", "copy", str(tmp)],
                       check=True)
        tmp.rename(path)
    return path


def default_model() -> str:
    if (TINY_MODEL / "config.json").exists():
        return str(TINY_MODEL)
    from examples.tiny_clip import make_tiny_clip

    return str(make_tiny_clip(OUT / "tiny-clip-random"))


def image_size(model: str) -> int:
    prep = json.loads((Path(model) / "preprocessor_config.json").read_text())
    return int(prep["crop_size"]["height"])


def time_ffmpeg(video: Path, size: int) -> float:
    start = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-vf", f"scale={size}:{size}",
                    "-f", "null", "-"], check=True)
    return time.perf_counter() - start


def time_vmr(video: Path, model: str, code: str | None = None) -> float:
    library = tempfile.mkdtemp(prefix="vmr-bench-")
    try:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vmr_cli", "--library", library, "index", str(video.resolve()),
                        "--model", str(Path(model).resolve()), "--json"], check=True, stdout=subprocess.DEVNULL,
                       cwd=code)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(library, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--fps", choices=sorted(RATES), default="30")
    parser.add_argument("--gop", type=int, default=60, help="frames from one key frame to the next")
    parser.add_argument("--camcorder", action="store_true", help="a camcorder's 1080i .mts instead")
    parser.add_argument("--trimmed", type=float, default=None, metavar="S",
                        help="a phone-like clip trimmed from S seconds on without re-encoding instead")
    parser.add_argument("--untrimmed", action="store_true", help="with --trimmed: time its source too")
    parser.add_argument("--code", nargs="*", default=[], help="other checkouts of vmr to time beside this one")
    args = parser.parse_args()
    model = args.model or default_model()
    if args.trimmed is not None:
        video = make_trimmed_video(args.minutes, args.trimmed)
    elif args.camcorder:
        video = make_camcorder_video(args.minutes)
    else:
        video = make_video(args.minutes, args.fps, args.gop)
    videos = [video]
    if args.trimmed is not None and args.untrimmed:
        videos.append(OUT / f"bench_{args.minutes:g}min_1080p2997_gop30_bframes.mp4")
    size = image_size(model)
    for video in videos:
        decode, index = [], {code: [] for code in [None, *args.code]}
        for _ in range(args.repeat):  # alternate, so all see the same machine load
            decode.append(time_ffmpeg(video, size))
            for code, times in index.items():
                times.append(time_vmr(video, model, code))
        d = min(decode)
        print(json.dumps({"video": video.name, "model": model, "image_size": size, "cpus": os.cpu_count(),
                          "ffmpeg_decode_s": [round(x, 2) for x in decode],
                          **{f"vmr_index_s{'' if code is None else ' ' + code}": [round(x, 2) for x in times]
                             for code, times in index.items()},
                          **{f"ratio_best{'' if code is None else ' ' + code}": round(min(times) / d, 3)
                             for code, times in index.items()}}, indent=2))


if __name__ == "__main__":
    main()
