"""A query contrasted with itself less each word, for ranking across the library (issue 14).

    python bench/query_contrast.py [--lambdas 0 0.1 0.3] [--seeds 0 1 2] [--model DIR]

The corpus misses are windows of the query's colour and another shape (bench/corpus_errors.py).
Here the query's embedding q is replaced by q + λ·Σ_w (q − q without word w), normalised, so that
what each word adds (the shape's share against the colour's and the scene's) weighs more; then
``vmr eval`` on the fixed synthetic worlds (10 videos × 120 s), trimmed search, tiny CLIP by
default.  Prints R1@0.5 moment retrieval / corpus per seed and λ (λ 0: vmr as it is).  Synthetic-
world numbers only.
"""

from __future__ import annotations

import argparse

from common import OUT, TINY_MODEL, cached_world, library_for


def main() -> None:
    import torch

    from vmr_cli import encoders
    from vmr_cli.evaluate import evaluate
    from vmr_cli.library import Library

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.1, 0.3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", default=str(TINY_MODEL), help="encoder folder (default: the tiny CLIP)")
    args = parser.parse_args()
    encode_text = encoders.ClipEncoder.encode_text
    weight = [0.0]

    def contrasted(self, texts):
        if len(texts) != 1 or not weight[0]:
            return encode_text(self, texts)
        words = texts[0].split()
        without = [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]
        embedded = encode_text(self, without + texts)
        q = embedded[-1]
        return torch.nn.functional.normalize(q + weight[0] * (q[None] - embedded[:-1]).sum(0), dim=-1)[None]

    encoders.ClipEncoder.encode_text = contrasted
    print(f"| λ | {' | '.join(f'seed {s}' for s in args.seeds)} |")
    print("|---" * (len(args.seeds) + 1) + "|")
    for lam in args.lambdas:
        weight[0] = lam
        cells = []
        for seed in args.seeds:
            folder = OUT / f"eval_world_10v_120s_seed{seed}"
            cached_world(folder, 10, 120, seed)
            library = Library(str(library_for(folder, args.model)))
            report = evaluate(library, str(folder / "annotations.jsonl"), str(folder), model=args.model,
                              progress=False)
            library.close()
            cells.append(f"{100 * report['single']['R1@0.5']:.1f} / {100 * report['corpus']['R1@0.5']:.1f}")
        print(f"| {lam:g} | {' | '.join(cells)} |", flush=True)
    encoders.ClipEncoder.encode_text = encode_text


if __name__ == "__main__":
    main()
