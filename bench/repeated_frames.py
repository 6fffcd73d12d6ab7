"""How many of the frames `vmr index` stores repeat the one before exactly (those it does not encode again).

    python bench/repeated_frames.py [FILE ...]

Without files: the synthetic world bench/realsize.py indexes (8 videos x 120 s, seed 3) and,
where they are installed (scripts/setup.sh --test), the camera files of the test media.  Each
file is decoded at the times the index takes (clip boundaries and middles, 2 s clips, moved
onto nearby key frames) at 224 x 224, and its frames compared with the one before, as
``indexer.encode_distinct`` does.  Says which files are synthetic and which are camera footage.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import OUT, ROOT, cached_world

TEST_MEDIA = ROOT / ".test-media"
CAMERA = ["usr/share/forensics-samples/original-files/movie1/VID_20191220_170832.mp4",
          "usr/share/doc/opencv-doc/examples/data/vtest.avi",
          "usr/share/doc/opencv-doc/examples/data/Megamind.avi",
          "usr/share/forensics-samples/original-files/movie2/movie-hello.mp4"]


def repeated(path: str) -> tuple[int, int]:
    """(frames after the first, of them equal to the one before) at the times the index takes."""
    from vmr_cli.decode import open_reader
    from vmr_cli.indexer import clip_grid, grid_times, on_key_frames
    from vmr_cli.probe import probe

    info = probe(path)
    grid = clip_grid(info.duration, 2.0)
    reader = open_reader(path, info, 224, whole=True)
    try:
        frames = reader.frames_at(on_key_frames(grid_times(grid, info.fps), reader.key_frames(), 0.5))
    finally:
        reader.close()
    return len(frames) - 1, int((frames[1:] == frames[:-1]).flatten(1).all(1).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    if args.files:
        groups = {"given": args.files}
    else:
        world = OUT / "realsize_world_8v_120s_seed3"
        cached_world(world, 8, 120.0, 3)
        groups = {"synthetic world": sorted(str(p) for p in world.glob("*.mp4")),
                  "camera (test media)": [str(TEST_MEDIA / c) for c in CAMERA if (TEST_MEDIA / c).exists()]}
    print("| files | file | stored frames after the first | equal to the one before | share |")
    print("|---|---|---|---|---|")
    for kind, files in groups.items():
        total = same = 0
        for path in files:
            n, k = repeated(path)
            total, same = total + n, same + k
            print(f"| {kind} | {Path(path).name} | {n} | {k} | {100 * k / max(1, n):.1f} % |")
        if files:
            print(f"| {kind} | **all {len(files)}** | {total} | {same} | **{100 * same / max(1, total):.1f} %** |")


if __name__ == "__main__":
    main()
