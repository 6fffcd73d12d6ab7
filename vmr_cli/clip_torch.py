"""CLIP's two encoders in plain torch, read straight from a transformers CLIP folder.

Why: importing transformers' CLIP code costs about 2.9 s in every fresh
process on a 2-core CPU (it pulls in torch.distributed, dynamo, sympy...),
more than the model itself takes to load; a search is a fresh process.  A
CLIP forward pass is small, so for the one family vmr uses by default
(``model_type: clip``, the OpenAI checkpoints and their fine-tunes) vmr runs
it here from the same safetensors file and the same ``tokenizer.json``, and
falls back to transformers for anything else (SigLIP, other families, a
folder without ``tokenizer.json``).  tests/test_clip_torch.py checks that both
give the same embeddings.

Architecture (transformers' CLIPModel): pre-LayerNorm transformer blocks;
the image tower embeds patches plus a class token, its pooled output is the
class token after ``post_layernorm``; the text tower is causal, pooled at the
end-of-text token (the highest token id for configs with the legacy
``eos_token_id`` 2); both project without bias.
"""

from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F

from .paths import native

ACTIVATIONS = {
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "gelu": F.gelu,
}


def supported(folder: str) -> bool:
    """A CLIP folder this module can run: model_type clip, known activations, a tokenizer.json."""
    if os.environ.get("VMR_TRANSFORMERS") == "1":  # force the transformers path (debugging)
        return False
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return False
    towers = (config.get("vision_config") or {}, config.get("text_config") or {})
    return (config.get("model_type") == "clip"
            and all(t.get("hidden_act", "quick_gelu") in ACTIVATIONS for t in towers)
            and os.path.isfile(os.path.join(folder, "tokenizer.json")))


REQUIRED = ("vision_model.embeddings.patch_embedding.weight", "text_model.embeddings.token_embedding.weight",
            "visual_projection.weight", "text_projection.weight")


class Unsupported(Exception):
    """The folder's weights are not laid out as this module reads them."""


