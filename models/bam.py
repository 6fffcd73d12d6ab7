"""BAM index features: Background, Appearance and Motion, computed once per video.

Index time sees each clip through three frames (first, middle, last) as unit
CLIP embeddings plus tiny uint8 thumbnails. These functions turn them into the
cheap per-clip vectors that search scores against a query, so a search never
has to decode a clip just to decide whether it is worth decoding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

HIST_BINS = 16
# Shot-cut threshold on the per-channel histogram distance (see hist_distance).
# Measured on synthetic 32x32 thumbnails with pixel noise: a box moving inside
# one scene gives ~0.03, a cut to another background ~0.95. 0.35 sits well
# between, leaving room for lighting changes and camera motion within a shot.
# Not yet measured on real footage: gradual transitions (fades, dissolves) will
# usually stay below it, which only makes B's context window a little wider.
DEFAULT_CUT_THRESHOLD = 0.35
_GRAY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights


def _check_thumbs(*thumbs: torch.Tensor) -> None:
    shape = thumbs[0].shape
    for t in thumbs:
        if t.dim() != 4 or t.shape[1] != 3 or t.shape != shape:
            raise ValueError(f"thumbnails must share a shape [N, 3, h, w], got {tuple(t.shape)}")


def _gray(thumbs: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, h, w] -> float grayscale in [0, 1], [N, h, w]."""
    w = torch.tensor(_GRAY, dtype=torch.float32).view(1, 3, 1, 1)
    return (thumbs.to(torch.float32) * w).sum(1) / 255.0


def motion_energy(first_thumbs: torch.Tensor, last_thumbs: torch.Tensor) -> torch.Tensor:
    """Mean absolute grayscale difference between a clip's first and last frame, in [0, 1].

    A pixel-level complement to the embedding difference M: it sees motion
    that a CLIP embedding may be invariant to (a small object moving).
    """
    _check_thumbs(first_thumbs, last_thumbs)
    if first_thumbs.shape[0] == 0:
        return torch.zeros(0)
    return (_gray(first_thumbs) - _gray(last_thumbs)).abs().flatten(1).mean(1)


def colour_histograms(thumbs: torch.Tensor, bins: int = HIST_BINS) -> torch.Tensor:
    """Per-channel normalised histograms, uint8 [N, 3, h, w] -> float [N, 3, bins]."""
    n, c = thumbs.shape[:2]
    idx = (thumbs.to(torch.long) * bins // 256).flatten(2)  # [N, 3, h*w]
    hist = torch.zeros(n, c, bins).scatter_add_(2, idx, torch.ones(idx.shape))
    return hist / idx.shape[2]


def hist_distance(h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
    """Half the L1 distance between normalised histograms, averaged over channels.

    Per channel it is the fraction of pixel mass that must move to another
    bin (0 = identical, 1 = disjoint), so it is bounded, insensitive to small
    shifts and noise, and has the same meaning at any thumbnail size.
    """
    return 0.5 * (h1 - h2).abs().sum(-1).mean(-1)


def shot_ids(first_thumbs: torch.Tensor, middle_thumbs: torch.Tensor,
             last_thumbs: torch.Tensor, threshold: float = DEFAULT_CUT_THRESHOLD) -> torch.Tensor:
    """Shot index per clip (0, 1, ...; non-decreasing), from hard cuts between clips.

    A shot starts at clip i when hist_distance(last[i-1], first[i]) or
    hist_distance(middle[i-1], middle[i]) exceeds ``threshold``. The first
    pair catches a cut at the clip boundary; the second catches a cut inside
    clip i-1 (after its middle frame) that the boundary pair misses.
    """
    _check_thumbs(first_thumbs, middle_thumbs, last_thumbs)
    return shot_ids_from_histograms(*(colour_histograms(t) for t in (first_thumbs, middle_thumbs, last_thumbs)),
                                    threshold=threshold)


def shot_ids_from_histograms(first: torch.Tensor, middle: torch.Tensor, last: torch.Tensor,
                             threshold: float = DEFAULT_CUT_THRESHOLD) -> torch.Tensor:
    """``shot_ids`` from precomputed ``colour_histograms`` [N, 3, bins] of each clip's frames.

    The indexer keeps only these (a few hundred bytes per clip) instead of
    thumbnails, so a long video costs little memory.
    """
    n = first.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    boundary = hist_distance(last[:-1], first[1:])
    middles = hist_distance(middle[:-1], middle[1:])
    cut = (boundary > threshold) | (middles > threshold)
    return torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(cut.long(), 0)])


def run_bounds(shots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last index of the run of equal ids containing each position."""
    n = shots.shape[0]
    idx = torch.arange(n)
    new_run = torch.ones(n, dtype=torch.bool)
    new_run[1:] = shots[1:] != shots[:-1]
    run_start = torch.cummax(torch.where(new_run, idx, torch.zeros_like(idx)), 0).values
    end_run = torch.ones(n, dtype=torch.bool)
    end_run[:-1] = new_run[1:]
    rev = torch.where(end_run, idx, torch.full_like(idx, n - 1)).flip(0)
    run_end = (-torch.cummax(-rev, 0).values).flip(0)
    return run_start, run_end


def bam_features(first: torch.Tensor, middle: torch.Tensor, last: torch.Tensor,
                 shots: torch.Tensor, window: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A, B, M) per clip, all float32 [N, D].

    A: the normalised middle-frame embedding (what the clip shows).
    B: the normalised mean of A over clips j with |i - j| <= window in the
       same shot (the scene around the clip; stops at cuts so context from
       another scene does not leak in). Shots are taken as contiguous runs of
       equal ids, which is what shot_ids produces.
    M: last - first, not normalised, so a static clip has a small M and
       M's length says how much the content changed.
    """
    if not (first.shape == middle.shape == last.shape) or first.dim() != 2:
        raise ValueError("first, middle, last must share a shape [N, D]")
    if shots.shape != (first.shape[0],):
        raise ValueError("shots must be [N]")
    a = F.normalize(middle.to(torch.float32), dim=1)
    m = last.to(torch.float32) - first.to(torch.float32)
    n = a.shape[0]
    if n == 0:
        return a, a.clone(), m
    run_start, run_end = run_bounds(shots.to(torch.long))
    idx = torch.arange(n)
    lo = torch.maximum(idx - window, run_start)
    hi = torch.minimum(idx + window, run_end)
    csum = torch.cat([torch.zeros(1, a.shape[1], dtype=torch.float64),
                      torch.cumsum(a.to(torch.float64), 0)])
    b = (csum[hi + 1] - csum[lo]) / (hi - lo + 1).unsqueeze(1)
    return a, F.normalize(b.to(torch.float32), dim=1), m
