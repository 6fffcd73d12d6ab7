"""What the upgrade's HDR check costs beside embedding the same HDR video again, side by side.

    python bench/upgrade_check.py [--model bench/out/vitb32] [--seconds 10] [--rounds 3]

The first 'vmr index' after an upgrade decodes and encodes three stored frames of each HDR video
an older vmr indexed (indexer._embedded_as_now) and embeds it again only where they differ.  This
makes a phone-like HLG clip (1080p, 30 fps, 10-bit HEVC, a test pattern: synthetic, not camera
footage), indexes it with the ViT-B/32-sized CLIP (random weights, bench/vitb32.py; loaded once,
outside the timings), then alternately times the check and a whole re-embedding of the clip
(index_paths into a fresh library), ``--rounds`` times; prints seconds for each and their ratio.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import OUT


def main() -> None:
    from vmr_cli.encoders import ClipEncoder
    from vmr_cli.indexer import _embedded_as_now, index_paths
    from vmr_cli.library import Library
    from vmr_cli.scan import find_videos

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(OUT / "vitb32"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vmr-upgrade-check-"))
    try:
        (work / "v").mkdir()
        clip = work / "v" / "iphone.mov"
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=s=1920x1080:r=30:d={args.seconds}",
                        "-vf", "format=yuv420p10le", "-c:v", "libx265", "-preset", "ultrafast", "-x265-params",
                        "log-level=error:keyint=30", "-color_trc", "arib-std-b67", "-color_primaries", "bt2020",
                        "-colorspace", "bt2020nc", str(clip)], check=True)
        encoder = ClipEncoder(args.model)
        library = Library(str(work / "lib"))
        index_paths(library, [str(work / "v")], model=args.model, encoder=encoder, progress=False)
        row = library.catalog.videos("ok")[0]
        item = find_videos([str(work / "v")]).found[0]
        times: dict[str, list[float]] = {"check": [], "embed again": []}
        for n in range(args.rounds):
            started = time.perf_counter()
            same = _embedded_as_now(library, encoder, item, row, "torchcodec")
            times["check"].append(time.perf_counter() - started)
            again = Library(str(work / f"again{n}"))
            started = time.perf_counter()
            index_paths(again, [str(work / "v")], model=args.model, encoder=encoder, progress=False)
            times["embed again"].append(time.perf_counter() - started)
            again.close()
        library.close()
        check, embed = (statistics.median(times[k]) for k in ("check", "embed again"))
        print(f"{args.seconds:g} s of 1080p HLG HEVC, {args.rounds} rounds, median seconds (the check found the "
              f"stored frames {'the same' if same else 'different'}):")
        print(f"  check        {check:.2f}   ({', '.join(f'{t:.2f}' for t in times['check'])})")
        print(f"  embed again  {embed:.2f}   ({', '.join(f'{t:.2f}' for t in times['embed again'])})")
        print(f"  check / embed again: {check / embed:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
