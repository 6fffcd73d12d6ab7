"""What a window's score should be relative to, for ranking across the library (issue 14).

    python bench/corpus_scores.py [--videos 10] [--duration 120] [--seeds 0 1 2] [--model DIR]

vmr ranks windows of different videos by their absolute score (the window's
mean query similarity plus a quarter of its contrast with the frames around
it).  Each variant here re-expresses every window's score against a level of
its own video, computed from the stored timeline (no decoding), and runs
``vmr eval`` on the fixed synthetic worlds.  A per-video change of scale or
offset cannot reorder windows inside one video, so moment retrieval stays
as it is and only the corpus setting moves.  Synthetic-world numbers only.
"""

from __future__ import annotations

import argparse

import numpy as np
from common import OUT, TINY_MODEL, cached_world, library_for

# name -> (what the score is taken relative to, score of the window given the video's stored sims)
VARIANTS = {
    "absolute": ("nothing: the default", lambda score, sims, base: score),
    "minus background / 2": ("half the video's median similarity", lambda score, sims, base: score - 0.5 * base),
    "minus background": ("the video's median similarity", lambda score, sims, base: score - base),
    "plus background / 4": ("a quarter of the median, added", lambda score, sims, base: score + 0.25 * base),
    "z-score": ("median and spread of the video's similarities",
                lambda score, sims, base: (score - base) / (float(np.std(sims)) + 1e-6)),
    "minus q90 / 2": ("half the video's 90th percentile",
                      lambda score, sims, base: score - 0.5 * float(np.quantile(sims, 0.9))),
    "minus top 5 % / 2": ("half the mean of the video's best 5 % of frames",
                          lambda score, sims, base: score - 0.5 * _top_mean(sims, 0.05)),
}


def _top_mean(sims, share: float) -> float:
    return float(np.sort(sims)[-max(1, int(len(sims) * share)):].mean())


def main() -> None:
    from vmr_cli import search
    from vmr_cli.evaluate import evaluate
    from vmr_cli.library import Library

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10)
    parser.add_argument("--duration", type=float, default=120)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", default=str(TINY_MODEL), help="encoder folder (default: the tiny CLIP)")
    args = parser.parse_args()
    kept = search._Video.kept
    rows = {}
    for name, (_what, relative) in VARIANTS.items():
        def relative_kept(self, windows, limit, relative=relative):
            return [(s, e, relative(score, self.sims, self.baseline)) for s, e, score in kept(self, windows, limit)]

        search._Video.kept = relative_kept
        for seed in args.seeds:
            folder = OUT / f"eval_world_{args.videos}v_{args.duration:g}s_seed{seed}"
            cached_world(folder, args.videos, args.duration, seed)
            library = Library(str(library_for(folder, args.model)))
            report = evaluate(library, str(folder / "annotations.jsonl"), str(folder), model=args.model,
                              progress=False)
            library.close()
            rows.setdefault(name, []).append((report["single"]["R1@0.5"], report["corpus"]["R1@0.5"],
                                              report["corpus"]["R5@0.5"]))
    search._Video.kept = kept
    print(f"\n{args.videos} videos x {args.duration:g} s, seeds {' '.join(map(str, args.seeds))}, trimmed; "
          "R1@0.5 (moment retrieval / corpus), corpus R5@0.5\n")
    print("| score relative to | " + " | ".join(f"seed {s}" for s in args.seeds) + " | corpus mean |")
    print("|---" * (len(args.seeds) + 2) + "|")
    for name, (what, _relative) in VARIANTS.items():
        cells = " | ".join(f"{100 * a:.1f} / **{100 * b:.1f}**, R5 {100 * c:.1f}" for a, b, c in rows[name])
        print(f"| {what} | {cells} | {100 * np.mean([b for _a, b, _c in rows[name]]):.1f} |")


if __name__ == "__main__":
    main()
