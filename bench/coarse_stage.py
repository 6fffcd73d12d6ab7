"""The coarse FAISS stage at library scale: what one search process pays to find candidate clips.

    python bench/coarse_stage.py [--clips 10000 210000 1000000] [--ivf 210000]

For each size, a FAISS cache of that many random unit vectors of ViT-B/32's
512 dimensions (a 2-second clip each: 210,000 clips are about 117 hours of
video), written as ``vmr index`` writes it; then, in a fresh process as every
``vmr search`` is, the time to open it (``VectorStore.index``: mapped from the
file) and to take the 256 nearest clips (``VectorStore.search``: exact).  The
file is read once before, so the page cache holds it as after a recent index.
``--ivf N``: at that size also what vmr did before 2026-12-01 past 200,000
clips, an IVF index (4 sqrt(n) lists, nprobe 16) trained in the search's own
process, and how many of the exact top 256 it found (random vectors are a hard
case for IVF; real embeddings cluster).  Time only; no model, no video.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT

DIM = 512
FRESH = """
import json, sys, time
started = time.perf_counter()
import numpy as np
from vmr_cli.vectors import VectorStore
imported = time.perf_counter()
store = VectorStore(sys.argv[1])
index = store.index(int(sys.argv[2]))
opened = time.perf_counter()
query = np.random.default_rng(1).standard_normal(int(sys.argv[2])).astype(np.float32)
_scores, ids = store.search(int(sys.argv[2]), query, 256)
done = time.perf_counter()
print(json.dumps({"import": imported - started, "open": opened - imported, "search": done - opened,
                  "ntotal": int(index.ntotal), "ids": ids.tolist()}))
"""


def write_cache(folder: Path, n: int) -> None:
    import numpy as np

    from vmr_cli.vectors import VectorStore

    store, rng = VectorStore(str(folder)), np.random.default_rng(0)
    for lo in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - lo), DIM), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        store.add(DIM, np.arange(lo + 1, lo + 1 + len(block)), block)
    store.save()


def ivf_as_before(folder: Path, exact_ids: list[int]) -> tuple[float, float]:
    """(seconds, share of the exact top 256 found) for the IVF vmr trained per search process."""
    import faiss
    import numpy as np

    from vmr_cli.vectors import VectorStore

    index = VectorStore(str(folder)).index(DIM)
    started = time.perf_counter()
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    vectors = index.index.reconstruct_n(0, index.ntotal)
    quantizer = faiss.IndexFlatIP(DIM)
    ivf = faiss.IndexIVFFlat(quantizer, DIM, int(4 * np.sqrt(len(ids))), faiss.METRIC_INNER_PRODUCT)
    ivf.train(vectors)
    ivf.nprobe = 16
    mapped = faiss.IndexIDMap2(ivf)
    mapped.add_with_ids(vectors, ids)
    query = np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
    _scores, found = mapped.search(query.reshape(1, -1), 256)
    seconds = time.perf_counter() - started
    return seconds, len(set(found[0].tolist()) & set(exact_ids)) / len(exact_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, nargs="+", default=[10_000, 210_000, 1_000_000])
    parser.add_argument("--ivf", type=int, nargs="*", default=[210_000],
                        help="sizes at which to also time the per-process IVF vmr used before")
    args = parser.parse_args()
    rows = []
    for n in args.clips:
        with tempfile.TemporaryDirectory(dir=ROOT / "bench" / "out") as folder:
            write_cache(Path(folder), n)
            Path(folder, "appearance.faiss").read_bytes()  # in the page cache, as after an index run
            done = subprocess.run([sys.executable, "-c", FRESH, folder, str(DIM)], capture_output=True, text=True,
                                  cwd=ROOT, check=True)
            fresh = json.loads(done.stdout)
            row = {"clips": n, "hours": n * 2 / 3600, "open": fresh["open"], "search": fresh["search"]}
            if n in args.ivf:
                row["ivf_seconds"], row["ivf_recall"] = ivf_as_before(Path(folder), fresh["ids"])
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"\n{DIM}-dimensional clips, fresh process, {time.strftime('%Y-%m-%d')}\n")
    print("| clips (hours of 2 s clips) | open the cache (s) | exact top 256 (s) | IVF trained per process, as before (s) "
          "| IVF's share of the exact top 256 |\n|---|---|---|---|---|")
    for r in rows:
        ivf = (f"{r['ivf_seconds']:.1f} | {100 * r['ivf_recall']:.0f} %" if "ivf_seconds" in r else "– | –")
        print(f"| {r['clips']:,} ({r['hours']:.0f} h) | {r['open']:.3f} | {r['search']:.3f} | {ivf} |")


if __name__ == "__main__":
    main()
