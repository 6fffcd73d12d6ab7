"""The trained trimmer against the parameter-free path, with ablations, on synthetic worlds.

    python bench/trimmer.py [--train-seeds 100-123] [--epochs 20] [--eval-seed 0] [--only full,noB,...] [--model DIR]
                            [--seed N]

Training data: worlds of 10 videos x 60 s for each training seed (generated
once into bench/out/), gathered into one folder of links with one annotation
file.  Evaluation: the world of ``--eval-seed`` with 10 videos x 120 s (longer
than any training video; the same world as ``bench/world_eval.py``), moment
retrieval (each query against its own video) and corpus (against all ten).
Each variant is trained once into bench/out/trimmer_<variant> (an existing
finished one is reused: delete the folder to retrain); ``--seed`` is vmr
train's (initialisation, order, negatives: another run of the same recipe).  Variants: full
(as ``vmr train`` trains by default), notok and tok (the pooled query
embedding only, ``--no-tokens``, the default; and with the query's token
features too, ``vmr train --tokens``), noA/noB/noM (that input zero in
training and search),
nodistill (student without the distillation loss), K1 (one selection step
instead of three).
All numbers are synthetic-world numbers with the tiny CLIP (or ``--model``: its own libraries
and trimmer folders).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from common import OUT, TINY_MODEL, cached_world, library_for, model_suffix

VARIANTS = {"full": {}, "notok": {"tokens": False}, "tok": {"tokens": True}, "noA": {"drop": ("A",)},
            "noB": {"drop": ("B",)}, "noM": {"drop": ("M",)}, "nodistill": {"distill": False}, "K1": {"steps": 1}}


def seeds(spec: str) -> list[int]:
    lo, _, hi = spec.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def training_folder(train_seeds: list[int]):
    """One folder of links to every training world's videos, and their annotations with prefixed ids
    (video and query: vmr refuses a qid given twice since 2026-12-01)."""
    folder = OUT / ("train_combined" if train_seeds == list(range(100, 124))
                    else f"train_combined_{train_seeds[0]}-{train_seeds[-1]}")
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for seed in train_seeds:
        world = OUT / f"train_world_10v_60s_seed{seed}"
        for rec in cached_world(world, 10, 60, seed):
            vid = f"s{seed}_{rec['vid']}"
            link = folder / f"{vid}.mp4"
            if not link.exists():
                os.symlink(world / f"{rec['vid']}.mp4", link)
            lines.append(json.dumps(dict(rec, vid=vid, qid=f"s{seed}_{rec['qid']}")))  # qids repeat across worlds
    (folder / "annotations.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-seeds", default="100-123")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--eval-seed", type=int, default=0)
    parser.add_argument("--only", default=",".join(VARIANTS))
    parser.add_argument("--model", default=str(TINY_MODEL), help="encoder folder (default: the tiny CLIP)")
    parser.add_argument("--seed", type=int, default=0, help="vmr train --seed (folders of seeds but 0 end _seedN)")
    args = parser.parse_args()
    from vmr_cli.evaluate import evaluate
    from vmr_cli.library import Library
    from vmr_cli.train import TrainOptions, train

    train_seeds = seeds(args.train_seeds)
    data = training_folder(train_seeds)
    eval_world = OUT / f"eval_world_10v_120s_seed{args.eval_seed}"
    cached_world(eval_world, 10, 120, args.eval_seed)
    eval_library = Library(str(library_for(eval_world, args.model)))
    suffix = model_suffix(args.model)
    train_library = Library(str(OUT / (data.name.replace("train_combined", "library_train") + suffix)))
    rows = []

    def measure(name: str, trimmer: str | None) -> None:
        found = evaluate(eval_library, str(eval_world / "annotations.jsonl"), str(eval_world),
                         model=args.model, progress=False, trimmer=trimmer)
        rows.append({"variant": name, "single": found["single"], "corpus": found["corpus"],
                     "frames": found["cost"]["frames_encoded"]})
        print(f"{name}: {json.dumps(rows[-1])}", file=sys.stderr)

    measure("parameter-free", None)
    for name in args.only.split(","):
        out = OUT / f"trimmer_{name}_{args.train_seeds}_e{args.epochs}{suffix}{f'_seed{args.seed}' if args.seed else ''}"
        options = TrainOptions(epochs=args.epochs, seed=args.seed, **VARIANTS[name])
        train(train_library, str(data / "annotations.jsonl"), str(data), str(out), options=options,
              model=args.model, progress=False)
        measure(name, str(out))
    (OUT / "trimmer.json").write_text(json.dumps(rows, indent=2))
    print(f"\ntrained on worlds {args.train_seeds} (10 x 60 s each), {args.epochs} epochs, seed {args.seed}; evaluated on world "
          f"seed {args.eval_seed} (10 x 120 s); percent\n")
    print("| variant | R1@0.5 | R1@0.7 | mIoU | corpus R1@0.5 | corpus R1@0.7 | corpus mIoU | frames encoded / query |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        s, c = r["single"], r["corpus"]
        print(f"| {r['variant']} | {100 * s['R1@0.5']:.1f} | {100 * s['R1@0.7']:.1f} | {100 * s['mIoU']:.1f} | "
              f"{100 * c['R1@0.5']:.1f} | {100 * c['R1@0.7']:.1f} | {100 * c['mIoU']:.1f} | {r['frames']:.1f} |")


if __name__ == "__main__":
    main()
