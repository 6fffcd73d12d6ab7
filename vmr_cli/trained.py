"""A trained trimmer as vmr keeps it: its checkpoint folder, and its windows for one video.

The checkpoint is a folder written by ``vmr train`` through
``vmr_models.checkpoint`` (safetensors + JSON, weights and config never out of
step): the network's weights under ``model.*`` (and, while training, the
frozen teacher, the optimiser state and the random state, so a run resumes
exactly), and a config saying what it was trained for: the encoder (name and
weights hash), its embedding size and the clip length.  Search refuses a
checkpoint made for another encoder or clip length with one line.
"""

from __future__ import annotations

import os

import torch

from .errors import VmrError, first_line
from .features import INDEX_KINDS

FORMAT = "vmr-trimmer"
FORMAT_VERSION = 1
MAX_CLIPS = 256     # clips the network sees at once; longer videos go through in overlapping pieces
OVERLAP = 32
DROPPABLE = set(INDEX_KINDS) | {"c"}  # the inputs an ablation may switch off


def describe(library) -> dict:
    """What a checkpoint must match in this library."""
    info = library.require_encoder()
    return {"encoder": info["name"], "encoder_hash": (info.get("weights") or {}).get("sha256"),
            "embedding_dim": info["dim"], "clip_seconds": info["clip_seconds"]}


def check_format(config: dict, where: str) -> None:
    """One line when the folder is no vmr trimmer, or one a newer vmr wrote."""
    if config.get("format") != FORMAT:
        raise VmrError(f"{where} is not a vmr trimmer checkpoint")
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise VmrError(f"trimmer {where} was written by a newer vmr (format {config['format_version']}); "
                       "upgrade vmr")


def check_matches(config: dict, library, where: str) -> None:
    """One line when the checkpoint was trained for another encoder or clip length."""
    check_format(config, where)
    have = describe(library)
    other = encoder_difference(config, have)
    if other:
        raise VmrError(f"trimmer {where} was trained {other}; train one for it with 'vmr train'")
    if config.get("embedding_dim") != have["embedding_dim"]:
        raise VmrError(f"trimmer {where} says embedding_dim {config.get('embedding_dim')!r}, but its encoder "
                       f"gives {have['embedding_dim']}: a damaged config.json; train it again with 'vmr train'")
    if abs(float(config.get("clip_seconds", -1)) - have["clip_seconds"]) > 1e-9:
        raise VmrError(f"trimmer {where} was trained on {config.get('clip_seconds')} s clips, this library "
                       f"uses {have['clip_seconds']} s clips; train one for it with 'vmr train'")


def encoder_difference(config: dict, have: dict) -> str | None:
    """How the encoder a checkpoint was trained for differs from ``have`` (describe's), in words
    after 'trained', or None when it is the same: the weights' hash decides where both sides have
    one (a model folder may move), else the name."""
    theirs, mine = config.get("encoder_hash"), have.get("encoder_hash")
    if theirs and mine:
        if theirs == mine:
            return None
        if config.get("encoder") == have["encoder"]:  # the same folder, its weights replaced since
            return (f"for encoder '{have['encoder']}' with other weights (sha256 {str(theirs)[:12]}, this "
                    f"library's {str(mine)[:12]})")
    elif config.get("encoder") == have["encoder"]:
        return None
    return f"for encoder '{config.get('encoder')}', but this library uses '{have['encoder']}'"


def unfinished(config: dict, where: str) -> str | None:
    """A warning for a checkpoint whose training stopped before the end (Ctrl-C, a crash): it
    works, but is not the model that training asked for."""
    state = config.get("training")
    if not isinstance(state, dict) or state.get("phase") in (None, "done"):
        return None
    epochs = config["options"].get("epochs") if isinstance(config.get("options"), dict) else None
    return (f"trimmer {where} is unfinished: its training stopped after {state.get('phase')} epoch "
            f"{state.get('epoch')} of {epochs}; running the same 'vmr train' command again resumes it")


