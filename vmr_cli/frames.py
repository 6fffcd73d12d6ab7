"""Frame tensors in the shape and scale the image encoder wants.

Decoders hand over uint8 frames (N, 3, H, W).  CLIP-family encoders expect
the shortest side resized to their input size, a centre crop, and
normalisation by the model's mean and std.  Doing this with torch on tensors
is faster than the transformers image processor and needs no Pillow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_center_crop(frames: torch.Tensor, size: int, shown: tuple[int, int] | None = None) -> torch.Tensor:
    """Resize the shortest side to ``size`` and crop the centre square; uint8 in, uint8 out.
    ``shown``: the (height, width) the frames are displayed at, where their pixels are not
    square (anamorphic DVD, HDV): resized to that shape first."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected frames shaped (N, 3, H, W), got {tuple(frames.shape)}")
    n, _, h, w = frames.shape
    if n == 0:
        return torch.empty((0, 3, size, size), dtype=torch.uint8)
    if shown is not None and abs(shown[1] * h - shown[0] * w) > 0.01 * shown[0] * w:
        h, w = shown  # the same arithmetic from the displayed shape: the resize stretches to it
    if (h, w) != (size, size) or frames.shape[-2:] != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        resized = F.interpolate(frames.float(), size=(nh, nw), mode="bilinear",
                                antialias=True, align_corners=False)
        top, left = (nh - size) // 2, (nw - size) // 2
        frames = resized[:, :, top:top + size, left:left + size].round().clamp(0, 255).to(torch.uint8)
    return frames.contiguous()


def normalize(frames: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> float32 normalised by the model's mean and std, on the frames' device."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=frames.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=frames.device).view(1, 3, 1, 1)
    return (frames.float() / 255.0 - mean_t) / std_t
