"""Why corpus search misses: the top result of every query of a synthetic world, classified.

    python bench/corpus_errors.py [--videos 10] [--duration 120] [--seed 0] [--model DIR] [--exhaustive] [--moment]
                                  [--max-videos 10] [--beside VIDEOS DURATION SEED]

Runs each query of the world against the whole library (the corpus setting of
``vmr eval``) with the trained tiny CLIP (or ``--model``) and sorts its top result into:

- right: the right video, IoU >= 0.5 with the moment;
- right video, poor overlap: the right video, IoU < 0.5;
- wrong video, then by what the window shows there (from the world's plan): the
  object overlapping it longest (an event on a tie), an event or a distractor
  (the world's reserved colour+shape pairs) of the same colour, of the same
  shape, or unrelated; else no object at all.

``--moment`` searches each query in its own video instead (moment retrieval) and
sorts a miss by what its window shows besides the query's event, the same way.
In the corpus setting it also counts how often the right video is among the
candidate videos the coarse FAISS stage hands on (``--max-videos``, as ``vmr
search``): in libraries of more videos than that, a video left out there cannot
be found at all.  ``--beside`` indexes a second world's videos into the same
library (its queries are not asked): a library of short and long videos mixed.

Prints the counts and one line per miss, so the cause of each remaining error
is visible.  Synthetic-world numbers only.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from common import OUT, TINY_MODEL, cached_world, library_for


def classify(result: dict, query_event: dict, plans: dict, path_of: dict, moment: bool = False) -> str:
    """The category of a top result for the query whose event is query_event.  ``moment``: the
    search was in the query's own video, so a miss there is sorted by what its window shows."""
    from vmr_cli.metrics import temporal_iou

    vid = next((v for v, p in path_of.items() if p == result["video"]), None)
    window = (result["start"], result["end"])
    if vid == query_event["vid"]:
        iou = temporal_iou(window, (query_event["start"], query_event["end"]))
        if iou >= 0.5:
            return "right"
        if not moment:
            return "right video, poor overlap"
        return "own video: " + shown(window, plans[vid], query_event, own=True)
    return "wrong video: " + (shown(window, plans[vid], query_event) if vid else "no object")


def shown(window, plan: dict, query_event: dict, own: bool = False) -> str:
    """What the window shows most of, from the world's plan: the object overlapping it longest
    (an event where an event and a distractor overlap it as long), an event or distractor of the
    query's colour, of its shape, or unrelated; or no object (``own``: the query's event does not
    count)."""
    def overlap(ob) -> float:
        return min(window[1], ob["end"]) - max(window[0], ob["start"])

    candidates = [(overlap(ob), kind == "events", ob, what)
                  for kind, what in (("events", "event"), ("distractors", "distractor")) for ob in plan[kind]
                  if overlap(ob) > 0 and not (own and ob.get("query") == query_event["query"])]
    if not candidates:
        return "no object" + (" but the query's event" if own else "")
    _, _, best, what = max(candidates, key=lambda c: c[:2])
    if best["colour"] == query_event["colour"]:
        return f"{what} of the same colour"
    if best["shape"] == query_event["shape"]:
        return f"{what} of the same shape"
    return f"unrelated {what}"


