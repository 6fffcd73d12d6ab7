"""Checkpoints as safetensors + JSON: no pickle, so loading one never runs code.

A checkpoint is a folder: ``config.json`` and the weights file it names.  Each
save writes the weights under a new name (their hash), then replaces
``config.json`` to point at them, then deletes weights nothing points at; so
after a crash at any moment the config names a complete weights file that
belongs to it, and weights and config never disagree.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .atomic import atomic_write

CONFIG_NAME = "config.json"
WEIGHTS_KEY = "_weights"  # config.json's record of its weights: file name and sha256
# The only names a save writes (and so may delete): weights named by their hash, and each save's
# staging file (a name of its own: a killed save's leftover is never taken for the next one's).
# A save deletes the others' leftovers too, so two writers need a lock (vmr train holds one on
# its --out folder).
OWN_WEIGHTS = re.compile(r"model-([0-9a-f]{16})\.safetensors")
STAGING = re.compile(r"\.weights(-[a-z0-9_]{8})?\.staging")  # without the tag: written by older vmr


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, incomplete or not one of ours."""


class DamagedCheckpoint(CheckpointError):
    """A checkpoint's config.json is there, its weights are missing or do not match it."""


def save_checkpoint(directory, tensors: dict[str, torch.Tensor], config: dict) -> None:
    """Write the weights and ``config.json`` into ``directory`` (created if needed).

    Tensors are copied to contiguous CPU memory (safetensors refuses shared or
    strided storage).  Files get the user's usual mode: a checkpoint is theirs.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    staged = directory / f".weights-{secrets.token_hex(4)}.staging"
    try:
        atomic_write(str(staged), lambda p: save_file(plain, p))
        digest = _sha256(staged)
        weights = f"model-{digest[:16]}.safetensors"
        os.replace(staged, directory / weights)
    except BaseException:  # Ctrl-C or SIGTERM mid-save: the staged copy, the model's size, goes too
        staged.unlink(missing_ok=True)
        raise
    record = dict(config, **{WEIGHTS_KEY: {"file": weights, "sha256": digest}})
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    atomic_write(str(directory / CONFIG_NAME), lambda p: Path(p).write_text(text, encoding="utf-8"))
    for old in directory.iterdir():  # vmr's own names only: a user's model-backup.safetensors stays
        if old.name != weights and (OWN_WEIGHTS.fullmatch(old.name) or STAGING.fullmatch(old.name)):
            old.unlink(missing_ok=True)


def only_leftovers(directory, also=()) -> bool:
    """Whether a folder holds no config.json and only files a first save cut short leaves
    (staged weights, atomic_write's temp files, weights named by their own hash), and the names
    in ``also`` (the caller's own, such as its lock file): a new checkpoint may be written there,
    and nothing of anyone else's is overwritten."""
    directory = Path(directory)
    for path in directory.iterdir():
        named = OWN_WEIGHTS.fullmatch(path.name)
        if path.is_symlink() or not path.is_file():
            return False
        if named and _sha256(path).startswith(named[1]):
            continue
        if path.name in also or STAGING.fullmatch(path.name):
            continue
        if not re.fullmatch(r"\.tmp-[a-z0-9_]{8}", path.name):
            return False
    return True


def load_checkpoint(directory) -> tuple[dict[str, torch.Tensor], dict]:
    """Read back what save_checkpoint wrote: (tensors on CPU, config dict)."""
    directory = Path(directory)
    try:
        config = json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{directory} is not a checkpoint: it holds no {CONFIG_NAME}") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{directory} is not a checkpoint: {CONFIG_NAME}: {exc}") from None
    record = config.pop(WEIGHTS_KEY, None) if isinstance(config, dict) else None
    if not isinstance(record, dict) or not isinstance(record.get("file"), str) or "/" in record["file"]:
        raise CheckpointError(f"{directory} is not a checkpoint: {CONFIG_NAME} names no weights")
    weights = directory / record["file"]
    if not weights.is_file() or _sha256(weights) != record.get("sha256"):
        raise DamagedCheckpoint(f"checkpoint {directory} is incomplete: {record['file']} is missing "
                              "or does not match its config")
    return load_file(str(weights), device="cpu"), config


def weights_sha256(directory) -> str:
    """The hash of a checkpoint's weights, as its config records it (cheap: no hashing)."""
    config = json.loads((Path(directory) / CONFIG_NAME).read_text(encoding="utf-8"))
    return config[WEIGHTS_KEY]["sha256"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