class TorchClip:
    """The image and text towers of one CLIP folder, in eval mode, on one device and dtype."""

    def __init__(self, folder: str, weight_files, device: str = "cpu", dtype=torch.float32,
                 int8_image: bool = False):
        from safetensors.torch import load_file

        with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
        self.vision, self.text = config["vision_config"], config["text_config"]
        self.projection_dim = int(config.get("projection_dim", 512))
        self.dtype, self.device = dtype, device
        weights = {}
        for name in weight_files:
            with native(os.path.join(folder, name)) as path:
                weights.update(load_file(path, device="cpu"))
        if any(key not in weights for key in REQUIRED):
            raise Unsupported("weights not in transformers' CLIPModel layout")
        self.w = {k: (v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device))
                  for k, v in weights.items()}
        self.tokenizer = _Tokenizer(folder, int(self.text.get("max_position_embeddings", 77)))
        self.max_length = self.tokenizer.max_length
        self._int8_wanted = int8_image and device == "cpu" and dtype == torch.float32
        self._int8: dict = {}  # packed by use_int8(), once enough frames are to be encoded

    def use_int8(self) -> None:
        """Run the image tower's linear layers in int8 from now on, where int8_image asked for it.
        Packing them costs 1.1-1.6 s (ViT-B/32, 2 cores), 40-60 frames' worth of the time int8
        saves: worth it for an index, not for a search's few frames."""
        if self._int8_wanted and not self._int8:
            self._int8 = _int8_linears(self.w)
            self._int8_wanted = bool(self._int8)

    # -- blocks ------------------------------------------------------------------------
    def _ln(self, x, name: str, eps: float):
        return F.layer_norm(x, x.shape[-1:], self.w[name + ".weight"], self.w[name + ".bias"], eps)

    def _linear(self, x, name: str, bias: bool = True):
        packed = self._int8.get(name)
        if packed is not None:
            return torch.ops.quantized.linear_dynamic(x.contiguous(), packed)
        return F.linear(x, self.w[name + ".weight"], self.w.get(name + ".bias") if bias else None)

    def _encoder(self, x, prefix: str, tower: dict, mask=None):
        eps = float(tower.get("layer_norm_eps", 1e-5))
        heads = int(tower["num_attention_heads"])
        act = ACTIVATIONS[tower.get("hidden_act", "quick_gelu")]
        b, s, d = x.shape
        for i in range(int(tower["num_hidden_layers"])):
            p = f"{prefix}.encoder.layers.{i}"
            h = self._ln(x, p + ".layer_norm1", eps)
            q, k, v = (self._linear(h, f"{p}.self_attn.{n}_proj").view(b, s, heads, -1).transpose(1, 2)
                       for n in "qkv")
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            x = x + self._linear(a.transpose(1, 2).reshape(b, s, d), p + ".self_attn.out_proj")
            h = self._ln(x, p + ".layer_norm2", eps)
            x = x + self._linear(act(self._linear(h, p + ".mlp.fc1")), p + ".mlp.fc2")
        return x

    # -- towers ------------------------------------------------------------------------
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels (N, 3, S, S) -> projected embeddings (N, D), not normalised."""
        w, pre = self.w, "vision_model"
        eps = float(self.vision.get("layer_norm_eps", 1e-5))
        x = F.conv2d(pixels.to(device=self.device, dtype=self.dtype), w[pre + ".embeddings.patch_embedding.weight"],
                     stride=int(self.vision["patch_size"]))
        x = x.flatten(2).transpose(1, 2)
        cls = w[pre + ".embeddings.class_embedding"].expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], 1) + w[pre + ".embeddings.position_embedding.weight"][: x.shape[1] + 1]
        x = self._ln(x, pre + ".pre_layrnorm", eps)
        x = self._encoder(x, pre, self.vision)
        pooled = self._ln(x[:, 0], pre + ".post_layernorm", eps)
        return self._linear(pooled, "visual_projection", bias=False)

    def text_read(self, text: str) -> str | None:
        """What text_features reads of a long sentence (None: all of it)."""
        return self.tokenizer.read(text)

    def text_features(self, texts: list[str]) -> torch.Tensor:
        """Sentences -> projected embeddings (N, D), not normalised; long ones truncated."""
        return self._text(texts, tokens=False)[0]

    def text_token_features(self, texts: list[str]):
        """Sentences -> (pooled (N, D), tokens (N, L, D), attention (N, L) long), projected and not
        normalised, from one pass: every position's last hidden state through the final layer norm
        and ``text_projection``, as transformers' ``text_projection(last_hidden_state)``; ``pooled``
        is exactly what text_features returns (the end-of-text row, projected alone as there)."""
        return self._text(texts, tokens=True)

    def _text(self, texts: list[str], tokens: bool):
        ids, attention = self.tokenizer(texts)
        ids, attention = ids.to(self.device), attention.to(self.device)
        w, pre = self.w, "text_model"
        s = ids.shape[1]
        x = w[pre + ".embeddings.token_embedding.weight"][ids] + w[pre + ".embeddings.position_embedding.weight"][:s]
        blocked = torch.full((s, s), float("-inf"), dtype=x.dtype, device=x.device).triu(1)
        padding = torch.zeros(attention.shape, dtype=x.dtype, device=x.device).masked_fill(attention == 0,
                                                                                          float("-inf"))
        mask = blocked[None, None] + padding[:, None, None, :]
        x = self._encoder(x, pre, self.text, mask=mask)
        x = self._ln(x, pre + ".final_layer_norm", float(self.text.get("layer_norm_eps", 1e-5)))
        eos = int(self.text.get("eos_token_id", 2))
        if eos == 2:  # configs from before transformers knew the token: the highest id is end-of-text
            at = ids.argmax(-1)
        else:
            at = (ids == eos).int().argmax(-1)
        pooled = self._linear(x[torch.arange(ids.shape[0], device=x.device), at], "text_projection", bias=False)
        if not tokens:
            return pooled, None, None
        return pooled, self._linear(x, "text_projection", bias=False), attention


class _Tokenizer:
    """tokenizer.json through the tokenizers library (no transformers import), padded and truncated
    the way transformers' fast CLIP tokenizer does: at most model_max_length tokens, padded with the
    pad token (or end-of-text) to the longest sentence."""

    def __init__(self, folder: str, positions: int):
        from tokenizers import Tokenizer

        with native(os.path.join(folder, "tokenizer.json")) as path:
            self.tokenizer = Tokenizer.from_file(path)
        settings = _json(folder, "tokenizer_config.json")
        specials = _json(folder, "special_tokens_map.json")
        pad = settings.get("pad_token") or specials.get("pad_token") or "<|endoftext|>"
        pad = pad.get("content") if isinstance(pad, dict) else pad
        pad_id = self.tokenizer.token_to_id(pad)
        self.max_length = int(min(settings.get("model_max_length") or positions, positions))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.tokenizer.enable_padding(pad_id=pad_id if pad_id is not None else 0, pad_token=pad)

    def read(self, text: str) -> str | None:
        """The start of text that fits in max_length tokens, or None when all of it does: the
        rest is dropped, and the user is told so."""
        encoded = self.tokenizer.encode(text)
        if not encoded.overflowing:
            return None
        return text[:max((end for _start, end in encoded.offsets), default=0)]

    def __call__(self, texts: list[str]):
        encoded = self.tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in encoded], dtype=torch.long)
        attention = torch.tensor([e.attention_mask for e in encoded], dtype=torch.long)
        return ids, attention


def _int8_linears(weights: dict) -> dict:
    """The image tower's linear layers with int8 weights (one scale per output channel), for a
    CPU without native bfloat16: ViT-B/32-sized, 1.3-1.5x faster than float32 (bench/int8.py) on a
    2-core AMD EPYC, embeddings at cosine >= 0.999 to float32 (bench/RESULTS.md).  The
    activations stay float (quantised per call by fbgemm).  {} where this torch has no such
    kernels (its quantised-tensor API is deprecated): float32 then, as before."""
    import warnings

    packed = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the quantised-tensor API's deprecation, once per layer
            for name, w in weights.items():
                base = name[:-len(".weight")]
                if not (name.endswith(".weight") and w.dim() == 2 and (
                        name.startswith("vision_model.encoder.") or base == "visual_projection")):
                    continue
                scale = (w.abs().amax(1).double() / 127).clamp(min=1e-12)
                q = torch.quantize_per_channel(w.float(), scale, torch.zeros(len(scale), dtype=torch.long), 0,
                                               torch.qint8)
                packed[base] = torch.ops.quantized.linear_prepack(q, weights.get(base + ".bias"))
            torch.ops.quantized.linear_dynamic(torch.zeros(1, w.shape[1]), packed[base])  # the kernel runs here
    except Exception:  # noqa: BLE001 - no quantised kernels in this build: float32
        return {}
    return packed


def _json(folder: str, name: str) -> dict:
    try:
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}