def main() -> None:
    from examples.synthetic_world import plan_world
    from vmr_cli.indexer import index_paths
    from vmr_cli.library import Library
    from vmr_cli.search import Searcher, SearchOptions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10)
    parser.add_argument("--duration", type=float, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=str(TINY_MODEL), help="encoder folder (default: the tiny CLIP)")
    parser.add_argument("--exhaustive", action="store_true")
    parser.add_argument("--moment", action="store_true",
                        help="each query in its own video (moment retrieval), not the whole library")
    parser.add_argument("--max-videos", type=int, default=SearchOptions.max_videos,
                        help="candidate videos searched per query, as vmr search --max-videos")
    parser.add_argument("--beside", nargs=3, type=float, metavar=("VIDEOS", "DURATION", "SEED"),
                        help="also index this world's videos into the library (not its queries)")
    args = parser.parse_args()
    folder = OUT / f"eval_world_{args.videos}v_{args.duration:g}s_seed{args.seed}"
    records = cached_world(folder, args.videos, args.duration, args.seed)
    plans = {p["video_id"]: p for p in plan_world(args.videos, args.duration, args.seed)}
    events = {ev["query"]: dict(ev, vid=vid) for vid, p in plans.items() for ev in p["events"]}
    folders, name = [folder], library_for(folder, args.model)
    if args.beside:
        videos, duration, seed = int(args.beside[0]), args.beside[1], int(args.beside[2])
        other = OUT / f"eval_world_{videos}v_{duration:g}s_seed{seed}"
        cached_world(other, videos, duration, seed)
        folders.append(other)
        name = name.with_name(f"{name.name}_beside_{other.name}")
    library = Library(str(name))
    index_paths(library, [str(f) for f in folders], model=args.model, progress=False)
    path_of = {vid: str(folder / f"{vid}.mp4") for vid in plans}
    if args.beside:  # its videos by path, as their ids repeat this world's
        for p in plan_world(videos, duration, seed):
            key = f"{other.name}/{p['video_id']}"
            plans[key], path_of[key] = p, str(other / f"{p['video_id']}.mp4")
    searcher = Searcher(library, frame_cache=False)
    counts, lines, among, in_beside = Counter(), [], 0, 0
    for rec in records:
        own = path_of[rec["vid"]] if args.moment else None
        options = SearchOptions(exhaustive=args.exhaustive, only_video=own, max_videos=args.max_videos)
        found = searcher.search(rec["query"], options, log=False)
        if not args.moment:  # the coarse stage again, as the search ran it: was the right video handed on?
            q = searcher.encoder.encode_text([rec["query"]])[0]
            among += path_of[rec["vid"]] in {v["path"] for v in searcher._candidates(q, options)[0]}
        top = found["results"][0] if found["results"] else None
        in_beside += bool(args.beside and top and top["video"].startswith(str(other) + "/"))
        kind = classify(top, events[rec["query"]], plans, path_of, moment=args.moment) if top else "no result"
        counts[kind] += 1
        if kind != "right":
            where = f"{top['video'].rsplit('/', 1)[-1]} {top['start']:.1f}-{top['end']:.1f}" if top else "-"
            truth = f"{rec['vid']} {rec['relevant_windows'][0][0]:.1f}-{rec['relevant_windows'][0][1]:.1f}"
            lines.append(f"  {kind:<40} {rec['query']!r}: got {where} ({top['score']:.3f}), truth {truth}")
    n = len(records)
    print(json.dumps(dict(counts), indent=2))
    beside = f" (library: these and {folders[1].name})" if args.beside else ""
    print(f"\n{args.videos} videos x {args.duration:g} s, seed {args.seed}{beside}, {n} queries, "
          f"{'exhaustive' if args.exhaustive else 'trimmed'} search, "
          f"{'moment retrieval (each query in its own video)' if args.moment else 'corpus setting'}\n")
    print("| top result | queries | share |\n|---|---|---|")
    shows = [kind for what in ("event", "distractor")
             for kind in (f"{what} of the same colour", f"{what} of the same shape", f"unrelated {what}")]
    order = (["right", "right video, poor overlap"] + [f"own video: {k}" for k in shows]
             + ["own video: no object but the query's event"] + [f"wrong video: {k}" for k in shows]
             + ["wrong video: no object", "no result"])
    for kind in order:
        if counts[kind]:
            print(f"| {kind} | {counts[kind]} | {100 * counts[kind] / n:.1f} % |")
    if not args.moment:
        print(f"\nthe right video among the {args.max_videos} candidate videos of the coarse stage: "
              f"{among} of {n} ({100 * among / n:.1f} %)")
    if args.beside:
        print(f"top result in a video of {other.name}: {in_beside} of {n} ({100 * in_beside / n:.1f} %)")
    print("\nmisses:\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
