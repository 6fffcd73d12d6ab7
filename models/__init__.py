"""SpotVMR's model side, pure PyTorch: BAM features, fusion, selection, moment head.

Tensors in, tensors out. Imports only torch, safetensors, numpy and the
standard library; touches no file except its own checkpoints.
"""

from models.bam import bam_features, motion_energy, shot_ids
from models.checkpoint import load_checkpoint, save_checkpoint
from models.fusion import clip_scores
from models.moment_head import propose_moments, temporal_iou
from models.selection import Selection, exhaustive, select_clips

__all__ = [
    "Selection", "bam_features", "clip_scores", "exhaustive", "load_checkpoint",
    "motion_energy", "propose_moments", "save_checkpoint", "select_clips", "shot_ids",
    "temporal_iou",
]
