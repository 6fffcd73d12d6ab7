"""``vmr train``: the paper's trimmer learned from an annotation file, on features the library holds.

SpotEM's recipe (the paper's closest public ancestor): first the teacher, the
network run on every clip, learns the moment-retrieval task; it is then
frozen, and the same weights go on as the student, which must choose its clips
(the selection budget loss), still find the moment (the VMR loss) and stay
close to the teacher (the distillation loss).  ``--epochs`` epochs each.
The query is its pooled embedding; with ``--tokens`` also its token features
(``ClipEncoder.encode_text_tokens``), off by default: they did not help on the
synthetic benchmark (README, "The trained trimmer, measured").

The videos are indexed once (or are already); every input comes from their
shards, so no epoch decodes or encodes anything.  After each epoch the whole
state (weights, teacher, optimiser, random state) is written atomically to
``--out``: Ctrl-C keeps the last finished epoch, and running the same command
again resumes from it and ends exactly where an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field

import torch

from .errors import Interrupted, Terminated, VmrError, is_no_space
from .trained import FORMAT, FORMAT_VERSION, describe, encoder_difference


SEED_LIMIT = 10**15  # |--seed| at most: seed * 1000 + epoch seeds torch generators, which take 64 bits


@dataclass
class TrainOptions:
    epochs: int = 20
    seed: int = 0
    lr: float = 2e-3
    batch: int = 16
    hidden: int = 128
    layers: int = 2
    steps: int = 3             # K, selection steps
    budget: float = 0.1        # share of a video's clips one step may add
    dropout: float = 0.1
    drop: tuple = ()           # ablations: inputs replaced by zeros ("A", "B", "M", "c")
    distill: bool = True       # ablation: False trains the student without the distillation loss
    # The query's token features too, where the encoder gives them (--tokens).  Off by default: on the
    # synthetic benchmark they changed nothing (README, "The trained trimmer, measured").
    tokens: bool = False
    extra: dict = field(default_factory=dict)


def train(library, annotations: str, videos_dir: str, out_dir: str, val: str | None = None,
          options: TrainOptions | None = None, model: str | None = None, progress: bool | None = None,
          log=None, backend: str = "torchcodec", warn=None) -> dict:
    """Train (or resume) a trimmer into out_dir; returns the run's summary.  ``warn(lines)``
    hears of annotated windows no search can find as soon as the videos are indexed (the
    summary's ``warnings`` hold them too)."""
    from .evaluate import read_annotations, video_files
    from .paths import absolute

    options = options or TrainOptions()
    if not -SEED_LIMIT <= options.seed <= SEED_LIMIT:
        raise VmrError(f"seed {options.seed} is out of range: at most {SEED_LIMIT} either side of 0")
    items = read_annotations(annotations)
    val_items = read_annotations(val) if val else []
    videos_dir = absolute(videos_dir)
    if not os.path.isdir(videos_dir):
        raise VmrError(f"no such folder: {videos_dir}")
    files = video_files(videos_dir, wanted=[it["vid"] for it in items + val_items])  # or an error
    # The training annotations only: --val adds reporting, and a run stopped without it may
    # resume with it (a run written before 2026-12-02 fingerprinted both: see _differences).
    recipe = {"drop": list(options.drop), "options": _plain(asdict(options)), "data": _fingerprint(items),
              "data_with_val": _fingerprint(items + val_items)}
    found = _checkpoint_in(out_dir)
    if found is not None:  # refused before anything is indexed: all but the encoder can be compared now
        _same_training(out_dir, recipe, found[1])
    try:  # while its videos are indexed too: an interrupt then was told as the CLI's general line
        with _holding(out_dir):
            return _train(library, items, val_items, videos_dir, files, out_dir, recipe, options, model,
                          progress, log, backend, warn, notes=_val_overlap(val, items, val_items, files))
    except KeyboardInterrupt as exc:  # SIGTERM (Terminated) keeps its own exit status, 143
        from vmr_models.checkpoint import CONFIG_NAME

        terminated = isinstance(exc, Terminated)
        if not os.path.isfile(os.path.join(out_dir, CONFIG_NAME)):  # no epoch was ever written there
            raise Interrupted("interrupted before the first epoch finished; nothing was written to "
                              f"{out_dir} (what was indexed is kept): run the same command again",
                              terminated=terminated) from None
        raise Interrupted(f"interrupted; the last finished epoch is kept in {out_dir}: run the same command "
                          "again to resume", terminated=terminated) from None


def _train(library, items, val_items, videos_dir, files, out_dir, recipe, options, model, progress, log,
           backend, warn=None, notes=()) -> dict:
    """train() with its checks done and --out held; ``notes``: warnings found before it."""
    from vmr_models.losses import LossWeights, total_loss, vmr_loss
    from vmr_models.trimmer import Trimmer, TrimmerConfig

    from .evaluate import require_indexed, windows_past_end
    from .indexer import indexed_for_reading

    indexed_for_reading(library, videos_dir, model=model, backend=backend, progress=progress)
    require_indexed(library, [it["vid"] for it in items + val_items], files)
    warnings = [*notes, *windows_past_end(library, items + val_items, files)]
    # A query whose first window (its target) starts after its video ends would teach the last
    # clip (the target is cut at the video's end): it is left out, and with none left, refused.
    durations = {v["path"]: v["duration"] for v in library.catalog.videos("ok")}
    usable = [it for it in items if it["windows"][0][0] < durations[files[it["vid"]]]]
    if len(usable) < len(items):
        left = len(items) - len(usable)
        warnings.append(f"{left} training quer{'y' if left == 1 else 'ies'} left out: {'its' if left == 1 else 'their'} "
                        "window starts after the video ends")
    if warn is not None and warnings:
        warn(warnings)
    if not usable:
        first = items[0]
        raise VmrError(f"no training query has its window inside its video: each starts after its video ends "
                       f"({first['where']}: window [{first['windows'][0][0]:g}, {first['windows'][0][1]:g}], "
                       f"video '{first['vid']}' {durations[files[first['vid']]]:.1f} s long); are the times "
                       "in seconds?")
    items = usable
    data = _Data(library, items, val_items, files, options.drop, options.tokens)
    if options.tokens and data.tokens is None:  # asked for, and the encoder has none: said, not silent
        line = (f"--tokens: encoder '{library.require_encoder()['name']}' gives no token features (CLIP "
                "only); the trimmer is trained on the pooled query embedding alone")
        warnings.append(line)
        if warn is not None:
            warn([line])
    config = TrimmerConfig(dim=data.dim, hidden=options.hidden, layers=options.layers, steps=options.steps,
                           budget=options.budget, dropout=options.dropout,
                           token_dim=data.dim if data.tokens is not None else None)
    torch.manual_seed(options.seed)
    net = Trimmer(config)
    optimiser = torch.optim.Adam(net.parameters(), lr=options.lr)
    state = {"phase": "teacher", "epoch": 0, "history": []}
    teacher = None
    header = dict(describe(library), format=FORMAT, format_version=FORMAT_VERSION, trimmer=asdict(config),
                  max_len=data.max_len, **recipe)
    resumed = _resume(out_dir, header, net, optimiser)
    if resumed is not None:
        state, teacher = resumed
    weights = LossWeights(distillation=1.0 if options.distill else 0.0)
    untrained = round(data.recall(net, data.val_examples), 4) if val_items and resumed is None else None
    from .progress import progress as bar_for

    started = time.time()
    trained_now = False  # an epoch ran in this run (its record holds this --val's score)
    finished_before = state["phase"] == "done"  # (a run stopped after its last epoch finishes it now)
    while state["phase"] != "done":
        phase, epoch = state["phase"], state["epoch"]
        if epoch >= options.epochs:
            if phase == "teacher":  # the teacher is done: freeze a copy, the student goes on
                teacher = _frozen(net)
                state = dict(state, phase="student", epoch=0)
            else:
                state = dict(state, phase="done")
            continue
        order = torch.randperm(len(data.examples), generator=torch.Generator().manual_seed(
            options.seed * 1000 + (0 if phase == "teacher" else 500) + epoch)).tolist()
        bar = bar_for(len(order), f"{phase} {epoch + 1}/{options.epochs}", "query", enabled=progress)
        negatives = torch.Generator().manual_seed(options.seed * 1000 + 7 * epoch + (phase == "student"))
        net.train()
        sums: dict[str, float] = {}
        seen = 0
        for at in range(0, len(order), options.batch):
            batch, targets = data.batch([data.examples[i] for i in order[at:at + options.batch]], negatives)
            valid = batch["valid"]
            if phase == "teacher":
                loss = vmr_loss(net(batch, "teacher"), targets, valid)
                parts = {"vmr": float(loss.detach())}
            else:
                with torch.no_grad():
                    teacher_out = teacher(batch, "teacher")
                loss, parts = total_loss(net(batch), targets, valid, config, teacher_out, weights)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            n = int(targets["positive"].sum())
            seen += n
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value * n
            bar.update(n)
            bar.set_postfix_str(" ".join(f"{k} {v / seen:.3f}" for k, v in sums.items()))
        bar.close()
        record = {"phase": phase, "epoch": epoch + 1,
                  **{k: round(v / len(order), 4) for k, v in sums.items()}}
        if val_items:
            record["val_R1@0.5"] = round(data.recall(net, data.val_examples), 4)
        state = dict(state, epoch=epoch + 1, history=state["history"] + [record])
        trained_now = True
        _save(out_dir, header, state, net, teacher, optimiser)
        if log:
            log(record)
    _save(out_dir, header, state, net, None, None)  # done: the model alone, for search
    val = state["history"][-1].get("val_R1@0.5") if state["history"] else None
    if val_items and not trained_now:  # a finished trimmer run again with --val: scored on that file
        val = round(data.recall(net, data.val_examples), 4)
    return {"out": os.path.abspath(out_dir), "warnings": warnings, "n_queries": len(items),
            "n_val_queries": len(val_items),  # named as vmr eval's n_queries
            "epochs": options.epochs, "tokens": config.token_dim is not None,  # what the trimmer reads
            "history": state["history"], "seconds": round(time.time() - started, 1),
            "val_R1@0.5": val,
            "val_R1@0.5_untrained": untrained,
            "already_trained": finished_before}  # a finished run given again: nothing was trained


class _Data:
    """Features of every annotated video and the query embeddings (pooled, and with ``tokens`` each
    query's token features where the encoder gives them), loaded once."""

    def __init__(self, library, items, val_items, files, drop, tokens: bool = False):
        from .encoders import ClipEncoder
        from .features import clip_features

        info = library.require_encoder()
        self.dim = info["dim"]
        # A video by its path: annotations may name one under two ids (clip, trip1/clip.mp4); by
        # id it was loaded twice and could be drawn as its own negative.
        items = [dict(it, vid=files[it["vid"]]) for it in items]
        val_items = [dict(it, vid=files[it["vid"]]) for it in val_items]
        files = {path: path for path in files.values()}
        self.videos = {}
        self.timelines = {}  # validation videos: (row, clips, shard) for their stored timeline
        val_vids = {it["vid"] for it in val_items}
        for vid in sorted({it["vid"] for it in items + val_items}):
            row = library.catalog.video_by_path(files[vid])
            shard = library.vectors.read_shard(row["id"], row["vectors_token"])
            if shard is None:
                raise VmrError(f"vectors of {vid} are missing; run 'vmr index' to repair")
            clips = library.catalog.clips(row["id"])
            self.videos[vid] = clip_features(shard, clips, drop)
            if vid in val_vids:
                self.timelines[vid] = (row, clips, {k: shard[k] for k in ("F", "F_t", "A") if k in shard})
        self.clip_seconds = info["clip_seconds"]
        encoder = ClipEncoder(info["name"])
        texts = [it["query"] for it in items + val_items]
        self.tokens = None  # per query [its own tokens, D], when used: padded per batch, not to the longest of all
        found = [encoder.encode_text_tokens(texts[i:i + 64]) for i in range(0, len(texts), 64)] if tokens else [None]
        if found[0] is not None:  # the pooled embeddings from the same pass are exactly encode_text's
            self.queries = torch.cat([pooled for pooled, _t, _m in found])
            self.tokens = [row[keep] for _p, rows, mask in found for row, keep in zip(rows, mask)]
        else:
            self.queries = torch.cat([encoder.encode_text(texts[i:i + 64]) for i in range(0, len(texts), 64)])
        # training targets are each query's first window; validation, like eval, takes the best of all
        # a window past its video's end (end 1e308 in a damaged file) is cut at that end: its
        # seconds would overflow max_len, and float32 targets
        windows = [(it["vid"], i, self._within(it["vid"], it["windows"][0])) for i, it in enumerate(items + val_items)]
        self.all_windows = [it["windows"] for it in items + val_items]
        self.examples = windows[:len(items)]
        self.train_videos = sorted({v for v, _i, _w in self.examples})  # negatives come from these only
        self.val_examples = windows[len(items):]
        seconds = info["clip_seconds"]
        longest = max((w[1] - w[0] for _v, _i, w in self.examples), default=seconds)
        self.max_len = max(8, int(2 * longest / seconds) + 1)

    def _within(self, vid, window):
        ends = self.videos[vid]["clip_end"]
        if not len(ends):
            return window
        end = float(ends.max())
        return (window[0], min(window[1], max(end, window[0] + self.clip_seconds)))

    def batch(self, examples, negatives: torch.Generator | None = None):
        """A padded batch of (video, query, window) examples and their targets.

        With ``negatives``, each example also comes with its query against another video,
        drawn from that generator: a window of nothing, highlight 0 everywhere."""
        from vmr_models.losses import clip_targets

        from .features import batch_of

        examples = [(v, i, w, True) for v, i, w in examples]
        if negatives is not None:
            names = self.train_videos
            for v, i, _w, _p in list(examples):
                if len(names) < 2:
                    break
                other = names[int(torch.randint(len(names) - 1, (1,), generator=negatives))]
                other = names[-1] if other == v else other
                examples.append((other, i, (-1.0, -1.0), False))
        batch = batch_of([self._piece(self.videos[v], w, p, negatives) for v, _i, w, p in examples],
                         self.queries[[i for _v, i, _w, _p in examples]],
                         None if self.tokens is None else [self.tokens[i] for _v, i, _w, _p in examples])
        starts = torch.tensor([w[0] for _v, _i, w, _p in examples], dtype=torch.float32)
        ends = torch.tensor([w[1] for _v, _i, w, _p in examples], dtype=torch.float32)
        targets = clip_targets(starts, ends, batch["clip_start"], batch["clip_end"], batch["valid"])
        targets["positive"] = torch.tensor([p for _v, _i, _w, p in examples])
        return batch, targets

    @staticmethod
    def _piece(video: dict, window, positive: bool, generator: torch.Generator | None) -> dict:
        """At most MAX_CLIPS clips of a video, as search reads a long one (trained.network_windows):
        a piece holding the example's window (as much of it as fits), placed at random with
        ``generator`` (the first such piece without one); any piece of a negative.  Attention over a
        whole video made training quadratic in its length: a batch with a 10-minute video took 13 s
        and 2.7 GB, an hour's ran out of memory; a piece costs what a 9-minute video does.  Videos
        that fit are used whole, and no random number is drawn for them."""
        from .trained import MAX_CLIPS

        n = video["A"].shape[0]
        if n <= MAX_CLIPS:
            return video
        lo, hi = 0, n - MAX_CLIPS  # the first clip a piece may start at, from lo to hi
        inside = ((video["clip_end"] > window[0]) & (video["clip_start"] < window[1])).nonzero().flatten()
        if positive and len(inside):
            first, last = int(inside.min()), int(inside.max())
            lo, hi = max(0, last - MAX_CLIPS + 1), min(first, hi)
            lo = min(lo, hi)  # a window longer than a piece: its start
        if generator is not None and hi > lo:
            lo += int(torch.randint(hi - lo + 1, (1,), generator=generator))
        return {key: value[lo:lo + MAX_CLIPS] for key, value in video.items()}

    def recall(self, net, examples, iou: float = 0.5) -> float:
        """R1@iou of the moment search would rank first, each query against its own video: the
        network's windows with edges and score from the stored timeline, as ``vmr eval
        --trimmer`` scores them except for the edges it refines with decoded frames."""
        from vmr_models.moment_head import temporal_iou

        from .search import SearchOptions, stored_timeline, trimmer_moments
        from .trained import network_windows

        if not examples:
            return 0.0
        net.eval()
        top_k = SearchOptions().top_k  # as many windows as eval's moment retrieval asks one video for
        hits = 0
        for vid, i, _first in examples:
            row, clips, shard = self.timelines[vid]
            q = self.queries[i]
            v = stored_timeline(row, clips, shard, q, self.clip_seconds)
            tokens = None if self.tokens is None else self.tokens[i]
            found = trimmer_moments(v, network_windows(net, self.max_len, self.videos[vid], q, top_k, tokens), top_k)
            best = max(found, key=lambda m: m[2], default=None)
            hits += best is not None and max(temporal_iou(best[:2], w) for w in self.all_windows[i]) >= iou
        return hits / len(examples)


def _val_overlap(val: str | None, items, val_items, files) -> list[str]:
    """A warning when --val holds training queries ('--val' given the training file itself): its
    R1@0.5 then measures how the trimmer fits what it learned, which reads far better than new
    queries would."""
    from .paths import printable

    def key(item):
        return files[item["vid"]], item["query"], tuple(item["windows"])

    learned = {key(it) for it in items}
    same, n = sum(key(it) in learned for it in val_items), len(val_items)
    if not same:
        return []
    if same == n:
        said = "all its queries are training queries" if n > 1 else "its query is a training query"
    else:
        said = f"{same} of its {n} queries {'is a training query' if same == 1 else 'are training queries'}"
    return [f"--val {printable(val)}: {said} (video, sentence and window alike): its R1@0.5 tells how well the "
            f"trimmer fits {'it' if same == 1 else 'them'}, not how it finds new ones"]


def _frozen(net):
    import copy

    teacher = copy.deepcopy(net).eval()
    teacher.requires_grad_(False)
    return teacher


def _fingerprint(items) -> str:
    """What the annotations say, so a resumed run is known to train on the same data."""
    described = [(it["vid"], it["query"], it["windows"]) for it in items]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:16]


