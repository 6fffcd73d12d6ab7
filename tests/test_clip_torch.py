"""The plain-torch CLIP gives the embeddings transformers gives, from the same folder."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import ROOT

from vmr_cli import clip_torch
from vmr_cli.encoders import ClipEncoder

TEXTS = ["A red circle moves to the left", "", "the blue square " * 30, "an orange star at night"]


def _both(folder, monkeypatch):
    monkeypatch.setenv("VMR_DTYPE", "float32")  # one arithmetic on both sides (a GPU's default is float16)
    fast = ClipEncoder(str(folder))
    assert isinstance(fast.towers, clip_torch.TorchClip)
    monkeypatch.setenv("VMR_TRANSFORMERS", "1")
    slow = ClipEncoder(str(folder))
    assert not isinstance(slow.towers, clip_torch.TorchClip)
    return fast, slow


def _agree(fast, slow):
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (5, 3, fast.image_size, fast.image_size), generator=g, dtype=torch.uint8)
    assert (fast.image_size, fast.dim) == (slow.image_size, slow.dim)
    a, b = fast.encode_images(frames), slow.encode_images(frames)
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
    a, b = fast.encode_text(TEXTS), slow.encode_text(TEXTS)
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()


def test_the_trained_tiny_clip_gives_the_same_embeddings(monkeypatch):
    folder = ROOT / "examples" / "models" / "tiny-clip"
    if not (folder / "config.json").exists():
        pytest.skip("the trained tiny model is missing")
    _agree(*_both(folder, monkeypatch))


@pytest.mark.parametrize("eos", [3, 2])
def test_gelu_and_both_end_of_text_conventions(tmp_path, monkeypatch, eos):
    """Other CLIP variants: exact GELU, another eps, and text pooled at the eos token (3 here) or,
    for configs with the legacy eos_token_id 2 (OpenAI's own), at the highest token id."""
    from examples.tiny_clip import make_tiny_clip

    folder = make_tiny_clip(tmp_path / "variant", seed=3)
    config = json.loads((folder / "config.json").read_text())
    for tower in ("text_config", "vision_config"):
        config[tower].update(hidden_act="gelu", layer_norm_eps=1e-6)
    config["text_config"]["eos_token_id"] = eos
    (folder / "config.json").write_text(json.dumps(config))
    _agree(*_both(folder, monkeypatch))


def test_other_families_and_folders_without_tokenizer_json_use_transformers(tmp_path, tiny_model):
    import shutil

    folder = tmp_path / "no-tokenizer-json"
    shutil.copytree(tiny_model, folder)
    (folder / "tokenizer.json").unlink()
    assert clip_torch.supported(tiny_model) and not clip_torch.supported(str(folder))
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "siglip"
    (tmp_path / "siglip").mkdir()
    (tmp_path / "siglip" / "config.json").write_text(json.dumps(config))
    assert not clip_torch.supported(str(tmp_path / "siglip"))



def test_weights_in_another_layout_fall_back_to_transformers(tmp_path, tiny_model, monkeypatch):
    """Keys not named as transformers' CLIPModel names them: one exception, and the encoder uses transformers."""
    from safetensors.torch import load_file, save_file

    weights = load_file(os.path.join(tiny_model, "model.safetensors"))
    save_file({"clip." + k: v for k, v in weights.items()}, str(tmp_path / "prefixed.safetensors"))
    with pytest.raises(clip_torch.Unsupported):
        clip_torch.TorchClip(tiny_model, [str(tmp_path / "prefixed.safetensors")])
    assert isinstance(ClipEncoder(tiny_model).towers, clip_torch.TorchClip)

    def unsupported(*args, **kwargs):
        raise clip_torch.Unsupported("test")

    real = clip_torch.TorchClip
    monkeypatch.setattr(clip_torch, "TorchClip", unsupported)
    encoder = ClipEncoder(tiny_model)
    assert not isinstance(encoder.towers, real)
    assert encoder.encode_text(["a red circle"]).shape == (1, encoder.dim)


def test_compute_dtype_by_device(monkeypatch):
    """float16 on a GPU for clip_torch (the transformers path keeps float32 there), never on a
    CPU; VMR_DTYPE forces any of the three.  bench/cuda.py measures what this choice costs."""
    from vmr_cli.encoders import compute_dtype

    monkeypatch.delenv("VMR_DTYPE", raising=False)
    assert compute_dtype(768, "cuda") == torch.float16 and compute_dtype(768, "cuda:1") == torch.float16
    assert compute_dtype(768, "cuda", half_on_gpu=False) == torch.float32
    assert compute_dtype(768, "cpu") in (torch.float32, torch.bfloat16) and compute_dtype(64) == torch.float32
    for forced, dtype in (("float32", torch.float32), ("bf16", torch.bfloat16), ("float16", torch.float16)):
        monkeypatch.setenv("VMR_DTYPE", forced)
        assert compute_dtype(768, "cuda") == dtype and compute_dtype(64, "cpu") == dtype
