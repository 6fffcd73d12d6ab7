"""SpotVMR's model side, pure PyTorch: BAM features, moment head, the trained trimmer.

Tensors in, tensors out. Imports only torch, safetensors, numpy and the
standard library; touches no file except its own checkpoints.  Installed as
``vmr_models``.  Names load on first use, so the application can take
``vmr_models.atomic`` without paying for torch.
"""

from importlib import import_module

_EXPORTS = {
    "bam_features": "bam", "motion_energy": "bam", "shot_ids": "bam",
    "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "propose_moments": "moment_head", "temporal_iou": "moment_head",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
