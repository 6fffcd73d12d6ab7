"""What every benchmark shares: where the repository, its outputs and the tiny model are,
the repository on sys.path (examples/ is not an installed package), and cached worlds.

Benchmarks run as scripts (``python bench/NAME.py``), so this folder is on sys.path and
``from common import ...`` finds this file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
TINY_MODEL = ROOT / "examples" / "models" / "tiny-clip"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def frame_bench_arguments(doc: str):
    """The arguments of a benchmark that times one encoder on random frames (bench/int8.py,
    bench/hdr.py): --model (default: the ViT-B/32-sized CLIP bench/vitb32.py builds), --frames,
    --rounds."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", default=str(OUT / "vitb32"))
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


def cached_world(folder: Path, videos: int, duration: float, seed: int) -> list[dict]:
    """A synthetic world generated once into folder (bench/out/ is kept between runs);
    returns its QVHighlights-style annotation records."""
    from examples.synthetic_world import generate_world

    marker = folder / "annotations.jsonl"
    if not marker.exists():
        print(f"generating {folder.name} (once)...", file=sys.stderr)
        generate_world(folder, videos=videos, duration=duration, seed=seed)
    return [json.loads(line) for line in marker.read_text().splitlines() if line.strip()]


def model_suffix(model: Path | str = TINY_MODEL) -> str:
    """Nothing for the tiny CLIP, else "_<folder name>": what tells apart the outputs of one
    benchmark run with another encoder (``--model``)."""
    model = Path(model)
    return "" if model.resolve() == TINY_MODEL.resolve() else f"_{model.name}"


def library_for(folder: Path, model: Path | str = TINY_MODEL) -> Path:
    """Where a world's library is kept for a model: one library per (world, model), so a
    benchmark run with ``--model`` never mixes embeddings of two encoders."""
    return OUT / f"library_{folder.name}{model_suffix(model)}"
