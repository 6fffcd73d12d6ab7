"""Can a learned frame-query similarity see what the encoder's cosine misses?  (issues 13, 14)

    python bench/rescoring.py [--kind full diagonal] [--epochs 30] [--eval-seeds 0 1 2]
    python bench/rescoring.py --actions

Every miss of the seed-0 benchmark's moment retrieval is a window on an object
of the query's colour and another shape.  The trained trimmer only chooses
where; this asks whether training can sharpen the score itself.  On the stored
frame embeddings of the training worlds (seeds 100-123, ``bench/trimmer.py``'s
library), it learns a residual re-scoring of the cosine, ``f.q + f.(W q)``
(``full``: W is D x D; ``diagonal``: one weight per dimension), with an
InfoNCE loss: a query against every stored frame of its own video and of 4
other videos, the frames inside its moment the positives.  Seeds 120-123 are
held out for the validation loss.  Then the parameter-free search runs on the
benchmark worlds with the re-scored timeline (and refined edges), against
the cosine.  Synthetic world, tiny CLIP; R1@0.5 moment retrieval / corpus.
"""

from __future__ import annotations

import argparse
import json
import random

import numpy as np
import torch
from common import OUT, TINY_MODEL, library_for


def stored_frames(library) -> dict:
    """video name -> (frame embeddings [T, D], times [T]) from the library's shards."""
    out = {}
    for row in library.catalog.videos("ok"):
        shard = library.vectors.read_shard(row["id"], row["vectors_token"])
        name = row["path"].rsplit("/", 1)[-1].rsplit(".", 1)[0]
        out[name] = (torch.tensor(np.asarray(shard["F"], dtype=np.float32)),
                     torch.tensor(np.asarray(shard["F_t"], dtype=np.float32)))
    return out


def train_rescoring(kind: str, epochs: int, seed: int = 0) -> tuple[torch.Tensor, list]:
    from vmr_cli.encoders import ClipEncoder
    from vmr_cli.library import Library

    library = Library(str(OUT / "library_train"))
    videos = stored_frames(library)
    library.close()
    records = [json.loads(line) for line in open(OUT / "train_combined" / "annotations.jsonl")]
    queries = ClipEncoder(str(TINY_MODEL)).encode_text([r["query"] for r in records])
    names = sorted(videos)
    d = queries.shape[1]
    w = torch.nn.Parameter(torch.zeros((d, d) if kind == "full" else (d,)))
    optimiser = torch.optim.Adam([w], lr=1e-3 if kind == "full" else 3e-3)

    def example(i, rng):
        own = records[i]["vid"]
        frames, positive = [], []
        for name in [own] + rng.sample([n for n in names if n != own], 4):
            f, t = videos[name]
            inside = torch.zeros(len(t), dtype=torch.bool)
            if name == own:
                for s, e in records[i]["relevant_windows"]:
                    inside |= (t >= s) & (t <= e)
            frames.append(f)
            positive.append(inside)
        return torch.cat(frames), torch.cat(positive)

    def loss(i, frames, positive):
        q = queries[i]
        logits = (frames @ q + frames @ (w @ q if kind == "full" else w * q)) / 0.05
        return torch.logsumexp(logits, 0) - torch.logsumexp(logits[positive], 0)

    held_out = [i for i, r in enumerate(records) if int(r["vid"][1:4]) >= 120]
    training = [i for i, r in enumerate(records) if int(r["vid"][1:4]) < 120]
    fixed = {i: example(i, random.Random(i)) for i in range(len(records))}

    def mean_loss(items):
        with torch.no_grad():
            return float(torch.stack([loss(i, *fixed[i]) for i in items if fixed[i][1].any()]).mean())

    history = [(0, mean_loss(training), mean_loss(held_out))]
    rng = random.Random(seed)
    for epoch in range(epochs):
        rng.shuffle(training)
        for at in range(0, len(training), 32):
            batch = [example(i, rng) for i in training[at:at + 32]]
            total = torch.stack([loss(i, *b) for i, b in zip(training[at:at + 32], batch) if b[1].any()]).mean()
            optimiser.zero_grad()
            total.backward()
            optimiser.step()
        if (epoch + 1) % 10 == 0 or epoch + 1 == epochs:
            history.append((epoch + 1, mean_loss(training), mean_loss(held_out)))
    matrix = w.detach() if kind == "full" else torch.diag(w.detach())
    return matrix, history