class TrainedTrimmer:
    """The network in eval mode, with what it needs to turn a video's features into windows.

    Without a library, everything but the encoder is checked (eval, before a new library has one)."""

    def __init__(self, directory: str, library=None):
        from vmr_models.checkpoint import CheckpointError, load_checkpoint
        from vmr_models.trimmer import trimmer_from_config

        where = os.path.abspath(directory)
        try:
            tensors, config = load_checkpoint(directory)
        except CheckpointError as exc:
            raise VmrError(f"{exc} (a trimmer is a folder written by 'vmr train ANNOTATIONS --videos DIR "
                           "--out DIR')") from None
        except OSError as exc:
            raise VmrError(f"cannot read trimmer {where}: {exc.strerror or exc}") from None
        try:  # a config.json edited by hand: one line, never a traceback or a silent change
            check_matches(config, library, where) if library is not None else check_format(config, where)
            self.drop = tuple(config.get("drop", ()))
            self.max_len = config.get("max_len")
            if not set(self.drop) <= DROPPABLE:
                raise ValueError(f"drop names {sorted(set(self.drop) - DROPPABLE)}")
            if self.max_len is not None and (isinstance(self.max_len, bool) or not isinstance(self.max_len, int)
                                             or self.max_len < 1):
                raise ValueError(f"max_len {self.max_len!r} is not a positive whole number")
            weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
            disagreement = _disagreement(config["trimmer"], weights)
            if disagreement:
                raise VmrError(f"trimmer {where} does not fit its own config: {disagreement}; train it again "
                               "with 'vmr train'")
            self.model = trimmer_from_config(config["trimmer"])
        except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as exc:
            raise VmrError(f"trimmer {where} has a damaged config.json ({first_line(exc)}); "
                           "train it again with 'vmr train'") from None
        self.config = config
        self.where = where
        self.unfinished = unfinished(config, where)
        self.model.load_state_dict(weights)
        self.model.eval()

    @property
    def uses_tokens(self) -> bool:
        """Whether it was trained on the query's token features (its config's token_dim): search
        then passes them (ClipEncoder.encode_text_tokens); one trained before has none."""
        return bool(self.model.config.token_dim)

    def windows(self, features: dict, q: torch.Tensor, top_k: int,
                tokens: torch.Tensor | None = None) -> list[tuple[float, float, float]]:
        """(start, end, score) in seconds, best first, at most top_k, none sharing a clip;
        ``tokens``: the query's token features [L, D], for a trimmer that uses_tokens."""
        if self.uses_tokens and tokens is None:
            raise VmrError("this trimmer was trained on the query's token features; none were given")
        return network_windows(self.model, self.max_len, features, q, top_k,
                               tokens if self.uses_tokens else None)


def _disagreement(config: dict, weights: dict) -> str | None:
    """Where a trimmer's config and its weights disagree, in words, or None.  Compared on a network
    built without memory (torch's meta device): built for real, a config edited to "hidden": 10**9
    asked for 1.6 TB, and torch's own message named nothing ('Error(s) in loading state_dict')."""
    from vmr_models.trimmer import trimmer_from_config

    layers = config.get("layers") if isinstance(config, dict) else None
    if isinstance(layers, int) and layers > len(weights):  # each layer holds tensors: never build them all
        return f"config.json asks for {layers} layers, and its weights hold {len(weights)} tensors in all"
    with torch.device("meta"):
        wanted = {key: list(value.shape) for key, value in trimmer_from_config(config).state_dict().items()}
    for key in sorted(set(wanted) | set(weights)):
        if key not in weights:
            return f"config.json asks for {key}, which its weights lack"
        if key not in wanted:
            return f"its weights hold {key}, which config.json does not ask for"
        if list(weights[key].shape) != wanted[key]:
            return f"{key} is {list(weights[key].shape)} in its weights, {wanted[key]} by config.json"
    return None


def network_windows(model, max_len: int, features: dict, q: torch.Tensor, top_k: int,
                    tokens: torch.Tensor | None = None) -> list[tuple[float, float, float]]:
    """The network's windows of one video (search, and validation while it trains): (start, end,
    score) in seconds, best first, at most top_k, none sharing a clip; a long video goes through
    in overlapping pieces of MAX_CLIPS clips.  ``tokens``: the query's token features [L, D]
    (a model built with token_dim), else None."""
    from vmr_models.moment_head import nms
    from vmr_models.trimmer import decode_moments

    from .features import batch_of

    n = features["A"].shape[0]
    found = []
    for lo in range(0, max(1, n - OVERLAP), MAX_CLIPS - OVERLAP):
        hi = min(n, lo + MAX_CLIPS)
        piece = {k: v[lo:hi] for k, v in features.items()}
        batch = batch_of([piece], q.view(1, -1).float(), None if tokens is None else [tokens.float()])
        with torch.inference_mode():
            out = model(batch)
        found += decode_moments(out["start_logits"][0], out["end_logits"][0], out["highlight_logits"][0],
                                piece["clip_start"], piece["clip_end"], max_len=max_len, top_k=top_k)
        if hi == n:
            break
    return nms(found, 0.5, limit=top_k)
