"""Parameter-free cross-modal clip scoring from BAM vectors.

Works with any CLIP model, trained on this world or not: every term is a
cosine between the query's text embedding and the clip's stored vectors, so
no weights need learning and no frame needs decoding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_WEIGHTS = (1.0, 0.3, 0.3)
# Motion energy only breaks ties: a query describes an event, so between two
# otherwise equal clips the one where something moves is the better guess.
MOTION_TIE_BREAK = 1e-3


def clip_scores(query: torch.Tensor, A: torch.Tensor, B: torch.Tensor, M: torch.Tensor,
                motion: torch.Tensor | None = None,
                weights: tuple[float, float, float] = DEFAULT_WEIGHTS) -> torch.Tensor:
    """Score each clip for a query; higher = more likely inside the moment.

    score = wa * cos(q, A) + wb * cos(q, B) + wm * |q . M| + 1e-3 * motion

    - cos(q, A): does the clip's middle frame show what the sentence says.
    - cos(q, B): does the surrounding scene (same shot) fit; smooths a noisy
      single frame and favours clips inside a matching scene.
    - |q . M| = |cos(q, last) - cos(q, first)| (both unit vectors): how much
      the clip's relevance to the query changes from its first to its last
      frame. Large where the described action starts or ends, so clips at a
      moment's boundaries are not ranked below the static clips inside it;
      small for static clips, since M is not normalised. The absolute value
      keeps both edges (the action beginning and finishing).
    - motion energy (pixel change, [0, 1]) only as a tie-breaker.

    query: [D] (or [Q, D], giving [Q, N]); A, B, M: [N, D]; motion: [N] or None.
    """
    wa, wb, wm = weights
    q = F.normalize(query.to(torch.float32), dim=-1)
    a = F.normalize(A.to(torch.float32), dim=-1)
    b = F.normalize(B.to(torch.float32), dim=-1)
    score = wa * (q @ a.T) + wb * (q @ b.T) + wm * (q @ M.to(torch.float32).T).abs()
    if motion is not None:
        score = score + MOTION_TIE_BREAK * motion.to(torch.float32)
    return score
