"""Checkpoints as safetensors + JSON: no pickle, so loading one never runs code."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def _atomic_write(target: Path, write) -> None:
    """Write through a temp file in the same folder, then os.replace over the target."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(directory, tensors: dict[str, torch.Tensor], config: dict) -> None:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed).

    Each file is replaced atomically, so a crash leaves the old or the new
    version, never a torn file. Tensors are copied to contiguous CPU memory
    (safetensors refuses shared or strided storage).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    text = json.dumps(config, indent=2, sort_keys=True)

    def write_config(path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())

    _atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(plain, p))
    _atomic_write(directory / CONFIG_NAME, write_config)


def load_checkpoint(directory) -> tuple[dict[str, torch.Tensor], dict]:
    """Read back what save_checkpoint wrote: (tensors on CPU, config dict)."""
    directory = Path(directory)
    tensors = load_file(str(directory / WEIGHTS_NAME), device="cpu")
    with open(directory / CONFIG_NAME, encoding="utf-8") as f:
        config = json.load(f)
    return tensors, config
