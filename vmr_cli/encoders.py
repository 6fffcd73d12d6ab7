"""CLIP-family image and text encoders, and which weights they are.

Any model with ``get_image_features`` / ``get_text_features`` loads from a hub
id or a local folder.  Images arrive as uint8 tensors already scaled to the
model's input size (the decoder does that early); normalisation uses the
model's own mean and std from its ``preprocessor_config.json``.

Safetensors only, decided before anything is loaded: ``locate_model`` finds
the folder (a local one, or the hub cache's snapshot of a hub id) and the
weight files transformers would read from it -- ``model.safetensors``, the
shards a ``model.safetensors.index.json`` names, or the file the config's
``transformers_weights`` names -- and refuses the folder when any of them is
not a safetensors file inside it: such an index or config makes transformers
call ``torch.load`` on a pickle, which can run code.  The model then loads
from that folder with ``torch.load`` disabled, so nothing can unpickle even if
transformers finds another way.

The same files are the model's identity: a library records the sha256 of
their bytes, and ``weights_identity`` re-hashes only when their cheap
fingerprint (size, mtime, ctime, inode) changed, so a search pays a few
``stat`` calls, not seconds of hashing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import VmrError, first_line
from .paths import printable

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
SAFE_WEIGHTS, SAFE_INDEX = "model.safetensors", "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# What a hub download fetches besides the weights: config, tokenizer, preprocessing, indexes.
HUB_SMALL_FILES = ["*.json", "*.txt", "*.model", "*.tiktoken"]
CONVERT = "convert it where you trust it, e.g. save_pretrained(DIR, safe_serialization=True)"


class PickleWeights(VmrError):
    """A model whose weights are pickles (``names``, in ``folder``; ``what``: which, said): refused,
    never loaded."""

    def __init__(self, what: str, folder: str, names: list[str]):
        super().__init__(f"{what}; vmr loads safetensors only: {CONVERT}")
        self.what, self.folder, self.names = what, folder, names

    def __reduce__(self):  # (its own arguments: as any exception, it may cross a process)
        return type(self), (self.what, self.folder, self.names)


def model_name(name_or_dir: str) -> str:
    """The name recorded in the library: a local folder by absolute path, a hub id as given."""
    if os.path.isdir(name_or_dir):
        return os.path.abspath(name_or_dir)
    return name_or_dir


@dataclass(frozen=True)
class ModelFiles:
    """A model found on disk: its name, the folder its files are in, and its weight files."""

    name: str                  # what a library records: a folder's absolute path, or a hub id
    folder: str                # that folder, or the hub cache's snapshot of the hub id
    weights: tuple[str, ...]   # the safetensors files transformers will load, relative to folder
    hub: bool = False

    def paths(self) -> list[str]:
        return [os.path.join(self.folder, name) for name in self.weights]


def is_folder_name(name: str) -> bool:
    """A name that can only mean a folder (a hub id never starts like a path)."""
    return name.startswith(("/", ".", "~")) or os.path.exists(name)


def locate_model(name_or_dir: str, download: bool = True) -> ModelFiles:
    """The model's folder and weight files, checked to be safetensors only; nothing is loaded.

    A hub id is looked up in the Hugging Face cache first; it is downloaded
    (when ``download`` and the hub can be reached) only when it is not there.
    """
    name = model_name(name_or_dir)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # the catalog records the name as text
        raise VmrError(f"model folder {printable(name)}: its path is not valid UTF-8, which the library "
                       "cannot record; rename the folder (or one above it)") from None
    if os.path.isdir(name):
        return ModelFiles(name, name, safetensors_weights(name))
    if is_folder_name(name):
        kind = "is not a folder" if os.path.exists(name) else "does not exist"
        raise VmrError(f"model folder {name} {kind}")
    folder = hub_snapshot(name)
    if folder is None:
        if not download or not _hub_reachable():
            raise VmrError(offline_message(name))
        folder = _download(name)
    return ModelFiles(name, folder, safetensors_weights(folder), hub=True)


def offline_message(name: str) -> str:
    example = _example_model()
    hint = f", e.g. --model {example}" if example else ""
    return (f"cannot load model '{name}': it is not in the local cache and the model hub cannot be reached "
            f"(offline?); download it once with internet, or pass --model DIR with a local CLIP folder{hint}")


def _example_model() -> str | None:
    """The tiny CLIP of the checkout vmr runs from, when there is one (not in an installed copy)."""
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "examples", "models", "tiny-clip")
    return folder if os.path.isfile(os.path.join(folder, SAFE_WEIGHTS)) else None


def hub_snapshot(name: str) -> str | None:
    """The cached snapshot folder of a hub id (the commit its main ref points at), or None."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid repository id
        raise VmrError(f"model '{name}' is neither a folder nor a hub id") from None
    return os.path.dirname(found) if isinstance(found, str) else None


