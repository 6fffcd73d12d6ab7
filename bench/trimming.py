"""Trimmed against exhaustive search on synthetic-world libraries of long videos.

    python bench/trimming.py [--minutes 5 30 120] [--videos 2] [--queries 20] [--seed 7]

For each video length: generate a world (cached in bench/out/), index it with
the trained tiny model (examples/models/tiny-clip), then run the same queries
trimmed and exhaustive in the same process, alternating, and report per
length: frames encoded per query (exhaustive / trimmed), wall seconds per
query (ratio), R1@0.5 and R1@0.7 of both, and selection recall: the share of
ground-truth moments at least half covered by the clips trimmed search
finally selected.  All numbers are synthetic-world numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import OUT, TINY_MODEL, cached_world


def world(minutes: float, videos: int, seed: int) -> tuple[Path, list[dict]]:
    folder = OUT / f"world_{minutes:g}min_{videos}v_seed{seed}"
    return folder, cached_world(folder, videos, minutes * 60, seed)


def coverage(window, selected) -> float:
    start, end = window
    covered = sum(max(0.0, min(end, e) - max(start, s)) for s, e in selected)
    return covered / max(1e-9, end - start)


def run_length(minutes: float, args) -> dict:
    from vmr_cli.indexer import index_paths
    from vmr_cli.library import Library
    from vmr_cli.metrics import summarise
    from vmr_cli.search import Searcher, SearchOptions

    folder, records = world(minutes, args.videos, args.seed)
    records = records[:: max(1, len(records) // args.queries)][: args.queries]
    library = Library(str(OUT / f"library_{folder.name}"))
    index_paths(library, [str(folder)], model=str(TINY_MODEL), progress=False)
    searcher = Searcher(library, frame_cache=False)  # each mode pays for its own frames
    runs = {"trimmed": [], "exhaustive": []}
    truth, recall = [], []
    for rec in records:
        path = str(folder / f"{rec['vid']}.mp4")
        truth.append([tuple(w) for w in rec["relevant_windows"]])
        for mode in ("trimmed", "exhaustive"):
            options = SearchOptions(top_k=10, exhaustive=mode == "exhaustive", only_video=path,
                                    record_selection=True)
            started = time.perf_counter()
            found = searcher.search(rec["query"], options, log=False)
            seconds = time.perf_counter() - started
            runs[mode].append((found, seconds))
            if mode == "trimmed":
                selected = found["stats"].get("selections", {}).get(path, [])
                recall.append(coverage(rec["relevant_windows"][0], selected) >= 0.5)
    report = {"minutes": minutes, "videos": args.videos, "queries": len(records)}
    for mode, items in runs.items():
        preds = [[(r["start"], r["end"], r["score"]) for r in f["results"]] for f, _ in items]
        metrics = summarise(preds, truth)
        report[mode] = {
            "frames_encoded": sum(f["stats"]["frames_encoded"] for f, _ in items) / len(items),
            "clips_verified": sum(f["stats"]["clips_verified"] for f, _ in items) / len(items),
            "seconds": sum(s for _, s in items) / len(items),
            "R1@0.5": metrics["R1@0.5"], "R1@0.7": metrics["R1@0.7"],
        }
    t, e = report["trimmed"], report["exhaustive"]
    report["frames_ratio"] = e["frames_encoded"] / max(1e-9, t["frames_encoded"])
    report["seconds_ratio"] = e["seconds"] / max(1e-9, t["seconds"])
    report["selection_recall"] = sum(recall) / len(recall)
    library.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 30, 120])
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rows = [run_length(m, args) for m in args.minutes]
    print(json.dumps(rows, indent=2))
    print("\n| length | queries | frames/query exh. | frames/query trim. | ratio | s/query exh. | "
          "s/query trim. | ratio | R1@0.5 exh. | R1@0.5 trim. | R1@0.7 exh. | R1@0.7 trim. | selection recall |")
    print("|---" * 13 + "|")
    for r in rows:
        e, t = r["exhaustive"], r["trimmed"]
        print(f"| {r['minutes']:g} min | {r['queries']} | {e['frames_encoded']:.0f} | {t['frames_encoded']:.0f} | "
              f"{r['frames_ratio']:.1f}x | {e['seconds']:.2f} | {t['seconds']:.2f} | {r['seconds_ratio']:.1f}x | "
              f"{100 * e['R1@0.5']:.1f} | {100 * t['R1@0.5']:.1f} | {100 * e['R1@0.7']:.1f} | "
              f"{100 * t['R1@0.7']:.1f} | {100 * r['selection_recall']:.1f} |")


if __name__ == "__main__":
    main()
