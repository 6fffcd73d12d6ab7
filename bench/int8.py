"""The image encoder in float32 against int8 linear layers, side by side in one process.

    python bench/int8.py [--model bench/out/vitb32] [--frames 32] [--rounds 3]

Two encoders of the same model (default: the ViT-B/32-sized CLIP with random weights that
bench/realsize.py builds with bench/vitb32.py): one forced to float32 (VMR_DTYPE=float32), one
with its image tower's linear layers in int8 (VMR_DTYPE=int8, what vmr chooses for an index on a
CPU without native bfloat16).  Both encode the same random frames, alternately, ``--rounds``
times; prints ms per frame for each and the lowest cosine between their embeddings (images and
two sentences).  Speed only: the weights are random.
"""

from __future__ import annotations

import os
import time

from common import frame_bench_arguments


def main() -> None:
    import torch

    from vmr_cli.encoders import ClipEncoder

    args = frame_bench_arguments(__doc__)
    encoders = {}
    for kind in ("float32", "int8"):
        os.environ["VMR_DTYPE"] = kind
        encoders[kind] = ClipEncoder(args.model)
    encoders["int8"].towers.use_int8()  # packed before timing, as an index has after 64 frames
    size = encoders["int8"].image_size
    frames = torch.randint(0, 256, (args.frames, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for encoder in encoders.values():
        encoder.encode_images(frames[:4])  # warm-up
    times = {kind: [] for kind in encoders}
    out = {}
    for _ in range(args.rounds):
        for kind, encoder in encoders.items():
            started = time.perf_counter()
            out[kind] = encoder.encode_images(frames)
            times[kind].append(1000 * (time.perf_counter() - started) / args.frames)
    texts = ["a person opens the door", "a red car drives by"]
    text_cos = (encoders["float32"].encode_text(texts) * encoders["int8"].encode_text(texts)).sum(-1)
    for kind in encoders:
        print(f"{kind:8} ms a frame: " + ", ".join(f"{t:.1f}" for t in times[kind]))
    print(f"int8 layers: {len(encoders['int8'].towers._int8)}; lowest cosine to float32: images "
          f"{float((out['float32'] * out['int8']).sum(-1).min()):.4f}, texts {float(text_cos.min()):.4f}")


if __name__ == "__main__":
    main()
