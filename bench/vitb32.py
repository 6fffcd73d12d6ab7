"""A CLIP with exactly ViT-B/32's shapes and random weights, for speed measurements.

Speed is judged at the size users run (``openai/clip-vit-base-patch32``), but
no pretrained weights can be downloaded where vmr is built.  Random weights
cost exactly what the real ones cost, so this folder (saved with
``save_pretrained`` like a hub model, loaded by ``ClipEncoder(dir)``) times the
image and text encoders, model loading and indexing at real size.  Its
embeddings mean nothing: use it for time, never for accuracy.

    python bench/vitb32.py OUT_DIR [--seed 0]

Importable from a benchmark (this folder is on sys.path): ``from vitb32 import make_vitb32``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)

MAX_LENGTH = 77


def vitb32_config():
    """openai/clip-vit-base-patch32's shapes; token ids match the word-level tokenizer."""
    from transformers import CLIPConfig

    both = {"hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "num_hidden_layers": 12}
    text = {"vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8,
            "max_position_embeddings": MAX_LENGTH, "pad_token_id": 0, "bos_token_id": 2,
            "eos_token_id": 3, **both}
    vision = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
              "image_size": 224, "patch_size": 32, **both}
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=512)


def make_vitb32(out_dir, seed: int = 0) -> Path:
    """Save a randomly initialised ViT-B/32 CLIP, tokenizer and preprocessor config to out_dir."""
    import torch
    import transformers
    from transformers import CLIPModel

    from examples import tiny_clip

    transformers.utils.logging.disable_progress_bar()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = CLIPModel(vitb32_config())
    model.save_pretrained(out_dir, safe_serialization=True)
    tiny_clip.build_tokenizer(tiny_clip.BASIC_WORDS, max_length=MAX_LENGTH).save_pretrained(out_dir)
    tiny_clip.write_preprocessor_config(out_dir, 224)
    return out_dir


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_vitb32(args.out_dir, seed=args.seed))
