"""Build small CLIP-architecture models that load exactly like hub models.

No pretrained image-text weights can be downloaded where vmr is built and
tested, so tests and the offline demo use a CLIPModel with a tiny config and a
word-level tokenizer, saved with ``save_pretrained``.  vmr loads the folder
through the same ``from_pretrained`` path it uses for a hub id.

    python examples/tiny_clip.py OUT_DIR [--seed 0]    # random weights
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]

# Enough English for the words people type; anything else maps to <unk>.
BASIC_WORDS = (
    "a an the of in on at to from with and or is are person man woman dog cat "
    "car van tree door opens closes walks runs sits stands street path window "
    "floor screen bike cyclist people road"
).split()


def build_tokenizer(words, max_length: int = 32):
    """A word-level tokenizer (lower-cased, punctuation split) wrapped for transformers."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for word in words:
        vocab.setdefault(word.lower(), len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>",
        special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=max_length,
    )


def tiny_config(vocab_size: int, image_size: int = 64, patch_size: int = 8, width: int = 64,
                layers: int = 2, heads: int = 2, projection_dim: int = 64, max_length: int = 32):
    """A CLIPConfig small enough to train and run on a laptop CPU."""
    from transformers import CLIPConfig

    text = dict(vocab_size=vocab_size, hidden_size=width, intermediate_size=width * 2,
                num_hidden_layers=layers, num_attention_heads=heads,
                max_position_embeddings=max_length, pad_token_id=0, bos_token_id=2, eos_token_id=3)
    vision = dict(hidden_size=width, intermediate_size=width * 2, num_hidden_layers=layers,
                  num_attention_heads=heads, image_size=image_size, patch_size=patch_size)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)


def write_preprocessor_config(out_dir: Path, image_size: int,
                              mean=(0.48145466, 0.4578275, 0.40821073),
                              std=(0.26862954, 0.26130258, 0.27577711)) -> None:
    """The same file a hub CLIP carries: vmr reads size, mean and std from it."""
    cfg = {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True, "size": {"shortest_edge": image_size},
        "do_center_crop": True, "crop_size": {"height": image_size, "width": image_size},
        "do_normalize": True, "image_mean": list(mean), "image_std": list(std),
        "do_rescale": True, "rescale_factor": 1 / 255,
    }
    (Path(out_dir) / "preprocessor_config.json").write_text(json.dumps(cfg, indent=2))


def make_tiny_clip(out_dir, words=BASIC_WORDS, seed: int = 0, **config) -> Path:
    """Save a randomly initialised tiny CLIP, tokenizer and preprocessor config to out_dir."""
    import torch
    import transformers
    from transformers import CLIPModel

    transformers.utils.logging.disable_progress_bar()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(words, max_length=config.get("max_length", 32))
    torch.manual_seed(seed)
    model = CLIPModel(tiny_config(len(tokenizer), **config))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    write_preprocessor_config(out_dir, model.config.vision_config.image_size)
    return out_dir


def words_of(texts) -> list[str]:
    """Vocabulary of a list of sentences, in first-seen order."""
    seen: dict[str, None] = {}
    for text in texts:
        for word in re.findall(r"\w+|[^\w\s]", text.lower()):
            seen.setdefault(word, None)
    return list(seen)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_tiny_clip(args.out_dir, seed=args.seed))
