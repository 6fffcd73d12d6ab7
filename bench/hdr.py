"""What tone-mapping an HDR frame costs beside encoding it, side by side in one process.

    python bench/hdr.py [--model bench/out/vitb32] [--frames 32] [--rounds 3]

vmr tone-maps the frames of PQ and HLG video (frames.tone_map) after they are scaled to the
encoder's input size, before they are encoded.  With the ViT-B/32-sized CLIP (random weights,
built by bench/vitb32.py for bench/realsize.py; vmr's default dtype for this CPU), the same
random 224x224 frames are tone-mapped as PQ, as HLG, and encoded, alternately, ``--rounds``
times; prints ms per frame for each and the tone map's share of an HDR frame's encoding.
Speed only: the frames and weights are random.
"""

from __future__ import annotations

import statistics
import time

from common import frame_bench_arguments


def main() -> None:
    import torch

    from vmr_cli.encoders import ClipEncoder
    from vmr_cli.frames import tone_map

    args = frame_bench_arguments(__doc__)
    encoder = ClipEncoder(args.model)
    size = encoder.image_size
    frames = torch.randint(0, 256, (args.frames, 3, size, size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    steps = {"tone map, PQ": lambda: tone_map(frames, "smpte2084"),
             "tone map, HLG": lambda: tone_map(frames, "arib-std-b67"),
             "encode": lambda: encoder.encode_images(frames)}
    for step in steps.values():
        step()  # warm-up (and the lookup tables, made once)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name].append(1000 * (time.perf_counter() - started) / args.frames)
    print(f"{args.frames} frames of {size}x{size}, {args.rounds} rounds, ms per frame (median):")
    median = {name: statistics.median(ms) for name, ms in times.items()}
    for name, ms in times.items():
        print(f"  {name:14s} {', '.join(f'{m:.1f}' for m in ms)} -> {median[name]:.1f}")
    for name in ("tone map, PQ", "tone map, HLG"):
        print(f"  {name}: {100 * median[name] / median['encode']:.0f} % of encoding the frame")


if __name__ == "__main__":
    main()
