"""Top-1 scores of queries that have a moment in the library against queries that have none.

    python bench/min_score.py

Two synthetic worlds (seeds 11 and 12, 4 videos x 90 s) and the trained tiny
CLIP: every annotated query (is its corpus top-1 right?) and one query per
event colour+shape absent from the world.  This is the measurement behind the
default of ``vmr search --min-score``.  Synthetic-world numbers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import TINY_MODEL


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help, and no stray options
    from examples.synthetic_world import ACTIONS, EVENT_COMBOS, generate_world
    from vmr_cli.indexer import index_paths
    from vmr_cli.library import Library
    from vmr_cli.metrics import temporal_iou
    from vmr_cli.search import Searcher, SearchOptions

    right, wrong, absent = [], [], []
    actions = list(ACTIONS.values())
    for seed in (11, 12):
        folder = Path(tempfile.mkdtemp(prefix="vmr-min-score-"))
        records = generate_world(folder / "videos", videos=4, duration=90, seed=seed)
        library = Library(str(folder / "library"))
        index_paths(library, [str(folder / "videos")], model=str(TINY_MODEL), progress=False)
        searcher = Searcher(library, frame_cache=False)
        present = set()
        for rec in records:
            words = rec["query"].lower().split()
            present.add((words[1], words[2]))  # "{article} {colour} {shape} ..."
            top = searcher.search(rec["query"], SearchOptions(top_k=1), log=False)["results"][0]
            hit = (top["video"].endswith(f"/{rec['vid']}.mp4")
                   and temporal_iou((top["start"], top["end"]), rec["relevant_windows"][0]) >= 0.5)
            (right if hit else wrong).append(top["score"])
        for i, (colour, shape) in enumerate(EVENT_COMBOS):
            if (colour, shape) not in present:
                query = f"the {colour} {shape} {actions[i % len(actions)]}"
                absent.append(searcher.search(query, SearchOptions(top_k=1), log=False)["results"][0]["score"])
        library.close()
    print(json.dumps({"right_top1": sorted(right), "wrong_top1": sorted(wrong),
                      "absent_query_top1": sorted(absent)}, indent=1))
    print(f"right top-1: {len(right)} of {len(right) + len(wrong)}, scores {min(right):.2f}-{max(right):.2f}; "
          f"queries with no match: {len(absent)}, scores {min(absent):.2f}-{max(absent):.2f}")


if __name__ == "__main__":
    main()
