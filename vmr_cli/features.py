"""The trained trimmer's inputs for one video, read from what the index stored.

Per clip: the BAM index features (A, B, M), pixel motion energy, a shot-start
flag, and the expensive feature c (the clip's first, middle and last frame
embeddings, pooled).  All come from the video's shard and clip rows: nothing
is decoded or encoded, in training or in search.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

INDEX_KINDS = ("A", "B", "M")  # what an ablation may switch off, with "c"


def clip_features(shard: dict, clips: list[dict], drop: tuple = ()) -> dict:
    """Tensors of one video: A, B, M, c [N, D], motion, shot_start, clip_start, clip_end [N].

    ``drop`` names inputs replaced by zeros (ablations: a trimmer trained without B
    must see no B at search either).
    """
    n = len(clips)
    feats = {kind: torch.from_numpy(np.asarray(shard[kind], dtype=np.float32)) for kind in INDEX_KINDS}
    if "F" in shard and len(shard["F"]) == 2 * n + 1:
        frames = torch.from_numpy(np.asarray(shard["F"], dtype=np.float32))
        pooled = frames[0:2 * n:2] + frames[1:2 * n:2] + frames[2:2 * n + 1:2]
        feats["c"] = F.normalize(pooled, dim=-1)
    else:  # a shard from before frames were stored: the middle frame is what there is
        feats["c"] = feats["A"].clone()
    shots = torch.tensor([c["shot"] if c["shot"] is not None else 0 for c in clips])
    start = torch.ones(n)
    start[1:] = (shots[1:] != shots[:-1]).float()
    feats["shot_start"] = start
    feats["motion"] = torch.tensor([c["motion"] or 0.0 for c in clips], dtype=torch.float32)
    feats["clip_start"] = torch.tensor([c["start"] for c in clips], dtype=torch.float32)
    feats["clip_end"] = torch.tensor([c["end"] for c in clips], dtype=torch.float32)
    for name in drop:
        feats[name] = torch.zeros_like(feats[name])
    return feats


def batch_of(videos: list[dict], queries: torch.Tensor, tokens: list[torch.Tensor] | None = None) -> dict:
    """A padded Trimmer batch of B videos' features (one query each) [B, N, ...]; with ``tokens``
    (each query's token features [L_i, D]) also tokens [B, L, D] and token_mask [B, L], padded
    with zeros to the longest."""
    n = max(v["A"].shape[0] for v in videos)
    valid = torch.zeros(len(videos), n, dtype=torch.bool)
    out = {}
    for key in ("A", "B", "M", "c", "motion", "shot_start", "clip_start", "clip_end"):
        first = videos[0][key]
        padded = torch.zeros((len(videos), n) + tuple(first.shape[1:]), dtype=first.dtype)
        for i, v in enumerate(videos):
            padded[i, :v[key].shape[0]] = v[key]
        out[key] = padded
    for i, v in enumerate(videos):
        valid[i, :v["A"].shape[0]] = True
    out["valid"] = valid
    out["query"] = queries
    if tokens is not None:
        longest = max(t.shape[0] for t in tokens)
        out["tokens"] = torch.zeros(len(tokens), longest, tokens[0].shape[-1])
        out["token_mask"] = torch.zeros(len(tokens), longest, dtype=torch.bool)
        for i, t in enumerate(tokens):
            out["tokens"][i, :t.shape[0]] = t
            out["token_mask"][i, :t.shape[0]] = True
    return out