def _download(name: str) -> str:
    """Fetch a hub model into the cache: the small files first, then only the weights they name,
    after they were checked to be safetensors."""
    from huggingface_hub import list_repo_files, snapshot_download

    try:
        listing = set(list_repo_files(name))
        folder = snapshot_download(name, allow_patterns=HUB_SMALL_FILES)
        weights = declared_weights(folder, listing)
        snapshot_download(name, allow_patterns=list(weights))
    except VmrError:
        raise
    except Exception as exc:  # network, authentication, missing repository: all one line
        raise VmrError(f"cannot download model '{name}': {first_line(exc)}") from None
    return folder


def safetensors_weights(folder: str) -> tuple[str, ...]:
    """The weight files of a model folder, each a safetensors file inside it; a clear error otherwise."""
    try:
        names = set(os.listdir(folder))
    except OSError as exc:
        raise VmrError(f"cannot read model folder {folder}: {exc.strerror}") from None
    weights = declared_weights(folder, names)
    for weight in weights:
        if not os.path.isfile(os.path.join(folder, weight)):
            raise VmrError(f"model folder {folder} lacks {weight}, one of its weight files")
    return weights


def declared_weights(folder: str, names: set[str]) -> tuple[str, ...]:
    """The files transformers would load from folder with use_safetensors=True, given the file
    names there are (``names``); refuses pickles and names outside the folder."""
    if "adapter_config.json" in names:
        raise VmrError(f"model folder {folder} holds a PEFT adapter; vmr loads whole CLIP models: merge "
                       "the adapter into its base model and save_pretrained the result")
    explicit = _read_json(folder, "config.json").get("transformers_weights")
    if explicit:
        entry, via = str(explicit), " (named by config.json)"
    elif SAFE_WEIGHTS in names:
        entry, via = SAFE_WEIGHTS, ""
    elif SAFE_INDEX in names:
        entry, via = SAFE_INDEX, ""
    else:
        pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
        if pickles:
            raise PickleWeights(f"model folder {folder} holds only pickle weights ({', '.join(pickles)}), which "
                                "can run code when loaded", folder, pickles)
        raise VmrError(f"model folder {folder} has no weights ({SAFE_WEIGHTS})")
    if entry.endswith(".safetensors.index.json"):
        weight_map = _read_json(folder, entry).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise VmrError(f"model folder {folder}: {entry} has no weight_map")
        files, via = sorted({str(f) for f in weight_map.values()}), f" (named by {entry})"
    else:
        files = [entry]
    for name in files:
        if not name.endswith(".safetensors"):
            raise PickleWeights(f"model folder {folder} would load {name}{via}, which is not safetensors: pickle "
                                "weights can run code when loaded", folder, [name])
        if os.path.isabs(name) or os.path.normpath(name).startswith(".."):
            raise VmrError(f"model folder {folder} names weights outside itself ({name}{via})")
    return tuple(files)


def _read_json(folder: str, name: str) -> dict:
    """A JSON file of the model folder ({} when absent); a clear error when unreadable."""
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise VmrError(f"model folder {folder}: cannot read {name}: {first_line(exc)}") from None
    return data if isinstance(data, dict) else {}


