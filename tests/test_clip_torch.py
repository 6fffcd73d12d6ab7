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
    for one, other in zip(fast.encode_text_tokens(TEXTS), slow.encode_text_tokens(TEXTS)):  # pooled, tokens, mask
        assert one.shape == other.shape and one.dtype == other.dtype
        assert torch.allclose(one.float(), other.float(), atol=1e-4), (one.float() - other.float()).abs().max()


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


def test_token_features_shapes_masks_and_the_pooled_row(tiny_model, monkeypatch):
    """encode_text_tokens: the pooled embedding exactly as encode_text gives it, one unit-norm
    row per token of each sentence (start and end-of-text included), zero rows and a False mask on
    padding, a long sentence cut at the model's length; the end-of-text row is the pooled one."""
    for transformers_path in ("0", "1"):
        monkeypatch.setenv("VMR_TRANSFORMERS", transformers_path)
        encoder = ClipEncoder(tiny_model)
        pooled, tokens, mask = encoder.encode_text_tokens(TEXTS)
        assert torch.equal(pooled, encoder.encode_text(TEXTS))
        n, length = mask.shape
        assert tokens.shape == (n, length, encoder.dim) and mask.dtype == torch.bool and n == len(TEXTS)
        counts = mask.sum(1)
        assert int(counts.max()) == length == encoder.text_tokens  # the long one, truncated
        assert int(counts[1]) == 2  # "": start and end-of-text
        assert all(bool(mask[i, :c].all()) and not mask[i, c:].any() for i, c in enumerate(counts.tolist()))
        norms = tokens.norm(dim=-1)
        assert torch.allclose(norms[mask], torch.ones(int(mask.sum())), atol=1e-5) and not norms[~mask].any()
        last = tokens[torch.arange(n), counts - 1]
        assert torch.allclose(last, pooled, atol=1e-6)
        one = encoder.encode_text_tokens(TEXTS[:1])  # alone: no padding, the same numbers
        assert torch.allclose(one[1][0], tokens[0, :int(counts[0])], atol=1e-6)


def test_families_other_than_clip_give_no_tokens(tiny_model, monkeypatch):
    monkeypatch.setenv("VMR_TRANSFORMERS", "1")
    encoder = ClipEncoder(tiny_model)
    monkeypatch.setattr(encoder.towers.model.config, "model_type", "siglip")
    assert encoder.encode_text_tokens(["a red circle"]) is None


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
    """float16 on a GPU with tensor cores for clip_torch (older GPUs and the transformers path
    keep float32), never on a CPU; VMR_DTYPE forces any of the three.  bench/cuda.py measures what this choice costs."""
    from vmr_cli.encoders import compute_dtype

    monkeypatch.delenv("VMR_DTYPE", raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))  # an H200
    assert compute_dtype(768, "cuda") == torch.float16 and compute_dtype(768, "cuda:1") == torch.float16
    assert compute_dtype(768, "cuda", half_on_gpu=False) == torch.float32
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (6, 1))  # a GTX 1080
    assert compute_dtype(768, "cuda") == torch.float32
    assert compute_dtype(768, "cpu") in (torch.float32, torch.bfloat16) and compute_dtype(64) == torch.float32
    for forced, dtype in (("float32", torch.float32), ("bf16", torch.bfloat16), ("float16", torch.float16)):
        monkeypatch.setenv("VMR_DTYPE", forced)
        assert compute_dtype(768, "cuda") == dtype and compute_dtype(64, "cpu") == dtype


def test_vmr_device_chooses_the_encoders_device(tiny_model, tmp_path, monkeypatch):
    from conftest import make_video, vmr

    from vmr_cli.encoders import choose_device
    from vmr_cli.errors import VmrError

    monkeypatch.setenv("VMR_DEVICE", "cpu")
    assert choose_device() == "cpu" and ClipEncoder(tiny_model).device == "cpu"
    make_video(tmp_path / "v" / "a.mp4", [("red", 2.0)])
    vmr("index", tmp_path / "v", "--model", tiny_model)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("VMR_DEVICE", " CUDA ")
    code, out, err = vmr("search", "a red screen", expect=1)
    assert err.startswith("Error: VMR_DEVICE=cuda, but this torch sees no CUDA GPU (torch ")
    assert err.strip().endswith("unset it to encode on the CPU") and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("VMR_DEVICE", "gpu")
    with pytest.raises(VmrError, match=r"^VMR_DEVICE=gpu: say cpu, cuda or cuda:N$"):
        choose_device()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("VMR_DEVICE", "cuda:1")
    with pytest.raises(VmrError, match=r"^VMR_DEVICE=cuda:1, but this torch sees 1 GPU\(s\)$"):
        choose_device()
    monkeypatch.setenv("VMR_DEVICE", "cuda:0")
    assert choose_device() == "cuda:0"
    monkeypatch.delenv("VMR_DEVICE")
    assert choose_device() == "cuda"


