"""The README's accuracy table: vmr eval on a fixed synthetic world, trimmed and exhaustive.

    python bench/world_eval.py [--videos 10] [--duration 120] [--seed 0] [--model DIR]
                               [--queries N] [--modes trimmed,exhaustive]

Generates the world once (bench/out/), indexes it with the trained tiny CLIP
(or ``--model``, into a library of its own) and runs ``vmr eval`` twice
(trimmed, then exhaustive); prints one table with the uniform-random baseline.
``--queries N`` evaluates N of the world's queries, evenly spaced (long videos
hold hundreds); ``--modes trimmed`` skips exhaustive search, which on long
videos decodes every clip of every candidate video for each query.
Synthetic-world numbers only.
"""

from __future__ import annotations

import argparse
import json

from common import OUT, TINY_MODEL, cached_world, library_for

KEYS = ["R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "R5@0.5", "mAP"]


def main() -> None:
    from vmr_cli.evaluate import evaluate
    from vmr_cli.library import Library

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10)
    parser.add_argument("--duration", type=float, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=str(TINY_MODEL), help="encoder folder (default: the tiny CLIP)")
    parser.add_argument("--queries", type=int, help="evaluate this many queries, evenly spaced (default: all)")
    parser.add_argument("--modes", default="trimmed,exhaustive")
    args = parser.parse_args()
    folder = OUT / f"eval_world_{args.videos}v_{args.duration:g}s_seed{args.seed}"
    records = cached_world(folder, args.videos, args.duration, args.seed)
    annotations = folder / "annotations.jsonl"
    if args.queries and args.queries < len(records):
        picked = records[:: len(records) // args.queries][: args.queries]
        annotations = OUT / f"{folder.name}_{args.queries}q.jsonl"  # beside the world, never in it
        annotations.write_text("".join(json.dumps(r) + "\n" for r in picked))
    library = Library(str(library_for(folder, args.model)))
    reports = {mode: evaluate(library, str(annotations), str(folder),
                              exhaustive=mode == "exhaustive", model=args.model, progress=False)
               for mode in args.modes.split(",")}
    print(json.dumps(reports, indent=2))
    first = next(iter(reports.values()))
    n = first["n_queries"]
    print(f"\n{args.videos} videos x {args.duration:g} s, seed {args.seed}, {n} queries\n")
    print("| setting | search | " + " | ".join(KEYS) + " | clips verified / query | frames encoded / query | s / query |")
    print("|---" * (len(KEYS) + 5) + "|")
    for setting, label in (("single", "moment retrieval"), ("corpus", "corpus moment retrieval")):
        for mode, rep in reports.items():
            cost = rep["cost"]
            print(f"| {label} | {mode} | " + " | ".join(f"{100 * rep[setting][k]:.1f}" for k in KEYS)
                  + f" | {cost['clips_verified']:.1f} | {cost['frames_encoded']:.0f} | {cost['seconds']:.2f} |")
        rnd = first["random"][setting]
        print(f"| {label} | uniform random | " + " | ".join(f"{100 * rnd[k]:.1f}" for k in KEYS) + " | – | – | – |")


if __name__ == "__main__":
    main()
