"""Does the trained trimmer read the query's token features?  Its own windows, without the timeline.

    python bench/token_use.py [--eval-seeds 0 1 2] [--trimmers DIR ...]

Search ranks the network's windows by the stored timeline's score (the pooled
query's cosine), so token features can only change *where* the network puts
windows.  This scores the network alone: each query of a benchmark world
against its own video, the network's top window by its own score (start x
end probability times highlight), R1@0.5; for a trimmer trained on tokens
also with another query's tokens (the next query of the world, its pooled
embedding kept), and how many top windows that moves.  Default trimmers: the
four ``bench/trimmer.py --epochs 10 --only notok,tok`` trains with --seed 0
and 1 (bench/out/).  Synthetic worlds, tiny CLIP.
"""

from __future__ import annotations

import argparse
import json

from common import OUT, TINY_MODEL, library_for

DEFAULT = [f"trimmer_{v}_100-123_e10{s}" for s in ("", "_seed1") for v in ("notok", "tok")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trimmers", nargs="+", default=[str(OUT / name) for name in DEFAULT])
    args = parser.parse_args()
    from vmr_cli.encoders import ClipEncoder
    from vmr_cli.features import clip_features
    from vmr_cli.library import Library
    from vmr_cli.trained import TrainedTrimmer
    from vmr_models.moment_head import temporal_iou

    encoder = ClipEncoder(str(TINY_MODEL))
    print("| trimmer | world | network top-1 R1@0.5 | with the next query's tokens | top windows moved |")
    print("|---|---|---|---|---|")
    for seed in args.eval_seeds:
        world = OUT / f"eval_world_10v_120s_seed{seed}"
        library = Library(str(library_for(world)))
        records = [json.loads(line) for line in (world / "annotations.jsonl").read_text().splitlines() if line]
        pooled, tokens, mask = encoder.encode_text_tokens([r["query"] for r in records])
        own = [tokens[i][mask[i]] for i in range(len(records))]
        features = {}
        for r in records:
            if r["vid"] not in features:
                row = library.catalog.video_by_path(str(world / f"{r['vid']}.mp4"))
                features[r["vid"]] = clip_features(library.vectors.read_shard(row["id"], row["vectors_token"]),
                                                   library.catalog.clips(row["id"]))
        for folder in args.trimmers:
            trimmer = TrainedTrimmer(folder, library)

            def top(i, query_tokens):
                found = trimmer.windows(features[records[i]["vid"]], pooled[i], 1, query_tokens)
                return found[0][:2] if found else None

            def recall(windows):
                return 100 * sum(w is not None and max(temporal_iou(w, tuple(x)) for x in r["relevant_windows"]) >= 0.5
                                 for w, r in zip(windows, records)) / len(records)

            mine = [top(i, own[i]) for i in range(len(records))]
            line = f"| {folder.rsplit('/', 1)[-1]} | seed {seed} | {recall(mine):.1f} |"
            if trimmer.uses_tokens:
                other = [top(i, own[(i + 1) % len(records)]) for i in range(len(records))]
                moved = sum(a != b for a, b in zip(mine, other))
                line += f" {recall(other):.1f} | {moved} of {len(records)} |"
            else:
                line += " – | – |"
            print(line, flush=True)
        library.close()


if __name__ == "__main__":
    main()
