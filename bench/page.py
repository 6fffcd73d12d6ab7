"""The results page (`--html`) of a phone's 4K HEVC video against the bare decode of its moments.

    python bench/page.py [--results 4] [--seconds 7.5] [--rounds 2] [--code OTHER_CHECKOUT ...]

Generates (once, cached in bench/out/) 30 s of 4K HEVC as a phone records it (10-bit,
30 fps, a key frame a second, in MOV: browsers other than Safari do not play it, so the page
makes a preview of each moment), then times, alternately, in each round:
  * ffmpeg decoding each moment's span of the file at full size (``-ss S -t D -f null -``),
    one after another: the floor of what a page of those moments must decode, and
  * ``page.render`` of a search whose results are those moments, in a fresh process, into
    an empty preview cache (a first page), then again with the previews made (a page of the
    same search again),
and prints the times and the first page's ratio to the bare decode.  ``--code DIR ...``: the
same page rendered by other checkouts of vmr too (a git worktree of an earlier commit).
The file is a generated test pattern (testsrc2): only time is measured on it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import OUT, ROOT

RENDER = """
import sys, json
sys.path.insert(0, sys.argv[1])
from vmr_cli.page import render
render(json.loads(sys.argv[2]), previews_dir=sys.argv[3], progress=False)
"""


def make_video() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "bench_30s_4k_hevc10_phone.mov"
    if not path.exists():
        print(f"generating {path.name} (once, a few minutes)...", file=sys.stderr)
        tmp = path.with_name(".tmp-" + path.name)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=3840x2160:rate=30:duration=30",
                        "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le", "-tag:v", "hvc1",
                        "-x265-params", "keyint=30:min-keyint=30:log-level=error", "-f", "mov", str(tmp)], check=True)
        tmp.rename(path)
    return path


def moments(results: int, seconds: float, duration: float = 30.0) -> list[tuple[float, float]]:
    """results moments of ``seconds`` spread over the file, none starting on a key frame."""
    step = (duration - seconds) / results
    return [(round(i * step + 0.37, 3), round(i * step + 0.37 + seconds, 3)) for i in range(results)]


def time_decode(video: Path, spans) -> float:
    start = time.perf_counter()
    for begin, end in spans:
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-ss", f"{begin}", "-i", str(video), "-t",
                        f"{end - begin}", "-an", "-f", "null", "-"], check=True)
    return time.perf_counter() - start


def time_page(code: Path, search: dict, previews: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", RENDER, str(code), json.dumps(search), previews], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=7.5, help="length of each moment")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--code", nargs="*", default=[], help="other checkouts of vmr to time beside this one")
    args = parser.parse_args()
    video = make_video()
    spans = moments(args.results, args.seconds)
    search = {"id": 1, "query": "a test pattern", "created_at": 0, "model": "-",
              "results": [{"rank": i + 1, "video": str(video), "start": s, "end": e, "score": 0.5}
                          for i, (s, e) in enumerate(spans)]}
    codes = [ROOT, *[Path(c).resolve() for c in args.code]]
    decode, first, again = [], {c: [] for c in codes}, {c: [] for c in codes}
    for _ in range(args.rounds):
        decode.append(time_decode(video, spans))
        for code in codes:
            folder = tempfile.mkdtemp(prefix="vmr-bench-page-")
            try:
                first[code].append(time_page(code, search, folder))
                again[code].append(time_page(code, search, folder))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    best = min(decode)
    name = {c: "" if c == ROOT else f" {c}" for c in codes}
    print(json.dumps({"video": video.name, "moments": spans, "bare_decode_s": [round(x, 2) for x in decode],
                      **{f"first_page_s{name[c]}": [round(x, 2) for x in first[c]] for c in codes},
                      **{f"page_again_s{name[c]}": [round(x, 2) for x in again[c]] for c in codes},
                      **{f"first_page_ratio_best{name[c]}": round(min(first[c]) / best, 3) for c in codes}},
                     indent=2))


if __name__ == "__main__":
    main()
