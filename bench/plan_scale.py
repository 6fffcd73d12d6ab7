"""Planning an index run beside a large library: the scan and the catalog, no decoding.

    python bench/plan_scale.py [--files 1000 3000]

For each N: a catalog of N indexed files and N new files beside them, all of one size
(a dashcam's constant-bitrate clips, camera segments cut at a fixed size) against the
same with every file a size of its own, planned by ``scan.plan_index`` in this process.
Each new file is checked against the indexed files of its size for being another name
of one of them (a hard link, a path through a symlink): the ratio of the two says
whether that check grows with the library (it did: each new file looked at every
indexed file of its size again).  Files are 1 KB stand-ins named .mp4; time only.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from common import OUT

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vmr_cli.catalog import Catalog  # noqa: E402
from vmr_cli.scan import plan_index  # noqa: E402


def plan_seconds(n: int, same_size: bool) -> float:
    root = OUT / f"plan_scale_{n}_{'same' if same_size else 'distinct'}"
    shutil.rmtree(root, ignore_errors=True)
    (root / "old").mkdir(parents=True)
    (root / "new").mkdir()

    def write(path: Path, i: int) -> None:
        path.write_bytes(i.to_bytes(4, "big") * (256 if same_size else 256 + i % 4096))

    catalog = Catalog(str(root / "catalog.db"))
    with catalog.transaction():
        for i in range(n):
            path = root / "old" / f"{i:05d}.mp4"
            write(path, i)
            st = path.stat()
            catalog.upsert_video({"path": str(path), "root": str(root), "size": st.st_size,
                                  "mtime_ns": st.st_mtime_ns, "status": "ok", "fingerprint": str(i)})
    for i in range(n):
        write(root / "new" / f"{i:05d}.mp4", n + i)
    started = time.perf_counter()
    plan = plan_index(catalog, [str(root)])
    seconds = time.perf_counter() - started
    assert len(plan.add) == n and plan.unchanged == n, (len(plan.add), plan.unchanged)
    catalog.close()
    shutil.rmtree(root)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 3000])
    args = parser.parse_args()
    print("files  one size (s)  sizes of their own (s)  ratio")
    for n in args.files:
        same, distinct = plan_seconds(n, True), plan_seconds(n, False)
        print(f"{n:5d}  {same:12.2f}  {distinct:22.2f}  {same / distinct:5.2f}")


if __name__ == "__main__":
    main()
