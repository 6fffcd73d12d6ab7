"""vmr's encoder on a CUDA GPU: agreement with the CPU, cost per frame by dtype and batch, eval.

    python bench/cuda.py [--vitb32 DIR] [--eval-world DIR --eval-library DIR] [--json FILE]

vmr encodes on the GPU whenever torch sees one (``ClipEncoder``); everything
else (decoding, the stored vectors, the moment head) stays on the CPU.  This
script checks the one part that changes there, on frames decoded from a
synthetic-world video:

- agreement: the tiny CLIP (and, with ``--vitb32``, a ViT-B/32-sized one built
  by bench/vitb32.py into DIR when DIR is missing) on the GPU against the same
  model on the CPU in float32: the lowest cosine over frames and texts;
- cost: milliseconds per frame through ``ClipEncoder.encode_images`` (uint8 in,
  unit vectors on the CPU out, as the indexer and search call it) for float32,
  TF32, bfloat16 and float16 at several batch sizes, with each dtype's lowest
  cosine to the CPU's float32;
- eval (``--eval-world``/``--eval-library``: a world and a library indexed
  beforehand, e.g. by bench/world_eval.py on a CPU machine): ``vmr eval``'s
  numbers with the encoder where torch puts it, decoding with PyAV; the
  library is used as it is (not re-indexed, which needs ffprobe).

Without a GPU it runs the CPU side only (and the eval on the CPU, for the
comparison).  The tiny model's and the random ViT-B/32's embeddings mean
nothing semantically: agreement and time only; the eval numbers are the
synthetic world's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import OUT, TINY_MODEL

TEXTS = ["a red circle moves left", "person opens the door", "a blue square on grass",
         "the green triangle appears", "nothing happens", "a yellow star spins quickly"]
DTYPES = ("float32", "tf32", "bfloat16", "float16")


def world_frames(video: Path, size: int, count: int = 96):
    """``count`` frames spread over one video, uint8 (N, 3, size, size), like the indexer's."""
    import av
    import torch

    from vmr_cli.frames import resize_center_crop

    with av.open(str(video)) as container:
        frames = [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1)
                  for f in container.decode(video=0)]
    step = max(1, len(frames) // count)
    picked = torch.stack(frames[::step][:count])
    return resize_center_crop(picked, size)


def with_dtype(encoder, dtype_name: str):
    """The encoder's towers rebuilt in one dtype (TF32: float32 with TF32 matrix products)."""
    import torch

    from vmr_cli import clip_torch

    torch.backends.cuda.matmul.allow_tf32 = dtype_name == "tf32"
    torch.backends.cudnn.allow_tf32 = dtype_name == "tf32"
    dtype = {"float32": torch.float32, "tf32": torch.float32, "bfloat16": torch.bfloat16,
             "float16": torch.float16}[dtype_name]
    encoder.towers = clip_torch.TorchClip(encoder.files.folder, encoder.files.weights, encoder.device, dtype)
    return encoder


def min_cosine(a, b) -> float:
    return round(float((a * b).sum(-1).min()), 5)


def per_frame_ms(encoder, frames, batch: int, repeats: int = 3) -> float:
    import torch

    encoder.batch_size = batch
    encoder.encode_images(frames[:batch])  # warm-up: kernels chosen, memory allocated
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        encoder.encode_images(frames)  # ends with .cpu(): synchronised
        best = min(best, time.perf_counter() - started)
    return round(1000 * best / frames.shape[0], 3)


def check_model(folder: Path, video: Path, batches: list[int]) -> dict:
    import torch

    from vmr_cli.encoders import ClipEncoder

    cpu = with_dtype(ClipEncoder(str(folder), device="cpu"), "float32")
    frames = world_frames(video, cpu.image_size)
    reference_images, reference_texts = cpu.encode_images(frames), cpu.encode_text(TEXTS)
    report = {"model": folder.name, "frames": int(frames.shape[0]),
              "cpu_float32_ms": per_frame_ms(cpu, frames, 16)}
    if not torch.cuda.is_available():
        return report
    started = time.perf_counter()
    gpu = ClipEncoder(str(folder))
    report["gpu_default"] = {"device": gpu.device, "dtype": str(gpu.towers.dtype),
                             "batch_size": gpu.batch_size, "load_s": round(time.perf_counter() - started, 3),
                             "ms_per_frame": per_frame_ms(gpu, frames, gpu.batch_size),
                             "cos_images": min_cosine(gpu.encode_images(frames), reference_images),
                             "cos_texts": min_cosine(gpu.encode_text(TEXTS), reference_texts)}
    for name in DTYPES:
        with_dtype(gpu, name)
        row = {"cos_images": min_cosine(gpu.encode_images(frames), reference_images),
               "cos_texts": min_cosine(gpu.encode_text(TEXTS), reference_texts)}
        for batch in batches:
            many = frames.repeat((max(1, 4 * batch // frames.shape[0]), 1, 1, 1))
            row[f"ms_per_frame_b{batch}"] = per_frame_ms(gpu, many, batch)
        report[name] = row
    torch.backends.cuda.matmul.allow_tf32 = False
    return report


def run_eval(world: Path, library_dir: Path) -> dict:
    """``vmr eval`` on a library indexed elsewhere: not re-indexed, decoded with PyAV."""
    from vmr_cli import evaluate, indexer
    from vmr_cli.library import Library

    indexer.index_paths = lambda *args, **kwargs: None  # indexed beforehand (ffprobe may be absent)
    started = time.perf_counter()
    library = Library(str(library_dir), create=False)
    try:
        result = evaluate.evaluate(library, str(world / "annotations.jsonl"), str(world), progress=False,
                                   backend="pyav")
    finally:
        library.close()
    keep = ("R1@0.5", "R1@0.7", "mIoU", "R5@0.5")
    return {"device": "cuda" if _cuda() else "cpu", "seconds": round(time.perf_counter() - started, 1),
            "single": {k: v for k, v in result["single"].items() if k in keep},
            "corpus": {k: v for k, v in result["corpus"].items() if k in keep},
            "frames_encoded_per_query": result["cost"]["frames_encoded"]}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vitb32", help="folder of the ViT-B/32-sized CLIP (built there when missing)")
    parser.add_argument("--video", default=str(OUT / "eval_world_10v_120s_seed0" / "world_000.mp4"))
    parser.add_argument("--batches", default="16,64,256")
    parser.add_argument("--eval-world")
    parser.add_argument("--eval-library")
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args()
    import torch

    report = {"torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "models": []}
    print(json.dumps({k: report[k] for k in ("torch", "gpu")}), flush=True)
    batches = [int(b) for b in args.batches.split(",")]
    folders = [TINY_MODEL]
    if args.vitb32:
        folder = Path(args.vitb32)
        if not (folder / "config.json").exists():
            from vitb32 import make_vitb32

            make_vitb32(folder)
        folders.append(folder)
    for folder in folders:
        report["models"].append(check_model(folder, Path(args.video), batches))
        print(json.dumps(report["models"][-1]), flush=True)
    if args.eval_world and args.eval_library:
        report["eval"] = run_eval(Path(args.eval_world), Path(args.eval_library))
        print(json.dumps(report["eval"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