# -- which weights: the model's identity ------------------------------------------------------------
def weights_fingerprint(files: ModelFiles) -> list:
    """Cheap: per weight file (symlinks followed: the hub cache links to blobs) its name, size,
    mtime, ctime and inode.  Writing a file changes its ctime, which no tool sets back."""
    out = []
    for name, path in zip(files.weights, files.paths()):
        st = os.stat(path)
        out.append([name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
    return out


def weights_sha256(files: ModelFiles) -> str:
    """sha256 of the weight files' bytes in name order (for one file, what ``sha256sum`` prints)."""
    digest = hashlib.sha256()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    for path in files.paths():
        with open(path, "rb", buffering=0) as handle:
            while True:
                n = handle.readinto(buffer)
                if not n:
                    break
                digest.update(view[:n])
    return digest.hexdigest()


def weights_identity(files: ModelFiles, known: dict | None = None) -> dict:
    """{"sha256", "files"} of the model's weights; the hash is taken from ``known`` (a library's
    record) when the fingerprint still matches it, and computed otherwise."""
    try:
        fingerprint = weights_fingerprint(files)
        if known and known.get("files") == fingerprint and known.get("sha256"):
            return {"sha256": known["sha256"], "files": fingerprint}
        return {"sha256": weights_sha256(files), "files": fingerprint}
    except OSError as exc:
        raise VmrError(f"cannot read the weights of model {files.name}: {exc.strerror}: {exc.filename}") from None


class ClipEncoder:
    """A CLIP-family model's image and text encoders: plain torch for CLIP folders
    (vmr_cli/clip_torch.py: no transformers import, seconds faster to start), transformers for
    anything else."""

    # Frames per forward pass: 16 measured fastest for ViT-B/32 on a 2-core CPU (64 was 15 % slower);
    # on a GPU 64 (H200, float16: 0.07 ms a frame against 0.19 at 16; bench/cuda.py).
    def __init__(self, model: str | ModelFiles = DEFAULT_MODEL, device: str | None = None,
                 batch_size: int | None = None):
        """``model``: a hub id or folder, or the ModelFiles a library verified; ``device``: cpu,
        cuda or cuda:N, by default ``choose_device()``."""
        from . import clip_torch

        self.files = model if isinstance(model, ModelFiles) else locate_model(model)
        self.name = self.files.name
        self.device = device or choose_device()
        self.batch_size = batch_size or (64 if self.device.startswith("cuda") else 16)
        prep = _read_json(self.files.folder, "preprocessor_config.json")
        from safetensors import SafetensorError

        try:
            with self._gpu_errors(f"loading model '{self.name}'"):
                image_size = self._load_towers(clip_torch)
        except SafetensorError as exc:  # a truncated or damaged weight file, on either path
            raise VmrError(f"cannot load model '{self.name}': {first_line(exc)}; its weight files look damaged: "
                           "download or copy them again") from None
        self.image_size = int(_crop_size(prep) or image_size)
        self._frames_encoded = 0
        self.text_tokens = self.towers.max_length  # what encode_text reads of a sentence, at most
        self.mean = tuple(prep.get("image_mean", OPENAI_MEAN))
        self.std = tuple(prep.get("image_std", OPENAI_STD))

    def _load_towers(self, clip_torch) -> int:
        """self.towers and self.dim: plain torch where it can read the folder, else transformers;
        returns the image tower's input size from the config."""
        if self.files.weights and clip_torch.supported(self.files.folder):  # safetensors to read, or none
            vision = _read_json(self.files.folder, "config.json")["vision_config"]
            try:
                width = int(vision.get("hidden_size", 0))
                self.towers = clip_torch.TorchClip(self.files.folder, self.files.weights, self.device,
                                                   compute_dtype(width, self.device),
                                                   int8_image=int8_image(width, self.device))
                self.dim = self.towers.projection_dim
                return int(vision.get("image_size", 224))
            except clip_torch.Unsupported:  # weights named otherwise: transformers knows more layouts
                pass
        self.towers = _TransformersTowers(self.files, self.device)
        self.dim = self.towers.dim
        return self.towers.image_size

    def encode_images(self, frames):
        """uint8 (N, 3, S, S) -> unit-norm float32 (N, D) on the CPU, in batches."""
        import torch

        from .frames import normalize, resize_center_crop

        if frames.shape[0] == 0:
            return torch.zeros((0, self.dim))
        self._frames_encoded += frames.shape[0]
        if self._frames_encoded >= INT8_AFTER_FRAMES and hasattr(self.towers, "use_int8"):
            self.towers.use_int8()  # an index, an exhaustive search: the packing pays for itself
        if frames.shape[-1] != self.image_size or frames.shape[-2] != self.image_size:
            frames = resize_center_crop(frames, self.image_size)
        out = []
        with torch.inference_mode(), self._gpu_errors("encoding frames"):
            for i in range(0, frames.shape[0], self.batch_size):
                # uint8 crosses to the GPU (a quarter of float32's bytes) and is normalised there.
                pixels = normalize(self._to_device(frames[i:i + self.batch_size]), self.mean, self.std)
                feats = self.towers.image_features(pixels)
                out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out)

    def encode_text(self, texts: list[str]):
        """Sentences -> unit-norm float32 (N, D); long text is truncated to the model's length."""
        import torch

        with torch.inference_mode(), self._gpu_errors("encoding text"):
            feats = self.towers.text_features(list(texts))
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu()

    def encode_text_tokens(self, texts: list[str]):
        """Sentences -> (pooled, tokens, mask), or None where the model gives no per-token features.

        pooled: unit-norm float32 (N, D), exactly ``encode_text(texts)``; tokens: float32
        (N, L, D), L the longest sentence's token count (start and end-of-text included, long
        text truncated as encode_text truncates it); mask: bool (N, L), True on a sentence's own
        tokens, False on padding.  A token's feature is the text tower's last hidden state at
        that position through the final layer norm and ``text_projection``, the path the
        pooled embedding takes at end-of-text, so tokens live in the joint space of dimension D
        (the end-of-text row, normalised, is the pooled embedding); each is normalised to unit
        length like it.  The tower is causal: a word's feature has read only the words before
        it.  CLIP (``model_type: clip``) only, on either path; other families (SigLIP: a
        pooled head of its own) return None, and a trimmer is then trained without tokens."""
        import torch

        with torch.inference_mode(), self._gpu_errors("encoding text"):
            found = self.towers.text_token_features(list(texts))
        if found is None:
            return None
        pooled, tokens, mask = found
        normalize = torch.nn.functional.normalize
        mask = mask.to(torch.bool).cpu()
        tokens = normalize(tokens.float(), dim=-1).cpu() * mask.unsqueeze(-1)  # padding rows exactly 0
        return normalize(pooled.float(), dim=-1).cpu(), tokens, mask

    def text_read(self, text: str) -> str | None:
        """The part of text encode_text reads (the model's text length is fixed), or None when it
        reads all of it: the rest of a long query is dropped without a word otherwise."""
        return self.towers.text_read(text)

    def _to_device(self, batch):
        return batch.to(self.device)

    @contextmanager
    def _gpu_errors(self, doing: str):
        """A GPU's failure (out of memory, no kernels for this GPU, a lost device: torch raises
        RuntimeError) as one line that names the way out; on the CPU, errors pass unchanged.
        What an index committed before it is kept (the run stops, nothing is recorded)."""
        try:
            yield
        except RuntimeError as exc:
            if not self.device.startswith("cuda"):
                raise
            raise VmrError(f"the GPU failed while {doing} ({_gist(first_line(exc))}); "
                           "run with VMR_DEVICE=cpu to encode on the CPU instead") from None


def _gist(reason: str, sentences: int = 2, longer_than: int = 160) -> str:
    """The first sentences of a long error line: torch's out-of-memory line runs to 600
    characters of allocator advice after 'CUDA out of memory. Tried to allocate 2.00 MiB.'"""
    if len(reason) <= longer_than:
        return reason
    return ". ".join(reason.split(". ")[:sentences]).rstrip(".")


class _TransformersTowers:
    """Any CLIP-family model through transformers (get_image_features / get_text_features)."""

    def __init__(self, files: ModelFiles, device: str):
        self.model, self.tokenizer, _prep = _load(files, device)
        self.model.to(device).eval()
        self.device = device
        self.image_size = int(self.model.config.vision_config.image_size)
        self.dim = int(self.model.config.projection_dim)
        text = self.model.config.text_config
        self.max_length = int(min(getattr(self.tokenizer, "model_max_length", 77) or 77,
                                  text.max_position_embeddings))

    def image_features(self, pixels):
        return _pooled(self.model.get_image_features(pixel_values=pixels))

    def text_read(self, text: str) -> str | None:
        """What text_features reads of a long sentence (None: all of it)."""
        ids = self.tokenizer(text, verbose=False)["input_ids"]
        if len(ids) <= self.max_length:
            return None
        try:
            offsets = self.tokenizer(text, truncation=True, max_length=self.max_length,
                                     return_offsets_mapping=True)["offset_mapping"]
            return text[:max(end for _start, end in offsets)]
        except NotImplementedError:  # a slow tokenizer has no offsets: the text as it spells it
            return self.tokenizer.decode(ids[1:self.max_length - 1], skip_special_tokens=True)

    def text_features(self, texts: list[str]):
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        return _pooled(self.model.get_text_features(**tokens))

    def text_token_features(self, texts: list[str]):
        """(pooled, tokens, attention) as clip_torch's TorchClip.text_token_features gives them, for
        a CLIP (model_type clip); None for other families."""
        if getattr(self.model.config, "model_type", None) != "clip":
            return None
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        out = self.model.get_text_features(**tokens)
        hidden = getattr(out, "last_hidden_state", None)  # transformers 5: after the final layer norm
        if hidden is None:  # an older transformers returns the pooled tensor alone
            hidden = self.model.text_model(**tokens).last_hidden_state
        return _pooled(out), self.model.text_projection(hidden), tokens["attention_mask"]


def _pooled(output):
    """transformers 5 returns an output object whose pooler_output is the projected embedding."""
    return getattr(output, "pooler_output", output)


def input_size(files: ModelFiles) -> int | None:
    """The frame size the model's image tower takes, from its configs alone (nothing loaded), so
    decoding can start while the weights load; None where only loading the model can tell."""
    prep = _read_json(files.folder, "preprocessor_config.json")
    vision = _read_json(files.folder, "config.json").get("vision_config") or {}
    size = _crop_size(prep) or vision.get("image_size")
    return int(size) if size else None


def _crop_size(prep: dict):
    crop = prep.get("crop_size")
    if isinstance(crop, dict):
        return crop.get("height")
    return crop


def _load(files: ModelFiles, device: str = "cpu"):
    """Model, tokenizer and preprocessing config from the located folder; nothing is fetched and
    nothing is unpickled (the weights were checked to be safetensors by locate_model)."""
    import transformers
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        with _no_unpickling(files.name):
            config = AutoConfig.from_pretrained(files.folder, local_files_only=True)
            width = getattr(getattr(config, "vision_config", None), "hidden_size", 0) or 0
            model = AutoModel.from_pretrained(files.folder, config=config, local_files_only=True,
                                              use_safetensors=True,
                                              dtype=compute_dtype(width, device, half_on_gpu=False))
            tokenizer = AutoTokenizer.from_pretrained(files.folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise VmrError(f"cannot load model '{files.name}': {first_line(exc)}") from None
    if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise VmrError(f"model '{files.name}' is not a CLIP-family image-text model")
    return model, tokenizer, _read_json(files.folder, "preprocessor_config.json")


# A model this wide is worth bfloat16 on a CPU that computes it natively: ViT-B/32's image
# encoder ran in 0.50x the time of float32 (cosine to float32 >= 0.9999 on every frame tried);
# smaller models (the tests' tiny CLIPs) stay in float32, where speed does not matter.
BF16_FROM_WIDTH = 512


def choose_device() -> str:
    """VMR_DEVICE (cpu, cuda or cuda:N) when set, else cuda where torch sees a GPU, else cpu."""
    import torch

    asked = os.environ.get("VMR_DEVICE", "").strip().lower()
    if not asked:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if asked != "cpu" and not re.fullmatch(r"cuda(:\d+)?", asked):
        raise VmrError(f"VMR_DEVICE={asked}: say cpu, cuda or cuda:N")
    if asked.startswith("cuda"):
        if not torch.cuda.is_available():
            raise VmrError(f"VMR_DEVICE={asked}, but this torch sees no CUDA GPU "
                           f"(torch {torch.__version__}); unset it to encode on the CPU")
        if ":" in asked and int(asked.split(":")[1]) >= torch.cuda.device_count():
            raise VmrError(f"VMR_DEVICE={asked}, but this torch sees {torch.cuda.device_count()} GPU(s)")
    return asked


def compute_dtype(width: int, device: str = "cpu", half_on_gpu: bool = True):
    """The dtype the encoder computes in.

    On a GPU (``device`` cuda) of compute capability 7.0 or later, float16 for a CLIP read by
    clip_torch (``half_on_gpu``), as OpenAI's own CLIP package runs there: ViT-B/32 on an H200
    took a fifth of float32's time at 64 frames a pass, embeddings at cosine 1.0000 to the CPU's
    float32 (bench/cuda.py).  float32 on older GPUs and for other families (unmeasured).
    On a CPU, bfloat16 for a model whose image tower is ``width`` wide or more where the CPU has
    native bfloat16 (AVX512-BF16 or AMX), else float32: emulated bfloat16 is 4.7x slower than
    float32 (and int8 linear layers in the image tower: int8_image).  VMR_DTYPE=float32, bfloat16,
    float16 or int8 forces one."""
    import torch

    forced = forced_dtype()
    if forced in ("float32", "fp32") or (forced == "int8" and not str(device).startswith("cuda")):
        return torch.float32  # int8: the image tower's linear layers, around float32 (int8_image)
    if forced in ("bfloat16", "bf16"):
        return torch.bfloat16
    if forced in ("float16", "fp16"):
        return torch.float16
    if str(device).startswith("cuda"):
        return torch.float16 if half_on_gpu and _tensor_cores(device) else torch.float32
    return torch.bfloat16 if width >= BF16_FROM_WIDTH and _native_bf16() else torch.float32


DTYPES = ("float32", "fp32", "bfloat16", "bf16", "float16", "fp16", "int8")


def forced_dtype() -> str:
    """VMR_DTYPE as set ('auto' when unset or empty); a value vmr does not know is an error,
    not silently the default (a typo of float32 also turned int8 off, and said nothing)."""
    forced = os.environ.get("VMR_DTYPE", "").strip().lower() or "auto"
    if forced != "auto" and forced not in DTYPES:
        raise VmrError(f"VMR_DTYPE={forced}: say float32, bfloat16, float16 or int8 (or unset it)")
    return forced


INT8_AFTER_FRAMES = 64  # frames an encoder has been asked for before it packs its int8 layers


def int8_image(width: int, device: str = "cpu") -> bool:
    """Whether the image tower runs its linear layers in int8: on a CPU without native bfloat16
    (where it would otherwise run float32) for a model ``width`` wide or more -- 1.3-1.5x faster for
    ViT-B/32 on such a CPU, cosine >= 0.999 to float32.  VMR_DTYPE=int8 forces it on a CPU;
    any other VMR_DTYPE turns it off.  (A plain-torch CLIP only; transformers' path keeps
    compute_dtype.)"""
    forced = forced_dtype()
    if str(device).startswith("cuda"):
        return False
    if forced != "auto":
        return forced == "int8"
    return width >= BF16_FROM_WIDTH and not _native_bf16()


def _tensor_cores(device: str) -> bool:
    """A GPU of compute capability 7.0 or later (Volta on): float16 runs on tensor cores there.
    Older ones (Pascal's GeForce cards: float16 at 1/64 of float32's rate) keep float32."""
    import torch

    try:
        return torch.cuda.get_device_capability(device)[0] >= 7
    except (RuntimeError, AssertionError, ValueError):  # no such GPU here: loading says so next
        return False


def _native_bf16() -> bool:
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: assume not
        return False


@contextmanager
def _no_unpickling(name: str):
    """torch.load refuses while a model loads: the second lock on the "no pickle" door, for a way
    to a pickle that locate_model did not foresee."""
    import torch

    original = torch.load

    def refuse(source, *args, **kwargs):
        raise VmrError(f"model '{name}' asked to unpickle {source}, which can run code; vmr loads "
                       f"safetensors only: {CONVERT}")

    torch.load = refuse
    try:
        yield
    finally:
        torch.load = original


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