def _plain(value):
    """JSON-safe copy (tuples become lists)."""
    return json.loads(json.dumps(value))


def _save(out_dir: str, header: dict, state: dict, net, teacher, optimiser) -> None:
    from vmr_models.checkpoint import save_checkpoint

    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    if teacher is not None:
        tensors.update({f"teacher.{k}": v for k, v in teacher.state_dict().items()})
    extra = {}
    if optimiser is not None:
        saved = optimiser.state_dict()
        for index, slot in saved["state"].items():
            for key, value in slot.items():
                tensors[f"optim.{index}.{key}"] = torch.as_tensor(value)
        extra["optim_groups"] = saved["param_groups"]
        tensors["rng.torch"] = torch.get_rng_state()
    try:
        save_checkpoint(out_dir, tensors, dict(header, training=state, **extra))
    except Exception as exc:  # said here: handle_errors would blame the library's disk
        if not is_no_space(exc):
            raise
        raise VmrError(f"no space left on the device of --out {out_dir} to save the trimmer; free some space "
                       "there and run the same command again (it resumes from the last epoch saved)") from None


@contextmanager
def _holding(out_dir: str):
    """out_dir locked for the whole run: two 'vmr train' into one folder (two terminals) would each
    write its checkpoint over the other's.  A run that saved nothing takes its lock file back out, and
    a folder it made goes again (in an empty folder of the user's, write.lock was left behind)."""
    from .lock import LOCK_NAME, writer_lock
    from .paths import printable

    created = not os.path.exists(out_dir)
    with ExitStack() as held:
        try:
            os.makedirs(out_dir, exist_ok=True)
            held.enter_context(writer_lock(out_dir, "vmr train", busy=f"another vmr train is writing to "
                                           f"{out_dir}; wait for it to finish"))
        except OSError as exc:  # said bare, 'Permission denied: ro/t' named neither --out nor the trimmer
            raise VmrError(f"cannot save the trimmer in --out {printable(out_dir)}: {exc.strerror}") from None
        try:
            yield
        finally:
            if os.listdir(out_dir) == [LOCK_NAME]:  # nothing was saved
                os.unlink(os.path.join(out_dir, LOCK_NAME))
                if created:
                    os.rmdir(out_dir)