def evaluate_with(matrix, seed: int) -> tuple[float, float]:
    """R1@0.5 moment retrieval and corpus of the parameter-free search, the timeline re-scored."""
    import vmr_cli.search as search
    from vmr_cli.evaluate import evaluate
    from vmr_cli.library import Library

    w = None if matrix is None else matrix.numpy()
    stored, similarities = search.Searcher._stored, search._FrameSource.similarities

    def rescored(e, q):
        return e @ q + e @ (w @ q)

    def stored_rescored(self, video, q, stats):
        v = stored(self, video, q, stats)
        if v is not None:
            shard = self.library.vectors.read_shard(v.row["id"], v.row["vectors_token"])
            v.sims = rescored(np.asarray(shard["F"], dtype=np.float32), q.numpy()).astype(np.float64)
            v.baseline = float(np.median(v.sims))
        return v

    if w is not None:
        search.Searcher._stored = stored_rescored
        search._FrameSource.similarities = lambda self, times: rescored(
            self.embeddings(times).numpy(), self.q.numpy()).tolist()
    try:
        world = OUT / f"eval_world_10v_120s_seed{seed}"
        library = Library(str(library_for(world, TINY_MODEL)))
        found = evaluate(library, str(world / "annotations.jsonl"), str(world), model=str(TINY_MODEL),
                         progress=False)
        library.close()
    finally:
        search.Searcher._stored, search._FrameSource.similarities = stored, similarities
    return 100 * found["single"]["R1@0.5"], 100 * found["corpus"]["R1@0.5"]


def action_probe() -> tuple[float, float, float, float]:
    """Can the action a query names be read off the stored frames, or off the query's embedding?
    A linear probe (8 actions) on training worlds 100-119, its accuracy on 120-123: from the
    frames inside every object's span (last - first, middle, middle - first, last - middle),
    from the pooled text embedding of every event's query, and from its token features
    (``ClipEncoder.encode_text_tokens``, what the trimmer reads since 2026-12-02: their mean and
    their element-wise maximum over the query's tokens).  Returns (frames, query, tokens, chance)."""
    from examples.synthetic_world import ACTIONS, plan_world
    from vmr_cli.encoders import ClipEncoder
    from vmr_cli.library import Library

    library = Library(str(OUT / "library_train"))
    videos = stored_frames(library)
    library.close()
    actions = sorted(ACTIONS)
    spans, labels, held, queries = [], [], [], []
    for seed in range(100, 124):
        for plan in plan_world(10, 60, seed):
            f_all, t = videos[f"s{seed}_{plan['video_id']}"]
            for ob in plan["events"] + plan["distractors"]:
                inside = ((t >= ob["start"]) & (t <= ob["end"])).nonzero().flatten()
                if len(inside) < 3:
                    continue
                f = f_all[inside]
                mid = f[len(f) // 2]
                spans.append(torch.cat([f[-1] - f[0], mid, mid - f[0], f[-1] - mid]))
                labels.append(actions.index(ob["action"]))
                held.append(seed >= 120)
                queries.append(ob.get("query"))

    def probe(x, y, test):
        torch.manual_seed(0)
        layer = torch.nn.Linear(x.shape[1], len(actions))
        optimiser = torch.optim.Adam(layer.parameters(), lr=1e-2, weight_decay=1e-3)
        mean, std = x[~test].mean(0), x[~test].std(0) + 1e-6
        x = (x - mean) / std
        for _ in range(300):
            loss = torch.nn.functional.cross_entropy(layer(x[~test]), y[~test])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            return 100 * float((layer(x[test]).argmax(1) == y[test]).float().mean())

    y, test = torch.tensor(labels), torch.tensor(held)
    from_frames = probe(torch.stack(spans), y, test)
    events = [i for i, q in enumerate(queries) if q]
    text, tokens, mask = ClipEncoder(str(TINY_MODEL)).encode_text_tokens([queries[i] for i in events])
    from_query = probe(text, y[events], test[events])
    keep = mask.unsqueeze(-1)
    bag = torch.cat([(tokens * keep).sum(1) / keep.sum(1), tokens.masked_fill(~keep, -2.0).amax(1)], 1)
    from_tokens = probe(bag, y[events], test[events])
    return from_frames, from_query, from_tokens, 100 / len(actions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", nargs="+", default=["full", "diagonal"], choices=["full", "diagonal"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--actions", action="store_true",
                        help="only the probe: can the named action be read off the frames or the query?")
    args = parser.parse_args()
    if args.actions:
        frames, query, tokens, chance = action_probe()
        print(f"action, held-out worlds: from the stored frames {frames:.1f} %, from the query's embedding "
              f"{query:.1f} %, from its token features {tokens:.1f} % (chance {chance:.1f} %)")
        return
    torch.manual_seed(0)
    rows = [("cosine (the default)", None, [])]
    for kind in args.kind:
        matrix, history = train_rescoring(kind, args.epochs)
        rows.append((f"learned, {kind}", matrix, history))
    print("| similarity | InfoNCE loss, training / held-out worlds (epoch: loss) | "
          + " | ".join(f"seed {s}" for s in args.eval_seeds) + " |")
    print("|---|---|" + "---|" * len(args.eval_seeds))
    for name, matrix, history in rows:
        losses = ", ".join(f"{e}: {a:.3f} / {b:.3f}" for e, a, b in history) or "–"
        scores = [evaluate_with(matrix, s) for s in args.eval_seeds]
        print(f"| {name} | {losses} | " + " | ".join(f"{m:.1f} / {c:.1f}" for m, c in scores) + " |")


if __name__ == "__main__":
    main()
