"""The trained clip trimmer: cross-modal fusion, recursive clip selection, moment head.

The paper's trained form (Fang et al., AAAI 2024): every clip has cheap BAM
index features; the query picks a few clips over K steps; only picked clips
get their expensive feature (dense frames, pooled), and the moment head reads
the result. The selection follows SpotEM (ICML 2023): each step re-fuses the
video with the expensive features of the clips picked so far and picks more,
with straight-through Gumbel sampling in training so the task loss reaches
the selector. The teacher is the same network with every clip selected.

Batch (a dict; B videos padded to N clips, D = encoder embedding dim):
  A, B, M [B, N, D]     appearance, scene context, motion (index features)
  motion [B, N]         pixel motion energy in [0, 1]
  shot_start [B, N]     1.0 where a new shot begins
  c [B, N, D]           expensive feature of every clip, or a callable
                        fetch(need [B, N] bool) -> [B, N, D] asked only for
                        newly selected clips (rows elsewhere are ignored)
  query [B, D]          pooled text embedding
  tokens [B, L, Dt], token_mask [B, L] bool   optional query tokens
  valid [B, N] bool     optional; False on padding
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

# Logit for padded clips: exp() underflows to exactly 0 in float32, yet unlike
# -inf it keeps cross-entropy and KL finite (0 * finite, never 0 * inf).
NEG = -1e4
POS_FREQS = (1.0, 2.0, 4.0, 8.0)
POS_DIM = 1 + 2 * len(POS_FREQS)
SIM_DIM = 8  # q.A, q.B, q.M, q.c and the same standardised within the video
INDEX_KEYS = ("A", "B", "M", "motion", "shot_start", "query")


@dataclass
class TrimmerConfig:
    """Everything needed to rebuild a Trimmer; saved as JSON next to its weights."""

    dim: int = 512  # D, the encoder's embedding dimension
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    steps: int = 3  # K, selection steps
    budget: float = 0.1  # fraction of a video's clips one step may add
    min_per_step: int = 2  # ... but at least this many (short videos)
    dropout: float = 0.1
    token_dim: int | None = None  # Dt; None = no cross-attention to query tokens
    tau: float = 1.0  # Gumbel temperature of the straight-through gradient

    def __post_init__(self):
        if min(self.dim, self.hidden, self.heads, self.layers) < 1:  # a config.json edited by hand: never / 0
            raise ValueError("need dim, hidden, heads and layers >= 1")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if self.steps < 1 or not 0 < self.budget <= 1 or self.min_per_step < 0 or self.tau <= 0:
            raise ValueError("need steps >= 1, 0 < budget <= 1, min_per_step >= 0, tau > 0")

    def step_cap(self, n_valid: torch.Tensor) -> torch.Tensor:
        """Most new clips one step may add: max(min_per_step, floor(budget * n)), at most n."""
        n = n_valid.to(torch.long)
        by_budget = torch.floor(self.budget * n.to(torch.float64) + 1e-9).to(torch.long)
        return by_budget.clamp(min=self.min_per_step).minimum(n)


def positions(valid: torch.Tensor) -> torch.Tensor:
    """[B, N] -> [B, N, POS_DIM]: clip centre as a fraction of the video, plus sinusoids.

    Relative, so a model trained on short videos reads long ones the same way
    and clip length (seconds) does not enter.
    """
    n = valid.sum(1, keepdim=True).clamp(min=1).to(torch.float32)
    t = (torch.arange(valid.shape[1], device=valid.device, dtype=torch.float32) + 0.5) / n
    angles = math.pi * t.unsqueeze(-1) * torch.tensor(POS_FREQS, device=valid.device)
    return torch.cat([t.unsqueeze(-1), angles.sin(), angles.cos()], -1)


def similarities(q, a, b, m, c_selected, valid) -> torch.Tensor:
    """[B, N, SIM_DIM]: the query's dot products with A, B, M and c, raw and standardised over the
    video's valid clips.  The raw ones are the parameter-free scorer's terms (absolute, so
    comparable across videos); the standardised ones say how a clip stands out in its video."""
    sims = torch.stack([(q * a).sum(-1), (q * b).sum(-1), (q * m).sum(-1), (q * c_selected).sum(-1)], -1)
    keep = valid.unsqueeze(-1).to(sims.dtype)
    n = keep.sum(1, keepdim=True).clamp(min=1)
    mean = (sims * keep).sum(1, keepdim=True) / n
    std = (((sims - mean) ** 2 * keep).sum(1, keepdim=True) / n).clamp(min=1e-8).sqrt()
    return torch.cat([sims, (sims - mean) / (std + 1e-3)], -1) * keep


class CrossModalFusion(nn.Module):
    """Eq. 1: clip features + selection state + position, conditioned on the query.

    Each clip's input holds A, B, M, its (masked) expensive feature c, the
    products q*A and q*c, the query's similarities with A, B, M and c (raw:
    the parameter-free scorer's terms, so the network starts from a useful,
    cross-video comparable signal; and standardised within the video), motion,
    shot start, the selection mask and its position. The query then modulates the clip
    (FiLM), a width-3 convolution gives each clip its neighbours (boundaries
    are local changes), optional cross-attention reads the query tokens, and a
    transformer encoder over the valid clips gives each clip the whole video.
    """

    def __init__(self, config: TrimmerConfig):
        super().__init__()
        d, h = config.dim, config.hidden
        self.clip_proj = nn.Linear(6 * d + 3 + POS_DIM + SIM_DIM, h)
        self.film = nn.Linear(d, 2 * h)
        self.local = nn.Conv1d(h, h, kernel_size=3, padding=1)
        self.token_attn = self.token_norm = None
        if config.token_dim:
            self.token_norm = nn.LayerNorm(h)
            self.token_attn = nn.MultiheadAttention(h, config.heads, dropout=config.dropout,
                                                    kdim=config.token_dim, vdim=config.token_dim,
                                                    batch_first=True)
        layer = nn.TransformerEncoderLayer(h, config.heads, 2 * h, config.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(h)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, batch: dict, c_selected: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        """batch: a prepared batch; c_selected: c * selected [B, N, D]; selected [B, N] -> [B, N, hidden]."""
        valid = batch["valid"]
        keep = valid.unsqueeze(-1).to(torch.float32)
        q = batch["query"].unsqueeze(1)
        a = batch["A"]
        x = torch.cat([a, batch["B"], batch["M"], c_selected, q * a, q * c_selected,
                       batch["motion"].unsqueeze(-1), batch["shot_start"].unsqueeze(-1),
                       selected.unsqueeze(-1), positions(valid),
                       similarities(q, a, batch["B"], batch["M"], c_selected, valid)], -1)
        h = F.gelu(self.clip_proj(x.masked_fill(~valid.unsqueeze(-1), 0.0)))
        gamma, beta = self.film(batch["query"]).unsqueeze(1).chunk(2, -1)
        h = self.drop(h * (1 + gamma) + beta) * keep
        # Padded clips are zero here, so a clip at a video's end sees the same
        # zero neighbour whatever the padding held.
        h = (h + self.local(h.transpose(1, 2)).transpose(1, 2)) * keep
        if self.token_attn is not None and batch.get("tokens") is not None:
            no_tokens = ~batch["token_mask"].any(1)
            ignore = ~batch["token_mask"] & ~no_tokens.unsqueeze(1)  # unmask all of an empty row: no NaN
            read, _ = self.token_attn(self.token_norm(h), batch["tokens"], batch["tokens"],
                                      key_padding_mask=ignore, need_weights=False)
            h = h + read * (~no_tokens).view(-1, 1, 1)
        empty_video = ~valid.any(1, keepdim=True)
        h = self.encoder(h, src_key_padding_mask=~valid & ~empty_video)
        return self.out_norm(h) * keep


class ClipSelection(nn.Module):
    """Eq. 2: K recursive steps; each re-fuses with the clips picked so far and adds more.

    Step 0 starts with nothing selected, so the first pick is made from the
    index features alone. One keep logit per clip (log-odds of keep vs skip,
    the same as SpotEM's two logits up to a shift). Each step adds at most
    ``config.step_cap`` not-yet-selected clips, best logit first, only where
    the logit says keep. Training adds logistic noise (the difference of two
    Gumbels, i.e. hard Gumbel-softmax over keep/skip) and passes the gradient
    of the tempered sigmoid straight through the hard 0/1 choice. Inference
    has no noise, so it is deterministic, and stops at the first step that
    adds nothing: with the same mask the next step would compute the same.
    """

    def __init__(self, config: TrimmerConfig):
        super().__init__()
        self.config = config
        h = config.hidden
        self.scorer = nn.Sequential(nn.LayerNorm(h), nn.Linear(h, h), nn.GELU(), nn.Linear(h, 1))

    def _pick(self, logit: torch.Tensor, available: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
        """New clips of one step [B, N] float: hard 0/1 values, straight-through gradient in training."""
        noisy = logit
        if self.training:
            u = torch.rand_like(logit).clamp(1e-6, 1 - 1e-6)
            noisy = logit + torch.log(u) - torch.log1p(-u)
        wanted = available & (noisy > 0)
        order = noisy.masked_fill(~wanted, float("-inf")).argsort(dim=1, descending=True, stable=True)
        ranks = torch.empty_like(order).scatter_(1, order, torch.arange(
            logit.shape[1], device=logit.device).expand_as(order))
        hard = (wanted & (ranks < cap.unsqueeze(1))).to(logit.dtype)
        if not self.training:
            return hard
        soft = torch.sigmoid(noisy / self.config.tau) * available
        return hard + (soft - soft.detach())  # exactly hard forward: the bracket is exactly 0

    def forward(self, fuse: Callable[[torch.Tensor], torch.Tensor], valid: torch.Tensor) -> dict:
        """fuse(selected [B, N] float) -> fused [B, N, hidden]; valid [B, N] bool.

        Returns fused (of the final selection), selected [B, N], and per step
        [B, K, N]: step_masks (clips added), keep_logits, keep_probs (soft
        keep probability of the clips still available, for the budget loss).
        Steps skipped by the early stop repeat the last logits and add nothing.
        """
        cap = self.config.step_cap(valid.sum(1))
        selected = torch.zeros(valid.shape, device=valid.device)
        masks, logits, probs = [], [], []
        for _ in range(self.config.steps):
            fused = fuse(selected)
            logit = self.scorer(fused).squeeze(-1).masked_fill(~valid, NEG)
            available = valid & (selected.detach() < 0.5)
            new = self._pick(logit, available, cap)
            masks.append(new)
            logits.append(logit)
            probs.append(torch.sigmoid(logit) * available)
            selected = selected + new
            if not self.training and not new.any():
                break
        if new.detach().any():
            fused = fuse(selected)
        skipped = self.config.steps - len(masks)
        masks += [torch.zeros_like(selected)] * skipped
        logits += [logits[-1]] * skipped
        probs += [probs[-1]] * skipped
        return {"fused": fused, "selected": selected, "step_masks": torch.stack(masks, 1),
                "keep_logits": torch.stack(logits, 1), "keep_probs": torch.stack(probs, 1)}


class MomentHead(nn.Module):
    """Highlight, start and end logits per clip from the fused features (NEG on padding)."""

    def __init__(self, config: TrimmerConfig):
        super().__init__()
        h = config.hidden
        self.mlp = nn.Sequential(nn.LayerNorm(h), nn.Linear(h, h), nn.GELU(),
                                 nn.Dropout(config.dropout), nn.Linear(h, 3))

    def forward(self, fused: torch.Tensor, valid: torch.Tensor) -> dict:
        out = self.mlp(fused).masked_fill(~valid.unsqueeze(-1), NEG)
        return {"highlight_logits": out[..., 0], "start_logits": out[..., 1], "end_logits": out[..., 2]}


def decode_clips(start_logits: torch.Tensor, end_logits: torch.Tensor, highlight_logits: torch.Tensor,
                 valid: torch.Tensor | None = None, max_len: int | None = None,
                 top_k: int = 1) -> list[tuple[int, int, float]]:
    """Top-k non-overlapping windows (first clip, last clip, score) of one video, best first.

    Windows are ranked by p_start[i] * p_end[j] (j >= i, at most ``max_len``
    clips long). The score is sqrt(p_start[i] * p_end[j]) times the mean
    highlight probability inside: the boundary part is relative to this video
    (softmax over its clips), the highlight part is absolute, so scores of
    different videos can be compared. Ties go to the earliest window.
    """
    n = start_logits.shape[-1]
    valid = torch.ones(n, dtype=torch.bool) if valid is None else valid.to(torch.bool).cpu()
    p_start = torch.softmax(start_logits.detach().cpu().float().masked_fill(~valid, NEG), -1)
    p_end = torch.softmax(end_logits.detach().cpu().float().masked_fill(~valid, NEG), -1)
    highlight = torch.sigmoid(highlight_logits.detach().cpu().float()) * valid
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    allowed = (j >= i) & valid.unsqueeze(1) & valid.unsqueeze(0)
    if max_len is not None:
        allowed &= j - i < max_len
    joint = (p_start.unsqueeze(1) * p_end.unsqueeze(0)).masked_fill(~allowed, -1.0)
    csum = torch.cat([torch.zeros(1), highlight.cumsum(0)])
    windows = []
    while len(windows) < top_k and bool(allowed.any()):
        flat = int(joint.flatten().argmax())
        first, last = divmod(flat, n)
        mean_highlight = float(csum[last + 1] - csum[first]) / (last + 1 - first)
        windows.append((first, last, math.sqrt(float(joint[first, last])) * mean_highlight))
        allowed &= (i > last) | (j < first)  # no window sharing a clip with this one
        joint = joint.masked_fill(~allowed, -1.0)
    return windows


def decode_moments(start_logits: torch.Tensor, end_logits: torch.Tensor, highlight_logits: torch.Tensor,
                   clip_start: torch.Tensor, clip_end: torch.Tensor, valid: torch.Tensor | None = None,
                   max_len: int | None = None, top_k: int = 1) -> list[tuple[float, float, float]]:
    """``decode_clips`` in seconds: (clip_start[first], clip_end[last], score)."""
    starts, ends = clip_start.tolist(), clip_end.tolist()
    return [(float(starts[a]), float(ends[b]), s)
            for a, b, s in decode_clips(start_logits, end_logits, highlight_logits, valid, max_len, top_k)]


class Trimmer(nn.Module):
    """Fusion + selection + moment head. mode="student" trims; mode="teacher" sees every clip.

    Output dict: fused [B, N, hidden]; selected [B, N]; step_masks,
    keep_logits, keep_probs [B, K, N] (K = 0 for the teacher);
    highlight_logits, start_logits, end_logits [B, N].
    """

    def __init__(self, config: TrimmerConfig):
        super().__init__()
        self.config = config
        self.fusion = CrossModalFusion(config)
        self.selection = ClipSelection(config)
        self.head = MomentHead(config)

    def config_dict(self) -> dict:
        return asdict(self.config)

    def _prepare(self, batch: dict) -> dict:
        """Checked float copies of the inputs, with ``valid`` filled in."""
        missing = [k for k in INDEX_KEYS + ("c",) if k not in batch]
        if missing:
            raise ValueError(f"batch lacks {missing}")
        a = batch["A"]
        if a.dim() != 3 or a.shape[-1] != self.config.dim:
            raise ValueError(f"A must be [B, N, {self.config.dim}], got {tuple(a.shape)}")
        b, n = a.shape[:2]
        shapes = {"B": (b, n, self.config.dim), "M": (b, n, self.config.dim), "motion": (b, n),
                  "shot_start": (b, n), "query": (b, self.config.dim)}
        out = {k: batch[k].to(torch.float32) for k in INDEX_KEYS}
        for key, shape in shapes.items():
            if tuple(out[key].shape) != shape:
                raise ValueError(f"{key} must be {list(shape)}, got {tuple(out[key].shape)}")
        valid = batch.get("valid")
        out["valid"] = (torch.ones(b, n, dtype=torch.bool, device=a.device) if valid is None
                        else valid.to(torch.bool))
        if batch.get("tokens") is not None:
            if self.config.token_dim is None:
                raise ValueError("query tokens given to a model built without token_dim")
            tokens = batch["tokens"]
            if tokens.dim() != 3 or tokens.shape[0] != b or tokens.shape[-1] != self.config.token_dim:
                raise ValueError(f"tokens must be [{b}, L, {self.config.token_dim}], got {tuple(tokens.shape)}")
            out["tokens"] = tokens.to(torch.float32)
            mask = batch.get("token_mask")
            if mask is not None and tuple(mask.shape) != tuple(tokens.shape[:2]):
                raise ValueError(f"token_mask must be {list(tokens.shape[:2])}, got {tuple(mask.shape)}")
            out["token_mask"] = (torch.ones(out["tokens"].shape[:2], dtype=torch.bool, device=a.device)
                                 if mask is None else mask.to(torch.bool))
        return out

    def forward(self, batch: dict, mode: str = "student") -> dict:
        if mode not in ("student", "teacher"):
            raise ValueError(f"mode must be 'student' or 'teacher', got {mode!r}")
        prepared = self._prepare(batch)
        valid = prepared["valid"]
        expensive = _expensive_source(batch["c"], valid.shape, self.config.dim, valid.device)

        def fuse(selected: torch.Tensor) -> torch.Tensor:
            return self.fusion(prepared, expensive(selected) * selected.unsqueeze(-1), selected)

        if mode == "teacher":
            selected = valid.to(torch.float32)
            empty = selected.new_zeros(valid.shape[0], 0, valid.shape[1])
            out = {"fused": fuse(selected), "selected": selected,
                   "step_masks": empty, "keep_logits": empty, "keep_probs": empty}
        else:
            out = self.selection(fuse, valid)
        return out | self.head(out["fused"], valid)


def _expensive_source(c, shape: tuple[int, int], dim: int,
                      device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """selected [B, N] -> expensive features, exact wherever selected.

    A tensor is used whole, so the straight-through gradient of a clip's
    mask sees what its feature would add; the product with the 0/1 mask
    keeps unselected clips' values out of the forward pass (c must be
    finite). A callable is asked only for clips newly selected, each once:
    at search time that is the expensive part.
    """
    if not callable(c):
        if tuple(c.shape) != (*shape, dim):
            raise ValueError(f"c must be {[*shape, dim]}, got {tuple(c.shape)}")
        full = c.to(torch.float32)
        return lambda selected: full
    store = torch.zeros(*shape, dim, device=device)
    fetched = torch.zeros(shape, dtype=torch.bool, device=device)

    def fetch(selected: torch.Tensor) -> torch.Tensor:
        nonlocal store
        need = (selected.detach() > 0.5) & ~fetched
        if need.any():
            store = torch.where(need.unsqueeze(-1), c(need).to(store), store)
            fetched.logical_or_(need)
        return store

    return fetch


def trimmer_from_config(config: dict) -> Trimmer:
    """A fresh Trimmer from a config dict (as saved by ``Trimmer.config_dict``)."""
    return Trimmer(TrimmerConfig(**config))
