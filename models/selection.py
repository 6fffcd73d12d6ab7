"""Query-driven recursive clip selection: the paper's "fewer steps".

Verification (decoding dense frames of a clip and encoding them) is the
expensive part of a search. Instead of verifying every clip, start from the
clips the cheap prior likes best, verify those, then grow toward neighbours
of clips that verified well (a moment usually spans several clips), drop
those that did not, and repeat until nothing changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

Verify = Callable[[list[int]], "torch.Tensor | list[float]"]


@dataclass
class Selection:
    """Outcome of a selection: clips judged relevant, every verification, rounds used."""

    selected: list[int] = field(default_factory=list)  # sorted clip indices
    verified: dict[int, float] = field(default_factory=dict)  # clip -> verified score
    steps: int = 0  # number of verify rounds (calls for select_clips)


class _Verifier:
    """Calls ``verify`` at most once per clip and never with an empty list."""

    def __init__(self, verify: Verify, budget: int):
        self.verify, self.budget, self.scores = verify, budget, {}

    def left(self) -> int:
        return self.budget - len(self.scores)

    def __call__(self, clips: list[int]) -> list[int]:
        todo = [c for c in dict.fromkeys(clips) if c not in self.scores][: max(self.left(), 0)]
        if not todo:
            return []
        out = torch.as_tensor(self.verify(list(todo)), dtype=torch.float64).flatten()
        if out.numel() != len(todo):
            raise ValueError(f"verify returned {out.numel()} scores for {len(todo)} clips")
        for c, s in zip(todo, out.tolist()):
            self.scores[c] = s if math.isfinite(s) else float("-inf")
        return todo


def _threshold(scores: dict[int, float], keep_ratio: float) -> float:
    """Keep clips in the top (1 - keep_ratio) of the verified score range.

    Relative to the range, not the raw best score: verification scores are
    cosine similarities whose absolute level depends on the model.
    """
    vals = [v for v in scores.values() if v != float("-inf")]
    if not vals:
        return float("inf")
    best, worst = max(vals), min(vals)
    return worst + keep_ratio * (best - worst)


def select_clips(prior: torch.Tensor, verify: Verify, initial: int = 8, max_steps: int = 4,
                 max_clips: int | None = None, grow: int = 1, keep_ratio: float = 0.5,
                 explore: float = 0.5) -> Selection:
    """Recursive selection over N clips scored by ``prior`` (e.g. fusion.clip_scores).

    Round 1 verifies the ``initial`` best prior clips. Each later round:
    keep verified clips scoring >= worst + keep_ratio * (best - worst), add
    their unverified neighbours within ``grow`` clips, and replace
    ``floor(explore * dropped)`` of the clips that fell out of the selection
    with the next-best unverified prior clips (the prior may be wrong, but
    exploration shrinks as fewer clips drop, so the loop converges). Stops when
    a round has nothing new to verify, after ``max_steps`` verify rounds, or
    when ``max_clips`` clips have been verified. Each clip is verified at most
    once. The final selection is every verified clip above the final threshold.
    """
    prior = torch.as_tensor(prior).flatten()
    n = prior.numel()
    budget = n if max_clips is None else max(0, min(n, max_clips))
    ver = _Verifier(verify, budget)
    if n == 0 or budget == 0 or max_steps < 1:
        return Selection()
    order = torch.argsort(prior.to(torch.float64), descending=True, stable=True).tolist()

    def next_prior(count: int, exclude: set[int]) -> list[int]:
        picked = []
        for c in order:
            if len(picked) >= count:
                break
            if c not in ver.scores and c not in exclude:
                picked.append(c)
        return picked

    selected = set(ver(order[: max(1, initial)]))
    steps = 1
    while steps < max_steps and ver.left() > 0:
        thr = _threshold(ver.scores, keep_ratio)
        keep = {c for c, s in ver.scores.items() if s >= thr}
        dropped = len(selected - keep)
        grow_to = sorted(
            {j for c in keep for j in range(c - grow, c + grow + 1)
             if 0 <= j < n and j not in ver.scores},
            key=lambda j: -float(prior[j]))
        batch = grow_to + next_prior(int(explore * dropped), set(grow_to))
        new = ver(batch)
        if not new:
            break
        selected = keep | set(new)
        steps += 1
    thr = _threshold(ver.scores, keep_ratio)
    final = sorted(c for c, s in ver.scores.items() if s >= thr)
    return Selection(selected=final, verified=dict(ver.scores), steps=steps)


def exhaustive(N: int, verify: Verify, chunk: int | None = None) -> Selection:
    """Baseline: verify every clip once (in chunks of ``chunk``), select all of them."""
    ver = _Verifier(verify, N)
    size = N if not chunk else max(1, chunk)
    steps = 0
    for start in range(0, N, max(size, 1)):
        if ver(list(range(start, min(N, start + size)))):
            steps += 1
    return Selection(selected=list(range(N)), verified=dict(ver.scores), steps=steps)