def _checkpoint_in(out_dir: str):
    """(tensors, config) of the trimmer in out_dir; None for a new or empty folder, or one holding
    only what a first save cut short leaves.  A folder holding something else is refused rather
    than overwritten."""
    from vmr_models.checkpoint import CheckpointError, DamagedCheckpoint, load_checkpoint, only_leftovers

    from .lock import LOCK_NAME

    if not os.path.exists(out_dir):
        return None
    if not os.path.isdir(out_dir):
        raise VmrError(f"--out {out_dir} is not a folder")
    if only_leftovers(out_dir, also={LOCK_NAME}):
        return None
    try:
        tensors, config = load_checkpoint(out_dir)
    except DamagedCheckpoint:
        raise VmrError(f"--out {out_dir} holds a damaged checkpoint (its weights are missing or do not match "
                       "config.json): delete it to start over, or choose another folder") from None
    except CheckpointError:
        raise VmrError(f"--out {out_dir} holds files that are not a vmr trimmer; choose another folder") from None
    if config.get("format") != FORMAT:
        raise VmrError(f"--out {out_dir} holds files that are not a vmr trimmer; choose another folder")
    return tensors, config


def _same_training(out_dir: str, header: dict, config: dict) -> None:
    """Refuses a checkpoint trained otherwise than ``header`` says (on the keys it has).  The encoder
    is the same by its weights' hash where both sides have one: its folder may have moved."""
    other = encoder_difference(config, header) if "encoder" in header else None
    if other:
        raise VmrError(f"--out {out_dir} holds a trimmer trained {other}; choose another folder, or delete it "
                       "to start over")
    differences = _differences(header, config)
    if differences:
        raise VmrError(f"--out {out_dir} holds a trimmer trained with {'; '.join(differences)}; run as it was to "
                       "resume it, or choose another folder, or delete it to start over")


