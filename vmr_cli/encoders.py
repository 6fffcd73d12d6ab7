"""CLIP-family image and text encoders through transformers.

Any model with ``get_image_features`` / ``get_text_features`` loads from a hub
id or a local folder.  Images arrive as uint8 tensors already scaled to the
model's input size (the decoder does that early); normalisation uses the
model's own mean and std from its ``preprocessor_config.json``.
"""

from __future__ import annotations

import json
import os
from .errors import VmrError, first_line

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def model_name(name_or_dir: str) -> str:
    """The name recorded in the library: a local folder by absolute path, a hub id as given."""
    if os.path.isdir(name_or_dir):
        return os.path.abspath(name_or_dir)
    return name_or_dir


class ClipEncoder:
    # 16 frames per forward pass: measured fastest for ViT-B/32 on a 2-core CPU (64 was 15 % slower).
    def __init__(self, name_or_dir: str = DEFAULT_MODEL, device: str | None = None, batch_size: int = 16):
        import torch

        self.name = model_name(name_or_dir)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        self.model, self.tokenizer, prep = _load(self.name)
        self.model.to(self.device).eval()
        vision = self.model.config.vision_config
        self.image_size = int(_crop_size(prep) or vision.image_size)
        self.mean = tuple(prep.get("image_mean", OPENAI_MEAN))
        self.std = tuple(prep.get("image_std", OPENAI_STD))
        self.dim = int(self.model.config.projection_dim)
        text = self.model.config.text_config
        self.max_length = int(min(getattr(self.tokenizer, "model_max_length", 77) or 77,
                                  text.max_position_embeddings))

    def encode_images(self, frames):
        """uint8 (N, 3, S, S) -> unit-norm float32 (N, D) on the CPU, in batches."""
        import torch

        from .frames import normalize, resize_center_crop

        if frames.shape[0] == 0:
            return torch.zeros((0, self.dim))
        if frames.shape[-1] != self.image_size or frames.shape[-2] != self.image_size:
            frames = resize_center_crop(frames, self.image_size)
        out = []
        with torch.inference_mode():
            for i in range(0, frames.shape[0], self.batch_size):
                pixels = normalize(frames[i:i + self.batch_size], self.mean, self.std).to(self.device)
                feats = _pooled(self.model.get_image_features(pixel_values=pixels))
                out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out)

    def encode_text(self, texts: list[str]):
        """Sentences -> unit-norm float32 (N, D); long text is truncated to the model's length."""
        import torch

        tokens = self.tokenizer(list(texts), padding=True, truncation=True,
                                max_length=self.max_length, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            feats = _pooled(self.model.get_text_features(**tokens))
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu()


def _pooled(output):
    """transformers 5 returns an output object whose pooler_output is the projected embedding."""
    return getattr(output, "pooler_output", output)


def _crop_size(prep: dict):
    crop = prep.get("crop_size")
    if isinstance(crop, dict):
        return crop.get("height")
    return crop


def _load(name: str):
    """Model, tokenizer and preprocessing config; a clear error when offline or not a CLIP.

    The local cache is tried first, so an offline machine with the model cached
    never touches the network; a hub id that is not cached is fetched only when
    the hub's host resolves, which avoids minutes of retries before the error.
    """
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        return _from_pretrained(name, local_files_only=True)
    except OSError as exc:
        local_error = exc
    if os.path.exists(name):
        pickles = _pickle_only(name)
        if pickles:
            raise VmrError(
                f"model folder {name} holds only pickle weights ({pickles}), which can run code when "
                "loaded; vmr loads safetensors only: convert it where you trust it, e.g. "
                "save_pretrained(DIR, safe_serialization=True)")
        raise VmrError(f"cannot load model folder {name}: {first_line(local_error)}")
    if name.startswith(("/", ".", "~")):
        raise VmrError(f"model folder {name} does not exist")
    if not _hub_reachable():
        raise VmrError(
            f"cannot load model '{name}': it is not in the local cache and the model hub cannot be "
            "reached (offline?); download it once with internet, or pass --model DIR with a local "
            "CLIP folder, e.g. --model examples/models/tiny-clip"
        )
    try:
        return _from_pretrained(name, local_files_only=False)
    except OSError as exc:
        raise VmrError(f"cannot load model '{name}': {first_line(exc)}") from None


def _from_pretrained(name: str, local_files_only: bool):
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(name, local_files_only=local_files_only)
        # safetensors only: pickle weights (pytorch_model.bin) can run code when loaded.
        model = AutoModel.from_pretrained(name, config=config, local_files_only=local_files_only,
                                          use_safetensors=True, dtype=compute_dtype(config))
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_files_only)
    except (ValueError, KeyError) as exc:
        raise VmrError(f"cannot load model '{name}': {first_line(exc)}") from None
    if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise VmrError(f"model '{name}' is not a CLIP-family image-text model")
    return model, tokenizer, _preprocessor_config(name, local_files_only)


# A model this wide is worth bfloat16 on a CPU that computes it natively: ViT-B/32's image
# encoder ran in 0.50x the time of float32 (cosine to float32 >= 0.9999 on every frame tried);
# smaller models (the tests' tiny CLIPs) stay in float32, where speed does not matter.
BF16_FROM_WIDTH = 512


def compute_dtype(config):
    """bfloat16 for a large model on a CPU with native bfloat16 (AVX512-BF16 or AMX), else
    float32; VMR_DTYPE=float32 or bfloat16 forces one.  On a CPU without native bfloat16 it
    is emulated and 4.7x slower than float32, so it is never chosen there."""
    import torch

    forced = os.environ.get("VMR_DTYPE", "auto").lower()
    if forced in ("float32", "fp32"):
        return torch.float32
    if forced in ("bfloat16", "bf16"):
        return torch.bfloat16
    if torch.cuda.is_available():
        return torch.float32
    width = getattr(getattr(config, "vision_config", None), "hidden_size", 0) or 0
    return torch.bfloat16 if width >= BF16_FROM_WIDTH and _native_bf16() else torch.float32


def _native_bf16() -> bool:
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: assume not
        return False


def _pickle_only(folder: str) -> str | None:
    """The pickle weight files of a folder that has no safetensors, else None."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return None
    if any(n.endswith(".safetensors") for n in names):
        return None
    pickles = [n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl"))]
    return ", ".join(pickles) or None


def _hub_reachable() -> bool:
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def _preprocessor_config(name: str, local_files_only: bool) -> dict:
    from transformers.utils import cached_file

    try:
        path = cached_file(name, "preprocessor_config.json", local_files_only=local_files_only,
                           _raise_exceptions_for_missing_entries=False)
    except (OSError, ValueError):
        path = None
    if not path:
        return {}
    with open(path) as handle:
        return json.load(handle)
