"""Do long videos win the corpus because they are long?  A length prior, measured (issue 14).

    python bench/length_prior.py [--short 100 60 0] [--long 10 1800 0] [--betas 0 0.005 0.01 0.02 0.05]

In a library of many short and a few long videos (``bench/corpus_errors.py
--beside``), the top result of a short video's query is a window of a long
video most of the time: a 30-minute video has 30 times the windows a one-minute
video has to come near the query by chance.  This asks whether a prior on
length fixes it without costing the long videos' own queries: every window's
score minus ``beta * ln(duration / shortest)`` (so videos of one length keep
their order, and every equal-length benchmark is unchanged), and searches
with every video a candidate (``--max-videos`` = the library), so the coarse
stage does not decide.  Both worlds' queries are asked against the mixed
library; R1@0.5 corpus for each, and the share of top results in long
videos.  Synthetic-world numbers, tiny CLIP (or ``--model``).  A world's
queries are unique only inside it: a long video can hold the same colour,
shape, scene and action as a short world's query (counted here as a miss).
"""

from __future__ import annotations

import argparse
import math

from common import OUT, TINY_MODEL, cached_world, library_for


def main() -> None:
    from vmr_cli import search
    from vmr_cli.indexer import index_paths
    from vmr_cli.library import Library
    from vmr_cli.metrics import temporal_iou
    from vmr_cli.search import Searcher, SearchOptions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", nargs=3, type=float, default=[100, 60, 0], metavar=("VIDEOS", "DURATION", "SEED"))
    parser.add_argument("--long", nargs=3, type=float, default=[10, 1800, 0], metavar=("VIDEOS", "DURATION", "SEED"))
    parser.add_argument("--betas", nargs="+", type=float, default=[0, 0.005, 0.01, 0.02, 0.05])
    parser.add_argument("--model", default=str(TINY_MODEL), help="encoder folder (default: the tiny CLIP)")
    args = parser.parse_args()
    worlds = []
    for videos, duration, seed in (args.short, args.long):
        folder = OUT / f"eval_world_{int(videos)}v_{duration:g}s_seed{int(seed)}"
        worlds.append((folder, cached_world(folder, int(videos), duration, int(seed))))
    # the library bench/corpus_errors.py --beside builds (the same name, so it is indexed once)
    name = library_for(worlds[0][0], args.model)
    library = Library(str(name.with_name(f"{name.name}_beside_{worlds[1][0].name}")))
    index_paths(library, [str(folder) for folder, _ in worlds], model=args.model, progress=False)
    shortest = min(float(v["duration"]) for v in library.catalog.videos("ok"))
    options = SearchOptions(max_videos=len(library.catalog.videos("ok")))
    searcher = Searcher(library, frame_cache=False)
    kept = search._Video.kept
    rows = []
    for beta in args.betas:
        def with_prior(self, windows, limit, beta=beta):
            prior = beta * math.log(max(self.duration, shortest) / shortest)
            return [(s, e, score - prior) for s, e, score in kept(self, windows, limit)]

        search._Video.kept = with_prior
        cells = []
        for folder, records in worlds:
            right = in_long = 0
            for rec in records:
                top = searcher.search(rec["query"], options, log=False)["results"][0]
                truth = rec["relevant_windows"][0]
                right += (top["video"] == str(folder / f"{rec['vid']}.mp4")
                          and temporal_iou((top["start"], top["end"]), truth) >= 0.5)
                in_long += top["video"].startswith(str(worlds[1][0]) + "/")
            cells.append((100 * right / len(records), 100 * in_long / len(records)))
        rows.append((beta, cells))
        print(f"beta {beta}: {cells}", flush=True)
    search._Video.kept = kept
    (short, short_records), (long, long_records) = worlds
    print(f"\nlibrary: {short.name} ({len(short_records)} queries) and {long.name} ({len(long_records)} queries), "
          f"every video a candidate, trimmed; corpus R1@0.5, and top results in a long video\n")
    print("| prior: score - beta ln(duration / shortest) | short videos' queries | long videos' queries "
          "| all queries |\n|---|---|---|---|")
    n_short, n_long = len(short_records), len(long_records)
    for beta, ((r_s, l_s), (r_l, l_l)) in rows:
        both = (r_s * n_short + r_l * n_long) / (n_short + n_long)
        print(f"| beta {beta:g} | {r_s:.1f} (top in a long video {l_s:.1f} %) | {r_l:.1f} "
              f"(top in a long video {l_l:.1f} %) | {both:.1f} |")


if __name__ == "__main__":
    main()