def _differences(header: dict, config: dict) -> list[str]:
    """What a checkpoint was trained with that ``header`` (this run) differs in, in the user's
    words: the options they give (``--epochs 2 (this run: 4)``), the annotations, and vmr's own."""
    found = []
    theirs, mine = config.get("options") or {}, header.get("options") or {}
    for key, flag in (("epochs", "--epochs"), ("seed", "--seed")):
        if key in mine and theirs.get(key) != mine[key]:
            found.append(f"{flag} {theirs.get(key)} (this run: {mine[key]})")
    if "tokens" in mine and bool(theirs.get("tokens", False)) != bool(mine["tokens"]):  # before tokens: none

        def flag(on):
            return "--tokens" if on else "--no-tokens"

        found.append(f"{flag(theirs.get('tokens', False))} (this run: {flag(mine['tokens'])})")
    # A checkpoint from before 2026-12-02 fingerprinted the training and --val annotations together.
    if "data" in header and config.get("data") not in (header["data"], header.get("data_with_val")):
        found.append("other training annotations (queries, videos or windows differ)" if "data_with_val" in config
                     else "other training or --val annotations (it was saved before vmr told them apart: "
                     "resume it with the --val it was trained with)")
    own = [key for key in ("embedding_dim", "clip_seconds", "trimmer", "drop") if key in header
           and _plain(_no_token_dim(header[key], key)) != _plain(_no_token_dim(config.get(key), key))]
    own += [f"options.{key}" for key in mine if key not in ("epochs", "seed", "tokens")
            and _plain(mine[key]) != _plain(theirs.get(key))]
    if own:
        found.append(f"other settings ({', '.join(own)})")
    return found


def _no_token_dim(value, key: str):
    """A trimmer config without token_dim, which the tokens option and the encoder decide (both
    compared on their own)."""
    if key == "trimmer" and isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "token_dim"}
    return value


def _resume(out_dir: str, header: dict, net, optimiser):
    """(state, teacher) of an unfinished run of the same training in out_dir, else None."""
    found = _checkpoint_in(out_dir)
    if found is None:
        return None
    tensors, config = found
    _same_training(out_dir, header, config)
    state = config["training"]
    if state["phase"] == "done":
        net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        return state, None
    net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    teacher = None
    if any(k.startswith("teacher.") for k in tensors):
        teacher = _frozen(net)
        teacher.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("teacher.")})
    slots: dict = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            slots.setdefault(int(index), {})[name] = value
    if slots:
        optimiser.load_state_dict({"state": slots, "param_groups": config["optim_groups"]})
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    return state, teacher
