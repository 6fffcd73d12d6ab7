"""The paper's three training losses for the Trimmer: clip selection, VMR task, distillation.

Each takes the output dict of ``Trimmer.forward`` and returns a scalar that
is zero (or the targets' own entropy, for soft targets) when the prediction
is perfect. Padded clips never count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .trimmer import TrimmerConfig


def clip_targets(moment_start: torch.Tensor, moment_end: torch.Tensor, clip_start: torch.Tensor,
                 clip_end: torch.Tensor, valid: torch.Tensor | None = None) -> dict:
    """Per-clip targets of moments [B] (seconds) on clips [B, N] (seconds).

    start_idx / end_idx [B]: the valid clips holding the moment's start and end
    (clip i covers [clip_start, clip_end)); inside [B, N]: the fraction of each
    clip the moment covers, the soft target of highlight and relevance.
    """
    valid = torch.ones_like(clip_start, dtype=torch.bool) if valid is None else valid.to(torch.bool)
    ms, me = moment_start.unsqueeze(1).to(clip_start), moment_end.unsqueeze(1).to(clip_start)
    length = (clip_end - clip_start).clamp(min=1e-6)
    inside = ((torch.minimum(me, clip_end) - torch.maximum(ms, clip_start)).clamp(min=0) / length)
    inside = inside.clamp(max=1) * valid
    idx = torch.arange(clip_start.shape[1], device=clip_start.device).expand_as(clip_start)
    n = valid.sum(1)
    last_valid = (n - 1).clamp(min=0)
    # first valid clip ending after the start; last valid clip beginning before the end
    start_idx = torch.where(valid & (clip_end > ms), idx, clip_start.shape[1]).min(1).values
    end_idx = torch.where(valid & (clip_start < me), idx, -1).max(1).values
    start_idx = torch.minimum(start_idx, last_valid)
    end_idx = torch.maximum(end_idx.clamp(min=0), start_idx).minimum(last_valid)
    return {"start_idx": start_idx, "end_idx": end_idx, "inside": inside}


def _valid_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of values [..., N] over valid clips [B, N] (broadcast over middle dims)."""
    weight = valid.to(values.dtype).view(valid.shape[0], *([1] * (values.dim() - 2)), valid.shape[1])
    weight = weight.expand_as(values)
    return (values * weight).sum() / weight.sum().clamp(min=1)


def selection_loss(out: dict, valid: torch.Tensor, config: TrimmerConfig,
                   relevance: torch.Tensor | None = None, relevance_weight: float = 0.0) -> torch.Tensor:
    """Budget loss (SpotEM): each step's and the total selected fraction against the target.

    A step's fraction is the expected share of the video's clips it adds
    (the sum of keep_probs over clips still available), its target is what
    inference may add, ``config.step_cap`` / n; the total's target is K
    times that, at most 1. Squared errors, averaged over videos (and steps).

    Addition to the paper, off unless ``relevance_weight`` > 0: BCE of every
    step's keep logit against ``relevance`` [B, N] (e.g. clip_targets'
    ``inside``), to teach the selector where moments are, not only how many.
    """
    n = valid.sum(1).clamp(min=1).to(torch.float32)
    step_target = config.step_cap(valid.sum(1)).to(torch.float32) / n
    total_target = (step_target * config.steps).clamp(max=1)
    fraction = out["keep_probs"].sum(-1) / n.unsqueeze(1)  # [B, K]
    loss = ((fraction - step_target.unsqueeze(1)) ** 2).mean()
    loss = loss + ((fraction.sum(1) - total_target) ** 2).mean()
    if relevance_weight and relevance is not None:
        logits = out["keep_logits"]
        bce = F.binary_cross_entropy_with_logits(logits, relevance.unsqueeze(1).expand_as(logits).to(logits),
                                                 reduction="none")
        loss = loss + relevance_weight * _valid_mean(bce, valid)
    return loss


def vmr_loss(out: dict, targets: dict, valid: torch.Tensor) -> torch.Tensor:
    """Start and end cross-entropy over the clips, plus highlight BCE against ``inside``.

    Padded clips carry logit NEG, so the softmax gives them nothing.  With
    ``targets["positive"]`` [B] bool, videos marked False are negatives (the query's
    moment is not in them): they have no start or end, only highlight targets of 0,
    which is what makes highlight scores comparable across videos.
    """
    positive = targets.get("positive")
    if positive is None:
        positive = torch.ones(valid.shape[0], dtype=torch.bool, device=valid.device)
    ce = out["start_logits"].new_zeros(())
    if positive.any():
        ce = (F.cross_entropy(out["start_logits"][positive], targets["start_idx"][positive])
              + F.cross_entropy(out["end_logits"][positive], targets["end_idx"][positive]))
    bce = F.binary_cross_entropy_with_logits(out["highlight_logits"], targets["inside"].to(torch.float32),
                                             reduction="none")
    return ce + _valid_mean(bce, valid)


def distillation_loss(student: dict, teacher: dict, valid: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:
    """L1 between fused features on valid clips + KL(teacher || student) of start and end.

    The teacher is detached here: it is trained first and stays fixed. The KL
    is scaled by temperature**2 so its gradient size does not depend on it.
    """
    l1 = _valid_mean((student["fused"] - teacher["fused"].detach()).abs().mean(-1), valid)
    kl = student["fused"].new_zeros(())
    for key in ("start_logits", "end_logits"):
        s = F.log_softmax(student[key] / temperature, -1)
        t = F.log_softmax(teacher[key].detach() / temperature, -1)
        kl = kl + F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature ** 2
    return l1 + kl


@dataclass(frozen=True)
class LossWeights:
    """How ``total_loss`` mixes the losses; relevance is the optional addition (off)."""

    selection: float = 1.0
    vmr: float = 1.0
    distillation: float = 1.0
    relevance: float = 0.0
    temperature: float = 1.0


def total_loss(student: dict, targets: dict, valid: torch.Tensor, config: TrimmerConfig,
               teacher: dict | None = None,
               weights: LossWeights = LossWeights()) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the three losses and each part's value (for logging).

    Without a teacher the distillation term is left out (e.g. while the
    teacher itself is being trained).
    """
    parts = {"selection": selection_loss(student, valid, config, targets.get("inside"), weights.relevance),
             "vmr": vmr_loss(student, targets, valid)}
    if teacher is not None:
        parts["distillation"] = distillation_loss(student, teacher, valid, weights.temperature)
    total = sum(getattr(weights, name) * value for name, value in parts.items())
    return total, {name: float(value.detach()) for name, value in parts.items()}
