"""Frame tensors in the shape and scale the image encoder wants.

Decoders hand over uint8 frames (N, 3, H, W).  CLIP-family encoders expect
the shortest side resized to their input size, a centre crop, and
normalisation by the model's mean and std.  Doing this with torch on tensors
is faster than the transformers image processor and needs no Pillow.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .probe import HDR_TRANSFERS


def scaled_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) with the shortest side at ``size``, the aspect kept: what every reader
    scales a frame to before the centre square is cut (torchcodec's transforms, PyAV's swscale,
    resize_center_crop)."""
    scale = size / min(height, width)
    return max(size, round(height * scale)), max(size, round(width * scale))


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
        nh, nw = scaled_shape(h, w, size)
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


REFERENCE_WHITE = 203.0  # nits: HDR's graphics white (BT.2408), shown as SDR's white
HLG_PEAK = 1000.0  # nits: the display HLG's system gamma 1.2 is defined for
SHOULDER = 0.8  # linear SDR level from which highlights (above reference white) are compressed
_BT2020_TO_BT709 = ((1.6605, -0.5876, -0.0728),
                    (-0.1246, 1.1329, -0.0083),
                    (-0.0182, -0.1006, 1.1187))


def is_hdr(transfer: str | None) -> bool:
    """Whether a stream's colour transfer (ffmpeg's name: ffprobe's color_transfer) is HDR."""
    return (transfer or "") in HDR_TRANSFERS


def tone_map(frames: torch.Tensor, transfer: str | None, primaries: str | None = "bt2020") -> torch.Tensor:
    """HDR frames as an SDR screen shows them: uint8 RGB (N, 3, H, W) in, the same out.

    ``frames``: the decoder's RGB of an HDR stream (its Y'CbCr already converted with the
    stream's own matrix: torchcodec and PyAV use BT.2020's for bt2020nc), still non-linear.
    ``transfer``: ffmpeg's name of the stream's transfer; anything but PQ (smpte2084) or HLG
    (arib-std-b67) returns ``frames`` itself, untouched.  The steps, in float32:

    1. to display light in units of reference white (203 nits = 1.0): PQ's EOTF (SMPTE ST
       2084, in nits); HLG's inverse OETF and its OOTF (BT.2100, a 1000-nit display, system
       gamma 1.2), which puts HLG's 75 % signal at 203 nits too;
    2. BT.2020 primaries to BT.709's (a 3x3 matrix in linear light; colours outside BT.709's
       gamut are clipped), unless ``primaries`` says the stream already uses BT.709's;
    3. highlights (a pixel's brightest channel above SHOULDER) compressed smoothly towards 1.0,
       hue kept, instead of clipping everything past reference white flat;
    4. encoded for an SDR screen (BT.1886's gamma 2.4, as zscale takes BT.709 video), uint8.

    Done after the resize to the encoder's size (lookup tables where it can), it costs 3-11 ms
    per 224x224 frame on the 2-core build machine, quiet or busy: about 5 % of encoding the frame
    with ViT-B/32 (bench/hdr.py).  Primaries other than BT.2020 or
    BT.709 (Display P3: smpte432) are left as they are, as both decoders name them.
    """
    if not is_hdr(transfer):
        return frames
    light = _signal_to_light(transfer)[frames.long()]  # each channel's 256 values, computed once
    if transfer == "arib-std-b67":  # HLG: that was scene light; the OOTF of a HLG_PEAK display
        ys = light[:, 0] * 0.2627 + light[:, 1] * 0.6780 + light[:, 2] * 0.0593
        light = light * (ys.clamp(min=1e-6) ** 0.2 * (HLG_PEAK / REFERENCE_WHITE)).unsqueeze(1)
    if (primaries or "bt2020") == "bt2020":  # (an untagged HDR stream is taken as BT.2020)
        matrix = torch.tensor(_BT2020_TO_BT709, dtype=light.dtype)
        light = (matrix @ light.flatten(2)).view_as(light)
    light = light.clamp(min=0)
    peak = light.amax(dim=1, keepdim=True)
    over = (peak - SHOULDER).clamp(min=0)
    squeezed = SHOULDER + over / (1 + over / (1 - SHOULDER))  # slope 1 at SHOULDER, towards 1.0
    light = light * torch.where(peak > SHOULDER, squeezed / peak.clamp(min=1e-6), 1.0)
    encode = _sdr_signal()
    return encode[(light.clamp(0, 1) * (len(encode) - 1)).round_().long()]


@functools.cache
def _signal_to_light(transfer: str) -> torch.Tensor:
    """The 256 8-bit signal values of ``transfer`` as linear light (float32): PQ's EOTF in units of
    REFERENCE_WHITE; HLG's inverse OETF (scene light, 0-1)."""
    x = torch.arange(256, dtype=torch.float64) / 255.0
    if transfer == "smpte2084":
        m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 32, 3424 / 4096, 2413 / 128, 2392 / 128
        p = x ** (1 / m2)
        return (((p - c1).clamp(min=0) / (c2 - c3 * p)) ** (1 / m1) * (10000.0 / REFERENCE_WHITE)).float()
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    return torch.where(x <= 0.5, x * x / 3.0, (torch.exp((x - c) / a) + b) / 12.0).float()


@functools.cache
def _sdr_signal() -> torch.Tensor:
    """Linear light (0-1, in 2**16 steps) to the 8-bit signal of an SDR screen (gamma 2.4); made by
    the first HDR frame, so an import for SDR video costs nothing."""
    return (torch.linspace(0, 1, 1 << 16, dtype=torch.float64) ** (1 / 2.4) * 255).round().to(torch.uint8)
