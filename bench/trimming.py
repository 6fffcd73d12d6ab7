"""Trimmed against exhaustive search on synthetic-world libraries of long videos.

    python bench/trimming.py [--minutes 5 30 120] [--videos 2] [--queries 20] [--seed 7] [--model DIR]

For each video length: generate a world (cached in bench/out/), index it with
the trained tiny model (examples/models/tiny-clip, or ``--model``), then run
the same queries trimmed and exhaustive in the same process, alternating, and report per
length: frames encoded per query (exhaustive / trimmed), wall seconds per
query (ratio), R1@0.5 and R1@0.7 of both, and selection recall: the share of
ground-truth moments at least half covered by the clips trimmed search
finally selected, and beside it the same share for the clips under exhaustive
search's own 10 windows: what the encoder's ranking allows at all (a moment
exhaustive search also ranks below its tenth window is not one the selection
lost).  ``--model`` runs another encoder on its own libraries.  All numbers
are synthetic-world numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import OUT, TINY_MODEL, cached_world, library_for


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
    library = Library(str(library_for(folder, args.model)))
    index_paths(library, [str(folder)], model=str(args.model), progress=False)
    searcher = Searcher(library, frame_cache=False)  # each mode pays for its own frames
    runs = {"trimmed": [], "exhaustive": []}
    clips_of: dict = {}
    truth, recall, reachable = [], [], []
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
            else:  # the clips under exhaustive search's own windows, measured the same way
                clips = clips_of.setdefault(path, library.catalog.clips(library.catalog.video_by_path(path)["id"]))
                spans = [(r["start"], r["end"]) for r in found["results"]]
                under = [(c["start"], c["end"]) for c in clips if any(c["start"] < e and c["end"] > s for s, e in spans)]
                reachable.append(coverage(rec["relevant_windows"][0], under) >= 0.5)
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
    report["exhaustive_recall"] = sum(reachable) / len(reachable)
    library.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 30, 120])
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model", default=str(TINY_MODEL), help="encoder folder (default: the trained tiny CLIP)")
    args = parser.parse_args()
    rows = [run_length(m, args) for m in args.minutes]
    print(json.dumps(rows, indent=2))
    print("\n| length | queries | frames/query exh. | frames/query trim. | ratio | s/query exh. | "
          "s/query trim. | ratio | R1@0.5 exh. | R1@0.5 trim. | R1@0.7 exh. | R1@0.7 trim. | selection recall | "
          "same, exhaustive's 10 |")
    print("|---" * 14 + "|")
    for r in rows:
        e, t = r["exhaustive"], r["trimmed"]
        print(f"| {r['minutes']:g} min | {r['queries']} | {e['frames_encoded']:.0f} | {t['frames_encoded']:.0f} | "
              f"{r['frames_ratio']:.1f}x | {e['seconds']:.2f} | {t['seconds']:.2f} | {r['seconds_ratio']:.1f}x | "
              f"{100 * e['R1@0.5']:.1f} | {100 * t['R1@0.5']:.1f} | {100 * e['R1@0.7']:.1f} | "
              f"{100 * t['R1@0.7']:.1f} | {100 * r['selection_recall']:.1f} | {100 * r['exhaustive_recall']:.1f} |")


if __name__ == "__main__":
    main()
