"""Parameter-free moment head: (start, end, score) proposals from dense frame scores.

Input is the frame-query similarity of densely decoded frames, only for the
clips selection verified, so the timeline can have holes. Runs of frames above
several thresholds become proposals; each is scored by how high it is and how
much it stands out from the frames just around it; NMS removes duplicates.
"""

from __future__ import annotations

import torch

from .bam import run_bounds

# Fractions of the way from the median to the max score at which runs are cut.
LEVELS = (0.2, 0.35, 0.5, 0.65, 0.8)
# Frames closer than this count as equal.  Stored frame embeddings are float16 (cosines within
# about 1e-3 of float32), so smaller differences are the encoding's noise, not the picture's: in a
# still stretch (a title card, a tripod shot) a compressed frame 3e-8 below the others chose the
# moment's edges (a 10 s still video matched 0-7.5 s).
TIE = 1e-4
GAP_FACTOR = 1.5  # a gap > GAP_FACTOR * step between frames breaks a run


def temporal_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """IoU of two [start, end] intervals (0 when both are empty)."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def _runs(mask: list[bool], breaks: list[bool]) -> list[tuple[int, int]]:
    """Index ranges [i, j] of consecutive True entries; breaks[k] splits k-1 from k."""
    runs, start = [], None
    for k, m in enumerate(mask):
        if start is not None and (not m or breaks[k]):
            runs.append((start, k - 1))
            start = None
        if m and start is None:
            start = k
    if start is not None:
        runs.append((start, len(mask) - 1))
    return runs


def _smooth(scores: torch.Tensor, segment: torch.Tensor, radius: int) -> torch.Tensor:
    """Moving average of +-radius frames that never reaches across a gap.

    Frame similarities are noisy; without this a single dipping frame splits
    a moment into fragments at every threshold.
    """
    if radius <= 0:
        return scores
    seg_start, seg_end = run_bounds(segment)
    idx = torch.arange(scores.numel())
    lo = torch.maximum(idx - radius, seg_start)
    hi = torch.minimum(idx + radius, seg_end)
    csum = torch.cat([scores.new_zeros(1), torch.cumsum(scores, 0)])
    return (csum[hi + 1] - csum[lo]) / (hi - lo + 1)


class _WindowScorer:
    """mean(inside) + alpha * (mean(inside) - mean(local outside)), via prefix sums.

    The absolute part keeps scores comparable across videos (same model, same
    cosine scale); the contrast part rewards windows whose edges sit where the
    similarity actually drops. "Local outside" is the frames within one window
    length on either side; with none there, the contrast term is 0.
    """

    def __init__(self, times: torch.Tensor, scores: torch.Tensor, alpha: float, step: float,
                 baseline: float | None = None, duration: float | None = None):
        self.times, self.alpha, self.step = times, alpha, step
        self.baseline, self.duration = baseline, duration
        self.csum = torch.cat([scores.new_zeros(1), torch.cumsum(scores, 0)]).tolist()

    def _sum(self, i: int, j: int) -> float:  # sum of scores[i:j]
        return self.csum[j] - self.csum[i]

    def __call__(self, i: int, j: int, start: float, end: float) -> float:
        inside = self._sum(i, j + 1) / (j + 1 - i)
        length = max(end - start, 1e-6)
        lo = int(torch.searchsorted(self.times, start - length, right=False))
        hi = int(torch.searchsorted(self.times, end + length, right=True))
        n_out = (i - lo) + (hi - j - 1)
        total = self._sum(lo, i) + self._sum(j + 1, hi)
        if self.baseline is not None:
            # Frames around the window that were never decoded (trimmed search) count at the
            # video's background level, so a window is not judged by which neighbours happened
            # to be verified.
            end_of_video = self.duration if self.duration is not None else end + length
            expected = (min(start, length) + min(max(0.0, end_of_video - end), length)) / self.step
            missing = max(0.0, expected - n_out)
            total += missing * self.baseline
            n_out += missing
        if n_out <= 0:
            return inside
        return inside + self.alpha * (inside - total / n_out)


def nms(proposals: list[tuple[float, float, float]], iou: float,
        limit: int | None = None) -> list[tuple[float, float, float]]:
    """Greedy temporal NMS: keep the best, drop others overlapping it by > iou, and any window
    that lies inside a kept one or holds one (a nested window is the same moment again)."""
    kept: list[tuple[float, float, float]] = []
    for p in sorted(proposals, key=lambda p: -p[2]):
        if limit is not None and len(kept) >= limit:
            break
        if all(temporal_iou(p[:2], k[:2]) <= iou and not _nested(p, k) for k in kept):
            kept.append(p)
    return kept


def _nested(a, b, eps: float = 1e-6) -> bool:
    """One window lies inside the other."""
    return (a[0] >= b[0] - eps and a[1] <= b[1] + eps) or (b[0] >= a[0] - eps and b[1] <= a[1] + eps)


def propose_moments(times: torch.Tensor, scores: torch.Tensor, step: float, top_k: int = 5,
                    nms_iou: float = 0.5, min_len: float | None = None,
                    alpha: float = 1.0, smooth: float = 1.0, baseline: float | None = None,
                    duration: float | None = None, min_frames: int = 1) -> list[tuple[float, float, float]]:
    """Moments (start, end, score) sorted by score, at most ``top_k``.

    times: sorted frame timestamps in seconds [T]; scores: frame-query cosine
    similarity [T]; step: the dense sampling interval. A run of frames i..j
    spans [times[i] - step/2 (>= 0), times[j] + step/2]. Runs never cross a
    gap > 1.5 * step (unverified clips). Proposals shorter than ``min_len``
    seconds, or of fewer than ``min_frames`` frames, are dropped. Runs are
    found, and scored, on the scores smoothed by a moving average of about
    ``smooth`` seconds (0 turns it off); ``alpha`` weighs the contrast with the
    frames around a window.

    ``baseline`` is the video's background similarity level (e.g. the median
    query similarity of all its clips' index vectors). With it, thresholds run
    from the baseline to the best score instead of from the median of the
    frames given, and undecoded frames around a window count at the baseline:
    the result then depends on the video, not on which clips were verified.
    ``duration`` bounds that outside context at the video's end.
    """
    times = torch.as_tensor(times, dtype=torch.float64).flatten()
    scores = torch.as_tensor(scores, dtype=torch.float64).flatten()
    if times.shape != scores.shape:
        raise ValueError("times and scores must have the same length")
    order = torch.argsort(times, stable=True)  # tolerate unsorted input
    times, scores = times[order], scores[order]
    gaps = torch.zeros(times.numel(), dtype=torch.bool)
    gaps[1:] = (times[1:] - times[:-1]) > GAP_FACTOR * step
    # A frame whose embedding overflowed (float16) has no score: one NaN made every threshold fail,
    # and no moment came.  It is left out, but its neighbours stay one run (one such frame inside
    # a moment split it in two): only a gap in the frames given breaks a run.
    finite = torch.isfinite(scores)
    segment = torch.cumsum(gaps.long(), 0)[finite]
    times, scores = times[finite], scores[finite]
    if times.numel() == 0 or top_k <= 0:
        return []
    # ... as long as the frames left out span no more than the smoothing window (one frame at
    # least): a long stretch of them (a scene an old float16 encoder overflowed on) joined the
    # moments either side into one that matched neither.
    bridged = max(smooth or 0.0, step) + step + 1e-6
    gaps = torch.zeros(times.numel(), dtype=torch.bool)
    gaps[1:] = (segment[1:] != segment[:-1]) | ((times[1:] - times[:-1]) > bridged)
    breaks = gaps.tolist()
    radius = int(round(smooth / (2 * step))) if smooth and step > 0 else 0
    smoothed = _smooth(scores, torch.cumsum(gaps.long(), 0), radius)
    med = float(smoothed.median()) if baseline is None else float(baseline)
    top = float(smoothed.max())
    thresholds = sorted({med + f * (top - med) for f in LEVELS}) if top > med + TIE else [top]
    spans: set[tuple[int, int]] = set()
    for thr in thresholds:
        spans.update(_runs((smoothed >= thr - TIE).tolist(), breaks))
    score = _WindowScorer(times, smoothed, alpha, step, baseline, duration)
    times_list = times.tolist()
    proposals = []
    for i, j in sorted(spans):
        start = max(0.0, times_list[i] - step / 2)
        end = times_list[j] + step / 2
        if (min_len is not None and end - start < min_len) or j - i + 1 < min_frames:
            continue
        proposals.append((start, end, score(i, j, start, end)))
    return nms(proposals, nms_iou, limit=top_k)