def test_a_gpu_failure_is_one_line_naming_vmr_device(tiny_model, monkeypatch):
    """Out of GPU memory (or no kernels for this GPU, a lost device): torch raises RuntimeError
    subclasses; vmr says which step failed and how to go on without the GPU.  On the CPU the
    same errors pass unchanged (they are vmr's bugs there, not the machine's)."""
    from vmr_cli.errors import VmrError

    encoder = ClipEncoder(tiny_model, device="cpu")
    frames = torch.zeros((3, 3, encoder.image_size, encoder.image_size), dtype=torch.uint8)

    def out_of_memory(*args, **kwargs):
        # torch 2.13's message on the H200, one line (there with only 146.59 KiB allowed)
        raise torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 2.00 MiB. GPU 0 has a total capacity of 139.80 GiB of which "
            "139.29 GiB is free. Including non-PyTorch memory, this process has 518.00 MiB memory in use. "
            "146.59 KiB allowed; Of the allocated memory 0 bytes is allocated by PyTorch, and 0 bytes is "
            "reserved by PyTorch but unallocated. If reserved but unallocated memory is large try setting "
            "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.\nmore detail")

    monkeypatch.setattr(encoder.towers, "image_features", out_of_memory)
    monkeypatch.setattr(encoder.towers, "text_features", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        encoder.encode_images(frames)
    encoder.device = "cuda:0"
    monkeypatch.setattr(encoder, "_to_device", lambda batch: batch)  # no GPU here: stays where it is
    for call, doing in ((lambda: encoder.encode_images(frames), "encoding frames"),
                        (lambda: encoder.encode_text(["a red circle"]), "encoding text")):
        with pytest.raises(VmrError) as caught:
            call()
        assert str(caught.value) == (f"the GPU failed while {doing} (CUDA out of memory. Tried to allocate "
                                     "2.00 MiB); run with VMR_DEVICE=cpu to encode on the CPU instead")


def test_a_gpu_failing_mid_index_keeps_what_was_committed(tiny_model, tmp_path, monkeypatch):
    """The GPU runs out of memory on the second video: the run ends with the one-line error,
    the first video stays indexed, nothing is recorded against the files it did not finish,
    and the next run (on the CPU) indexes the rest."""
    from conftest import make_video

    from vmr_cli.errors import VmrError
    from vmr_cli.indexer import index_paths
    from vmr_cli.library import Library

    folder = tmp_path / "videos"
    for i, colour in enumerate(("red", "green", "blue")):
        make_video(folder / f"v{i}.mp4", [(colour, 2.0), ("white", 2.0)])
    encoder = ClipEncoder(tiny_model, device="cpu")
    image_features, calls = encoder.towers.image_features, []

    def fails_on_the_second_video(pixels):
        calls.append(len(pixels))
        if len(calls) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 MiB")
        return image_features(pixels)

    encoder.device = "cuda:0"
    monkeypatch.setattr(encoder, "_to_device", lambda batch: batch)  # no GPU here: stays where it is
    monkeypatch.setattr(encoder.towers, "image_features", fails_on_the_second_video)
    library = Library(str(tmp_path / "library"))
    with pytest.raises(VmrError, match=r"^the GPU failed while encoding frames \(CUDA out of memory\. "
                                       r"Tried to allocate 2\.00 MiB\); run with VMR_DEVICE=cpu"):
        index_paths(library, [str(folder)], encoder=encoder, progress=False)
    library.close()

    library = Library(str(tmp_path / "library"))
    ok = library.catalog.videos("ok")
    assert [os.path.basename(v["path"]) for v in ok] == ["v0.mp4"] and library.catalog.videos("failed") == []
    assert library.vectors.read_shard(ok[0]["id"], ok[0]["vectors_token"]) is not None
    library.check(repair=True)
    assert library.check(repair=False)["consistent"]
    monkeypatch.undo()
    encoder.device = "cpu"
    summary = index_paths(library, [str(folder)], encoder=encoder, progress=False)
    assert (summary["added"], summary["unchanged"], summary["failed"]) == (2, 1, [])
    assert len(library.catalog.videos("ok")) == 3 and library.check(repair=False)["consistent"]
    library.close()


def test_both_paths_say_what_they_read_of_a_long_sentence(tiny_model, monkeypatch):
    """The rest of a sentence past the model's text length was dropped without a word."""
    fast, slow = _both(tiny_model, monkeypatch)
    assert fast.text_tokens == slow.text_tokens == 32
    assert fast.text_read("a red circle") is None and slow.text_read("a red circle") is None
    long = " ".join(f"word{i}" if i % 2 else "door" for i in range(60))
    assert fast.text_read(long) == slow.text_read(long)
    assert long.startswith(fast.text_read(long)) and len(fast.text_read(long).split()) < 60


def test_int8_image_tower_on_a_cpu_without_native_bfloat16(monkeypatch):
    """A CPU without native bfloat16 ran ViT-B/32 in float32 (72-117 ms a frame on a 2-core AMD
    EPYC); its image tower's linear layers now run in int8 (1.3-1.5x faster, bench/int8.py) once an encoder has 64
    frames to encode, embeddings at cosine >= 0.999 to float32.  Only wide towers, only on a
    CPU, and VMR_DTYPE decides when set."""
    from vmr_cli import encoders

    monkeypatch.delenv("VMR_DTYPE", raising=False)
    monkeypatch.setattr(encoders, "_native_bf16", lambda: False)
    assert encoders.int8_image(768) and not encoders.int8_image(64) and not encoders.int8_image(768, "cuda")
    monkeypatch.setattr(encoders, "_native_bf16", lambda: True)
    assert not encoders.int8_image(768)  # bfloat16 there
    for forced, want in (("int8", True), ("float32", False), ("bf16", False)):
        monkeypatch.setenv("VMR_DTYPE", forced)
        assert encoders.int8_image(64) == want
    assert encoders.compute_dtype(768, "cpu") == torch.bfloat16  # VMR_DTYPE=bf16 still
    monkeypatch.setenv("VMR_DTYPE", "int8")
    assert encoders.compute_dtype(768, "cpu") == torch.float32  # the int8 layers work around float32
    model = ROOT / "examples" / "models" / "tiny-clip"
    quantized = ClipEncoder(str(model))
    monkeypatch.setenv("VMR_DTYPE", "float32")
    plain = ClipEncoder(str(model))
    frames = torch.randint(0, 256, (6, 3, quantized.image_size, quantized.image_size), dtype=torch.uint8)
    quantized.encode_images(frames)  # a search's few frames: packing (1-1.6 s for ViT-B/32) would not pay
    assert not quantized.towers._int8
    quantized.encode_images(torch.cat([frames] * 10))  # past 64 frames: an index's
    plain.encode_images(torch.cat([frames] * 10))
    assert quantized.towers._int8 and not plain.towers._int8
    cosine = (quantized.encode_images(frames) * plain.encode_images(frames)).sum(-1)
    assert float(cosine.min()) > 0.99, cosine
    texts = ["a red circle", "a person opens the door"]
    assert torch.allclose(quantized.encode_text(texts), plain.encode_text(texts))  # the text tower is not


def test_a_mistyped_vmr_dtype_is_an_error_not_the_default(tiny_model, tmp_path, monkeypatch):
    """README: `VMR_DTYPE=float32` forces full precision.  A typo of it (`flaot32`) was taken
    as the default without a word, and also turned the int8 image tower off; it is now one
    line naming the values, before anything is indexed.  Case and spaces do not matter, and
    an empty VMR_DTYPE is unset."""
    from conftest import make_video, vmr

    from vmr_cli import encoders

    make_video(tmp_path / "v" / "a.mp4", [("red", 2.0)])
    monkeypatch.setenv("VMR_DTYPE", "flaot32")
    code, out, err = vmr("index", tmp_path / "v", "--model", tiny_model, expect=1)
    assert err.strip() == "Error: VMR_DTYPE=flaot32: say float32, bfloat16, float16 or int8 (or unset it)"
    assert out == "" and not (tmp_path / "library").exists()
    monkeypatch.setenv("VMR_DTYPE", " FP32 ")
    assert encoders.compute_dtype(768, "cpu") == torch.float32 and not encoders.int8_image(768)
    monkeypatch.setenv("VMR_DTYPE", "")
    monkeypatch.setattr(encoders, "_native_bf16", lambda: False)
    assert encoders.int8_image(768)  # as when unset: the default's int8 on such a CPU
    vmr("index", tmp_path / "v", "--model", tiny_model)


def test_a_model_folder_whose_path_is_not_utf8(tiny_model, tmp_path):
    """safetensors' torch loader and tokenizers take names as UTF-8 only: such a folder (a hub
    cache under a Latin-1 home folder) was reported as 'weight files look damaged: download
    them again'.  The towers now load from it; named with --model, where the library would
    record the path as text, it is refused with the reason."""
    import shutil

    from vmr_cli.errors import VmrError

    folder = os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), b"mod\xe8le"))
    shutil.copytree(tiny_model, folder)
    towers = clip_torch.TorchClip(folder, ["model.safetensors"])
    reference = clip_torch.TorchClip(tiny_model, ["model.safetensors"])
    assert torch.equal(towers.text_features(TEXTS), reference.text_features(TEXTS))
    with pytest.raises(VmrError, match="not valid UTF-8, which the library cannot record; rename"):
        ClipEncoder(folder)
