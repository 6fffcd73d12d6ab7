"""``vmr index``: plan, decode the clip grid, encode, BAM vectors, hand each video to the library.

The indexer only plans, decodes and encodes; every change to the stores goes
through the library's put / move / remove / mark-failed methods, which keep
catalog rows, shards and the FAISS cache in step.  Decoding runs in a
producer thread that feeds the encoder through a small queue, so the two
overlap.  An interrupted run keeps every video it committed, and the progress saved now and
then on the video it was on (vmr_cli/partial.py): the next run resumes that video there.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time

from .decode import BACKEND_FAILURES, file_transfer, open_reader, require_backend
from .encoders import DEFAULT_MODEL, ClipEncoder, input_size, locate_model, model_name, weights_identity
from .errors import DecodeError, TransientError, VmrError, first_line, stop_if_interrupted
from .partial import Keeper, Store
from .paths import printable
from .probe import HDR_TRANSFERS, ProbeTimeout, ffprobe_version, is_environment_error, probe, require_tool
from .scan import KEPT_META, Roots, check_roots, collapse, copy_source, fingerprint, plan_index
from .timecodes import timecode

CHUNK_CLIPS = 32        # clips decoded per step: bounds memory on very long videos
THUMB = 32              # thumbnail size for the shot and motion measures
SAVE_EVERY_SECONDS = 60  # FAISS cache written at least this often during a run
TIMEOUTS_TO_STOP = 3     # ffprobe timing out on this many files in a row stops the run (a dead share)
# Freed heap memory handed back to the system (glibc malloc_trim) every this many files.  Not a
# leak: with torchcodec, memory in use stays flat, but glibc kept the freed memory of each file's
# decoder in its per-thread arenas, and RSS grew ~90 KB a file (441 MB peak at 1,500 one-second
# files, 672 MB at 5,000; PyAV, or MALLOC_ARENA_MAX=2, stays flat).  A trim costs milliseconds.
TRIM_EVERY_FILES = 100
CHANGED = "file changed or vanished while it was being indexed; the next 'vmr index' picks up its new state"


def clip_grid(duration: float, clip_seconds: float) -> list[tuple[float, float]]:
    n = max(1, math.ceil(duration / clip_seconds - 1e-6))
    return [(k * clip_seconds, min((k + 1) * clip_seconds, duration)) for k in range(n)]


def grid_times(grid, fps: float) -> list[float]:
    """The frames the index encodes: every clip's first and middle frame, then the video's
    last frame.  Clip k sees frames 2k, 2k+1 and 2k+2: its last frame is the next clip's
    first (adjacent clips share their boundary), so N clips cost 2N+1 encoder passes, not 3N."""
    step = 1.0 / (fps or 30.0)
    times = []
    for start, end in grid:
        times += [start, (start + end) / 2]
    start, end = grid[-1]
    times.append(max((start + end) / 2, end - step))  # a last clip shorter than two frames: its middle
    return times


def on_key_frames(times: list[float], keys: list[tuple[float, float]], tolerance: float) -> list[float]:
    """The index's frame times, each moved onto a key frame within ``tolerance`` seconds when
    it is not on one already: a key frame decodes alone, while the frame shown at any other
    time needs the run of frames from the key frame before it.  Phone video (a key frame
    about every second, rarely on the second: 29.97 fps, 1.15 s) otherwise costs nearly a
    full decode for one frame a second.

    ``keys``: display intervals [start, end) of the key frames, sorted.  A moved time is
    the middle of its key frame's interval, strictly after the time before it and before
    the next time asked, and no further from the time before it than 1.5 times the step
    asked (search reads a wider gap as a hole in the timeline), so the times stay in order
    and each still stands for its place in the clip grid.  Times already on a key frame, or
    with none near, stay as they are, and so do all of them where key frames come less than
    once every 4 x ``tolerance`` seconds (a clip) on average: the decoder then runs through
    every GOP anyway, and nothing would be saved by moving a few times."""
    import bisect

    if not times or len(keys) * 4 * tolerance < times[-1] - times[0]:
        return list(times)
    starts = [a for a, _ in keys]
    out: list[float] = []
    for i, t in enumerate(times):
        previous = out[-1] if out else -math.inf
        after = times[i + 1] if i + 1 < len(times) else math.inf
        reach = previous + 1.5 * (t - times[i - 1]) if i else math.inf
        k = bisect.bisect_right(starts, t) - 1
        if k >= 0 and keys[k][0] <= t < keys[k][1]:
            out.append(t)
            continue
        near = [(a + b) / 2 for a, b in keys[max(0, k):k + 2]]
        near = [m for m in near if abs(m - t) <= tolerance and previous < m < after and m <= reach]
        out.append(min(near, key=lambda m: abs(m - t)) if near else t)
    return out


def resolve_encoder(library, model: str | None, clip_seconds: float | None):
    """The encoder name and clip length to use: the library's own, or the first ones given.  A
    library that holds no video yet, only the progress saved on one (a first index stopped part
    way), takes other ones given, as a new library would: its saved progress goes."""
    recorded = library.encoder()
    if recorded and _other_than_recorded(library, recorded, model, clip_seconds):
        library.drop_encoder()
        recorded = None
    if recorded:
        if model:  # the same weights at another place re-point the library; other weights are refused
            library.verify_model(model)
            recorded = library.encoder()
        if clip_seconds and abs(clip_seconds - recorded["clip_seconds"]) > 1e-9:
            raise VmrError(
                f"library {library.directory} uses {recorded['clip_seconds']} s clips; "
                "index into a new library with --library DIR to change the clip length")
        return recorded["name"], recorded["clip_seconds"]
    return model_name(model or DEFAULT_MODEL), clip_seconds or 2.0


def _other_than_recorded(library, recorded: dict, model: str | None, clip_seconds: float | None) -> bool:
    """Whether a library that holds no video (stale ones count) is asked for another clip length
    or a model of other weights than it recorded.  A model that cannot be found or loaded is not
    taken for another: the usual error names it, and the saved progress stays."""
    counts = library.catalog.counts()
    if counts["videos"] or counts["stale"]:
        return False
    if clip_seconds and abs(clip_seconds - recorded["clip_seconds"]) > 1e-9:
        return True
    if not model or not (recorded["weights"] or {}).get("sha256"):
        return False
    try:
        files = locate_model(model_name(model))
    except VmrError:
        return False
    return weights_identity(files)["sha256"] != recorded["weights"]["sha256"]


def decoder_signature(backend: str) -> str:
    """What this run reads videos with: vmr, the decoder (and PyAV, its fallback) and ffmpeg.
    A failed file is recorded with it and tried again when it changes."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "?"

    parts = [f"vmr {__version__}"]
    if backend != "pyav":
        parts.append(f"{backend} {of(backend)}")
    parts += [f"av {of('av')}", f"ffmpeg {ffprobe_version()}"]
    return "; ".join(parts)


def indexed_for_reading(library, folder: str, model: str | None = None, backend: str = "torchcodec",
                        progress: bool | None = None) -> None:
    """What eval and train read from folder, in the library: indexed as 'vmr index' would.  A
    read-only library (a lab's shared one) can take nothing, so there they go on only where nothing
    under folder needs indexing, and read the library as it is (they said 'index into a writable
    --library', with nothing to index)."""
    if not library.readonly:
        index_paths(library, [folder], model=model, backend=backend, progress=progress)
        return
    plan = plan_index(library.catalog, [folder])
    pending = ([item.path for item, _row in plan.add + plan.update + plan.copies + plan.move]
               + [item.path for item, _row, _vanished in plan.replaced] + [row["path"] for row in plan.remove])
    if pending:
        raise VmrError(f"library {printable(library.directory)} is read-only, and {len(pending)} "
                       f"file{'s' if len(pending) != 1 else ''} under {printable(folder)} "
                       f"{'are' if len(pending) != 1 else 'is'} not indexed as {'they are' if len(pending) != 1 else 'it is'} "
                       f"now (new, changed, moved or deleted; e.g. {printable(sorted(pending)[0])}); "
                       "run this with a writable --library")
    recorded = (library.encoder() or {}).get("name")
    if model and model_name(model) != recorded:  # (re-pointing the library at it would be a write)
        raise VmrError(f"library {printable(library.directory)} is read-only, and its model is "
                       f"{printable(recorded)}, not {printable(model_name(model))}; leave --model out to use it")


def index_paths(library, paths, model: str | None = None, clip_seconds: float | None = None,
                backend: str = "torchcodec", progress: bool | None = None, encoder=None,
                prune: bool = False) -> dict:
    """Bring the library up to date with the files under paths (with no paths: every file and
    folder it already holds); returns the run's summary.

    ``prune`` also removes the entries of a folder that lost all its files at once (an
    unmounted drive looks like that, so without it they are kept and reported).
    """
    started = time.time()
    if paths:
        roots = check_roots(paths, library.catalog, prune=prune)
    else:
        roots = collapse(library.catalog.roots())
        if not roots:
            raise VmrError("the library holds no folders yet; say what to index: vmr index PATH")
    if clip_seconds is not None and not (0.25 <= clip_seconds <= 60):
        raise VmrError("--clip-seconds must be between 0.25 and 60")
    # Errors of the environment stop the run here, before the library is touched.
    require_tool("ffprobe")
    require_backend(backend, load=False)  # loaded below, where there is something to decode
    with library.writer_lock("vmr index"):
        name, clip_seconds = resolve_encoder(library, model, clip_seconds)
        lost = library.lost_encoder()
        if lost and not model:
            raise VmrError(lost)
        if lost:  # every video is embedded again, with the model named; old vectors go first
            library.mark_stale([v["id"] for v in library.catalog.videos("ok")], "the model's record was lost")
        library.check(repair=True)
        library.repair_missing_shards()  # what a search reported as 'vectors missing'
        # What this run reads with (an ffprobe process and package metadata: 0.2 s of a run with
        # nothing to do), asked only where a file failed before or there is something to read.
        signature = decoder_signature(backend) if library.catalog.video_ids("failed") else None
        plan = plan_index(library.catalog, roots, prune=prune, signature=signature)
        again, forced, encoder = _embedded_by_an_older_vmr(library, plan.colour_unknown, progress, encoder, backend)
        for reason in again.values():
            plan.update += reason
            plan.unchanged -= len(reason)
        if plan.add or plan.update:  # before anything is changed, as above
            require_backend(backend)
        if plan.add or plan.update or plan.copies:  # (a copy whose source cannot be read is indexed)
            signature = signature or decoder_signature(backend)
        lookup = Roots(roots)  # the root each file is recorded under
        if not (plan.add or plan.update or plan.copies or plan.move or plan.touched or plan.replaced or plan.remove
                or plan.unchanged or plan.failed_before or plan.failed or plan.kept or library.catalog.videos()):
            raise VmrError(f"no video files in {', '.join(printable(r) for r in roots)}"
                           f"{skipped_words(plan.skipped)}" + (
                               f"; passed over the system folder {printable(plan.system_folders[0])} (a trash, a "
                               "NAS's previews or snapshots): name it to index it" if plan.system_folders else ""))
        summary = {"added": 0, "updated": 0, "moved": 0, "unchanged": plan.unchanged + len(plan.touched),
                   "touched": len(plan.touched),
                   "failed_before": plan.failed_before, "own_outputs": plan.own_outputs,
                   "removed": 0, "failed": [dict(f, recorded=False) for f in plan.failed],
                   "fallbacks": [], "damaged": [], "kept": plan.kept, "same_file": plan.same_file,
                   "skipped": {"files": sum(plan.skipped.values()), "extensions": plan.skipped},
                   "system_folders": plan.system_folders,
                   "copies": [], "resumed": [], "clips": 0,
                   "embedded_again": {reason: len(items) for reason, items in again.items()}}
        if plan.held is not None:  # the entries kept as a folder lost at once, for the next run:
            # recorded before anything is indexed, so that a run stopped part way (Ctrl-C, kill -9,
            # a full disk) leaves them held; its next run, the folder holding files indexed since,
            # no longer looks as if it lost all its files at once and removed them as deleted
            with library.catalog.transaction():
                library.catalog.set_meta(KEPT_META, json.dumps(plan.held))
        for item, before, moved in plan.replaced:  # a file moved over another: its entry follows it
            library.remove_videos([before])
            summary["removed"] += 1
            _apply_moves(library, [(item, moved)], lookup, summary)
        _apply_moves(library, plan.move, lookup, summary)
        for row, root in plan.reroot:  # its recorded root's walk no longer reaches it
            library.move_video(row, row["path"], root, row["mtime_ns"])
            row["root"] = root  # (a touched one keeps it)
        for item, row in plan.touched:  # only the time changed: the row learns it, the vectors stay
            library.move_video(row, item.path, row["root"], item.mtime_ns)
        library.remove_videos(plan.remove)
        summary["removed"] += len(plan.remove)
        work = plan.add + plan.update
        if work:
            _index_videos(library, work, lookup, name, clip_seconds, encoder, backend, progress, summary,
                          signature, forced)
        alone = _apply_copies(library, plan.copies, lookup, summary)
        if alone:  # their source could not be indexed or read: each is indexed as itself
            require_backend(backend)
            _index_videos(library, alone, lookup, name, clip_seconds, encoder, backend, progress, summary,
                          signature)
        Store(library, signature, backend, CHUNK_CLIPS).sweep()  # saved progress that no longer applies
        library.save()
        summary["clips"] = library.catalog.counts()["clips"]
        _log_run(library.catalog, {"paths": roots, "model": name, "clip_seconds": clip_seconds, "prune": prune},
                 summary, started)
    return summary


DID_SOMETHING = ("added", "updated", "moved", "removed", "touched", "failed", "copies", "resumed", "fallbacks",
                 "damaged")


def _log_run(catalog, arguments: dict, summary: dict, started: float) -> None:
    """The run in the operations log.  A run that did nothing and would log what the last operation
    logged (a cron job's, every hour) is counted in that entry instead (``runs``, and its
    ``finished_at``): each such run added a row, with its notes (every file reached by two names,
    every folder kept), that nothing reads: a year of hourly runs beside 1,000 hard-linked files
    would log some 1.3 GB (150 KB a run)."""
    idle = not any(summary[key] for key in DID_SOMETHING) and not any(summary["embedded_again"].values())
    last = catalog.last_operation() if idle else None
    if last is not None and last["command"] == "index" and last["arguments"] == json.loads(json.dumps(
            arguments, default=str)) and {k: v for k, v in last["summary"].items() if k != "runs"} == json.loads(
            json.dumps(summary, default=str)):
        catalog.log_operation("index", arguments, dict(summary, runs=last["summary"].get("runs", 1) + 1),
                              last["started_at"], operation_id=last["id"])
        return
    catalog.log_operation("index", arguments, summary, started)


def _embedded_by_an_older_vmr(library, unknown: list, progress: bool | None, encoder=None,
                              backend: str = "torchcodec") -> tuple[dict[str, list], dict, object]:
    """The (file, row) of ``unknown`` (unchanged, indexed before the catalog recorded a video's
    colour transfer: by a vmr before schema 5) that are indexed again, by why: "hdr", HDR video
    that vmr embedded as decoded, grey and washed out, before it tone-mapped HDR; and
    "no_stored_frames", a shard from before vmr kept each clip's frame embeddings, where search
    has only every clip's middle frame to place a moment with (corpus R1@0.5 44.4 against 66.7
    on the example videos); {path: (row id, transfer)} of those; and the encoder, loaded if an
    HDR video had to be looked at (``encoder``, else None).  The others' transfer is recorded,
    a few hundred at a time (an interrupted check keeps what it did), so each file is opened
    once for this (its header, and its shard's: about 1.5 ms), on the first index after the
    upgrade.  An HDR video is embedded again only where three of its stored frames, decoded
    and encoded again, differ (the vmr of 2026-12-01 tone-mapped already: an iPhone library it
    indexed would be embedded again for hours for nothing)."""
    from .progress import progress as bar_for
    from .vectors import FRAMES

    again: dict[str, list] = {"hdr": [], "no_stored_frames": []}
    forced, known, hdr = {}, {}, []

    def embed_again(why: str, item, row, transfer) -> None:
        again[why].append((item, row))
        forced[item.path] = (row["id"], transfer)

    def keep(row, transfer: str, every: int = RECORD_EVERY) -> None:
        known[row["id"]] = transfer
        if len(known) >= every:
            library.record_transfers(known)
            known.clear()

    bar = bar_for(len(unknown), "checking what an older vmr indexed", "video", enabled=progress if unknown else False)
    for item, row in unknown:
        transfer = file_transfer(item.path)
        keys = library.vectors.shard_keys(row["id"])
        if transfer in HDR_TRANSFERS and keys is not None and FRAMES in keys:
            hdr.append((item, row, transfer))
        elif transfer in HDR_TRANSFERS:
            embed_again("hdr", item, row, transfer)
        elif keys is not None and FRAMES not in keys:
            embed_again("no_stored_frames", item, row, transfer)
        elif transfer is not None:
            keep(row, transfer)
        bar.update()
    bar.close()
    if hdr:
        require_backend(backend)
        encoder = encoder or ClipEncoder(library.verify_model())
        bar = bar_for(len(hdr), "checking HDR videos an older vmr indexed", "video", enabled=progress)
        for item, row, transfer in hdr:
            if _embedded_as_now(library, encoder, item, row, backend):
                keep(row, transfer, every=1)  # seconds a video: each is kept as soon as it is known
            else:
                embed_again("hdr", item, row, transfer)
            bar.update()
        bar.close()
    library.record_transfers(known)
    return again, forced, encoder


def _embedded_as_now(library, encoder, item, row, backend: str) -> bool:
    """Whether a video's stored frames are what this vmr embeds: three of them (at a quarter, half
    and three quarters of it) decoded and encoded again agree, cosine 0.99 (the same frames agree
    to about 0.999 through float16 and int8; an HDR frame embedded grey against tone-mapped gave
    0.86-0.98 with the tiny test model).  A file that cannot be read now is taken as differing."""
    import numpy as np
    import torch

    from .vectors import FRAME_TIMES, FRAMES

    shard = library.vectors.read_shard(row["id"], row["vectors_token"])
    if shard is None or FRAMES not in shard:
        return False
    n = len(shard[FRAME_TIMES])
    picks = sorted({n // 4, n // 2, (3 * n) // 4})
    try:
        reader = open_reader(item.path, probe(item.path), encoder.image_size, backend=backend)
        try:
            fresh = encoder.encode_images(reader.frames_at([float(shard[FRAME_TIMES][i]) for i in picks]))
        finally:
            reader.close()
    except (DecodeError, TransientError, *BACKEND_FAILURES):  # what a reader lets through, as search takes it
        return False
    stored = torch.from_numpy(np.asarray(shard[FRAMES][picks], dtype=np.float32))
    return bool((torch.nn.functional.cosine_similarity(fresh.float(), stored, dim=-1) >= SAME_EMBEDDING).all())


SAME_EMBEDDING = 0.99  # cosine of a stored frame embedding and its frame encoded again that counts as the same


RECORD_EVERY = 500  # videos checked for what an older vmr indexed, recorded in one transaction


def skipped_words(skipped: dict) -> str:
    """', skipped 3 files by extension (.jpg 2, .txt 1)', or ''."""
    if not skipped:
        return ""
    top = sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{ext} {count}" for ext, count in top[:5]) + (", ..." if len(top) > 5 else "")
    total = sum(skipped.values())
    return f"; skipped {total} file{'s' if total != 1 else ''} by extension ({shown}): name a file to index it anyway"


def _apply_moves(library, moves, roots, summary) -> None:
    for item, row in moves:
        library.move_video(row, item.path, _root_of(item.path, roots), item.mtime_ns)
        summary["moved"] += 1


def _apply_copies(library, copies: list, roots, summary: dict) -> list:
    """Index each new or changed file that is a copy of an indexed one (scan.copy_source) with
    that one's vectors; returns the (file, row) that must be indexed as themselves (no source)."""
    alone = []
    for item, row in copies:  # row: the file's entry before it changed (a copy made over it), or None
        source = copy_source(library.catalog, item)
        if not _as_planned(item):
            summary["failed"].append({"path": item.path, "error": CHANGED, "recorded": False})
            continue
        if source is None or library.copy_video(source, item.path, _root_of(item.path, roots), item.mtime_ns) is None:
            alone.append((item, row))
            continue
        summary["updated" if row else "added"] += 1
        summary["copies"].append({"path": item.path, "copy_of": source["path"]})
    return alone


def _index_videos(library, work, roots, name, clip_seconds, encoder, backend, progress, summary,
                  signature, forced=None) -> None:
    """Load the encoder, then decode, encode and commit each (file, old row or None).  A file
    whose content is the problem is recorded as failed; a failure outside the file
    (TransientError) only reported.

    Loading the model, hashing its weights (a new library) and decoding the first frames run
    at once: on 2 cores that took about half a second off every run's start, most of a run
    that indexes one short new video.  Encoding does not wait for the hash either (0.6 s for
    600 MB of ViT-B/32 weights, more from a cold disk): it is needed at the first write."""
    from concurrent.futures import ThreadPoolExecutor

    from .library import preprocessing

    new = library.encoder() is None
    files = None if encoder else (locate_model(name) if new else library.verify_model())
    size = encoder.image_size if encoder else (input_size(files) if new else library.encoder()["image_size"])
    saved = Store(library, signature, backend, CHUNK_CLIPS)
    with ThreadPoolExecutor(1, thread_name_prefix="vmr-hash") as pool:
        weights = pool.submit(weights_identity, files) if new and files else None
        decoded = _Background(_decode_chunks(work, clip_seconds, size, backend, saved)) if size else None
        try:
            encoder = encoder or ClipEncoder(files)

            def record_encoder():  # a new library's; the hash is awaited only here, not before encoding
                library.record_encoder(encoder.name, encoder.dim, encoder.image_size, clip_seconds,
                                       files=encoder.files, weights=weights.result() if weights else None,
                                       preprocessing=preprocessing(encoder))

            if not new:
                library.check_preprocessing(encoder)
            if size != encoder.image_size:  # the configs did not tell: decode at the size it takes
                if decoded is not None:
                    decoded.close()
                decoded = _Background(_decode_chunks(work, clip_seconds, encoder.image_size, backend, saved))
            _commit_all(library, work, roots, encoder, decoded, progress, summary, signature,
                        before_first_write=record_encoder if new else None, forced=forced, saved=saved)
        finally:
            if decoded is not None:
                decoded.close()


def _commit_all(library, work, roots, encoder, decoded, progress, summary, signature,
                before_first_write=None, forced=None, saved=None) -> None:
    """Commit each decoded and encoded file (or record its failure) as it comes.

    ``before_first_write()`` runs once, before the first file's result or saved progress is
    written (every file yields one): a new library's encoder is recorded there, after its first
    frames were encoded.  ``forced``: {path: (row id, transfer)} of unchanged files embedded
    again for what an older vmr did (_embedded_by_an_older_vmr); where this vmr cannot read one,
    it keeps the vectors it has (which search used until now) and is not tried again, rather
    than leave search.  ``saved``: the run's partial.Store, which keeps the progress on a long
    video (the state of a file goes once it is committed or recorded as failed)."""
    forced = forced or {}
    from .progress import by_size

    bar = by_size([item.size for item, _row in work], "indexing", "video", enabled=progress)
    last_save = time.time()
    timeouts_in_a_row = 0
    resumed: dict[str, int] = {}

    def first_write():
        nonlocal before_first_write
        if before_first_write is not None:
            before_first_write()
            before_first_write = None

    def on_clips(item, done, total, resumed_from=None):  # inside a video: an hour of video takes minutes
        if resumed_from:
            resumed[item.path] = resumed_from
            bar.resumed(done, total)  # (there, but not in this run's rate)
        else:
            bar.within(done, total)
        at = f" (resumed at {resumed[item.path]})" if item.path in resumed else ""
        bar.set_postfix_str(f"{printable(os.path.basename(item.path))[-30:]} {done}/{total} clips{at}")

    keeper = Keeper(saved, before_save=first_write) if saved is not None else None
    for done, (item, row, result) in enumerate(_encoded(work, decoded, encoder, on_clips, keeper), 1):
        stop_if_interrupted()  # perhaps made this file's error: it is not recorded as failed, the run stops
        first_write()
        try:
            if isinstance(result, Exception):
                raise result
            info, grid, times, embeddings, hists, motion, fallback, bad_frames, claimed = result
            _commit_video(library, encoder, item, info, grid, times, embeddings, hists, motion,
                          root=_root_of(item.path, roots), bad_frames=bad_frames)
            if saved is not None:
                saved.forget(item.path, item)
        except TransientError as exc:
            summary["failed"].append({"path": item.path, "error": str(exc), "recorded": False})
            timeouts_in_a_row = timeouts_in_a_row + 1 if isinstance(exc, ProbeTimeout) else 0
            if timeouts_in_a_row >= TIMEOUTS_TO_STOP:
                bar.close()
                raise VmrError(f"stopped: ffprobe timed out on {timeouts_in_a_row} files in a row (last "
                               f"{printable(item.path)}); nothing was recorded against them, and what "
                               "was indexed is kept: run 'vmr index' again once the files can be read") from None
        except DecodeError as exc:
            timeouts_in_a_row = 0
            if saved is not None:
                saved.forget(item.path, item)  # recorded as failed (or keeping its old vectors): never resumed
            if item.path in forced:
                video_id, transfer = forced[item.path]
                library.record_transfers({video_id: transfer or ""})
                summary["failed"].append({"path": item.path, "recorded": False, "error": "embedding it again "
                                          f"failed, so it keeps the vectors an older vmr gave it: {exc}"})
                bar.update(1)
                continue
            # recorded under its root like any entry: 'vmr index' with no PATH then looks at it
            # again (a root whose only files failed was never walked again, its new files never seen)
            library.mark_failed(dict(_file_row(item), root=_root_of(item.path, roots)), str(exc),
                                failed_with=signature)
            summary["failed"].append({"path": item.path, "error": str(exc), "recorded": True})
        else:
            timeouts_in_a_row = 0
            summary["updated" if row else "added"] += 1
            if item.path in resumed:
                summary["resumed"].append({"path": item.path, "from_clip": resumed[item.path], "clips": len(grid)})
            if fallback:
                summary["fallbacks"].append({"path": item.path, "reason": fallback})
            if bad_frames:
                summary["damaged"].append({"path": item.path, "bad_frames": bad_frames, "ends_at": None if
                                           claimed is None else info.duration, "claimed": claimed})
        bar.update(1)
        if done % TRIM_EVERY_FILES == 0:
            release_freed_memory()
        if time.time() - last_save > SAVE_EVERY_SECONDS:
            library.save()
            last_save = time.time()
    bar.close()


def release_freed_memory() -> None:
    """Hand memory that glibc's malloc holds free back to the system (see TRIM_EVERY_FILES);
    nothing where the C library has no malloc_trim (musl, macOS, Windows)."""
    import ctypes
    import ctypes.util

    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            _malloc_trim.argtypes, _malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None  # libc's malloc_trim once looked up; False where there is none


def _root_of(path: str, roots) -> str:
    """The root a file is recorded under: the nearest whose walk reaches it (a symlinked folder
    named as a root of its own stays its root: recorded under the outer one, it was forgotten)."""
    return roots.walked_root(path) or os.path.dirname(path)


def _file_row(item) -> dict:
    """The catalog columns that describe the file itself (no content yet)."""
    return {"path": item.path, "size": item.size, "mtime_ns": item.mtime_ns, "fingerprint": item.fingerprint}


# -- decode in one thread, encode in this one ---------------------------------------------------
PROBE_WORKERS = max(1, min(4, os.cpu_count() or 1))
PROBE_AHEAD = 8


def _decode_chunks(work, clip_seconds: float, size: int, backend: str, saved=None):
    """Producer: ("start", i, (times, partial.Saved or None, clips_total)) once a file is open,
    ("frames", i, (tensor, first_is_repeat, clips_done, clips_total, fallback)) per chunk of
    clips, then ("done", i, (info, grid, times, fallback, bad_frames, claimed)) or ("error", i, DecodeError
    or TransientError).

    A chunk of clips k0..k1-1 holds frames 2k0..2k1, so each clip's three frames are in one
    chunk; a chunk's first frame is the previous chunk's last (decoded again, not encoded).
    A file whose progress was saved (``saved``: the run's partial.Store) starts at the chunk
    after it.

    Files are probed PROBE_AHEAD ahead in PROBE_WORKERS threads: one ffprobe process costs about
    0.1 s to start (it loads every ffmpeg library), which was most of the time a library of
    short clips took with the tiny model (200 one-second clips: 24 s; at ViT-B/32 size on a CPU the
    encoder hides it: bench/many_files.py)."""
    from concurrent.futures import ThreadPoolExecutor

    pool, stop = ThreadPoolExecutor(PROBE_WORKERS, thread_name_prefix="vmr-probe"), threading.Event()
    probes: dict = {}
    try:
        for i, (item, _row) in enumerate(work):
            for j in range(i, min(len(work), i + PROBE_AHEAD)):
                if j not in probes:
                    probes[j] = pool.submit(probe, work[j][0].path, stop)
            yield from _decode_one(i, item, probes.pop(i), clip_seconds, size, backend, saved)
    finally:  # stopped early (an error, Ctrl-C): probes still running are killed, not waited for
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)


def _decode_one(i, item, probed, clip_seconds: float, size: int, backend: str, saved=None):
    """The messages of _decode_chunks for one file, whose probe() runs in ``probed`` (a future).

    Its saved progress, if any applies, is taken where the frame times this run would take are
    the ones saved; a file PyAV read (a fallback) is read by PyAV again.  A reader that decodes
    in order (PyAV) still decodes from the file's start, so what it counts (damaged frames, a
    stream cut short) is what an uninterrupted run counts; only the encoding is skipped."""
    try:
        info = probed.result()
        grid = clip_grid(info.duration, clip_seconds)
        resume = saved.load(item, size, len(grid)) if saved is not None else None
        reader = open_reader(item.path, info, size, backend="pyav" if resume and resume.fallback else backend,
                             whole=True)

        def frame_times() -> list[float]:  # (of the reader open now: its key frames)
            return on_key_frames(grid_times(grid, info.fps), reader.key_frames(), clip_seconds / 4)

        try:
            times = frame_times()
            if resume is not None and resume.times != times:  # not the frames this run would take
                saved.discard(item.path)
                if resume.fallback:
                    reader.close()
                    reader = open_reader(item.path, info, size, backend=backend, whole=True)
                    times = frame_times()
                resume = None
            reader.expect(times)
            yield "start", i, (times, resume, len(grid))
            for k0 in range(resume.clips if resume else 0, len(grid), CHUNK_CLIPS):
                k1 = min(len(grid), k0 + CHUNK_CLIPS)
                frames = reader.frames_at(times[2 * k0:2 * k1 + 1])
                yield "frames", i, (frames, k0 > 0, k1, len(grid), reader.fallback or (resume and resume.fallback))
        finally:
            reader.close()
        bad, good = reader.bad_frames, reader.good_frames
        ends_at = reader.ends_at  # (set only before the claimed duration)
        if bad and good is not None and bad > good:
            if ends_at is not None:
                raise DecodeError(f"cut short: its video stream ends at {timecode(ends_at)} of the "
                                  f"{timecode(info.duration)} it claims (a copy or download that stopped?)")
            raise DecodeError(f"too damaged to index: {bad} of {bad + good} frames could not be decoded")
        claimed = None
        if ends_at is not None:  # indexed up to where it ends: no moment past its last frame
            claimed, info, grid, times = info.duration, *_cut_short(info, times, ends_at, clip_seconds)
        yield "done", i, (info, grid, times, reader.fallback or (resume and resume.fallback), bad, claimed)
    except (DecodeError, TransientError) as exc:
        yield "error", i, exc
    except (RuntimeError, ValueError, OSError) as exc:
        if is_environment_error(exc):
            yield "error", i, TransientError(getattr(exc, "strerror", None) or first_line(exc))
        else:
            yield "error", i, DecodeError(f"cannot decode: {first_line(exc)}")


def _cut_short(info, times: list[float], ends_at: float, clip_seconds: float):
    """(info, grid, times) of a video whose stream ends at ``ends_at``, before the duration its
    header claims: its clips up to there, each frame's time no later (the frame decoded for a
    time past the end was the last one, shown until ``ends_at``).  Indexed at the claimed length,
    searches found moments past the end that export could not cut."""
    from dataclasses import replace

    grid = clip_grid(ends_at, clip_seconds)
    return replace(info, duration=ends_at), grid, [min(t, ends_at) for t in times[:2 * len(grid) + 1]]


class _Background:
    """A generator run in a thread from the moment this is made, its items taken here, so
    producing overlaps consuming (and can start before the consumer is ready).

    An exception in the thread is re-raised here, never lost there; ``close``
    stops the thread, whether or not anything was taken.
    """

    _END = object()

    def __init__(self, messages, maxsize: int = 4):
        self._out: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(messages,), daemon=True, name="vmr-decode")
        self._thread.start()

    def _produce(self, messages):
        try:
            for message in messages:
                if self._stop.is_set():
                    return
                self._out.put((True, message))
        except BaseException as exc:
            self._out.put((False, exc))
        finally:
            self._out.put((True, self._END))

    def __iter__(self):
        while True:
            ok, message = self._out.get()
            if not ok:
                raise message
            if message is self._END:
                return
            yield message

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._out.get(timeout=0.1)
            except queue.Empty:
                pass


def _encoded(work, decoded, encoder, on_clips=None, keeper=None):
    """Yield (item, row, (info, grid, times, embeddings, histograms, motion, fallback, bad_frames, claimed)
    or DecodeError / TransientError) for the messages of ``_decode_chunks`` in ``decoded``.

    ``on_clips(item, done, total, resumed_from=None)`` reports progress inside a video (long
    videos take minutes).  Of a video only its frame embeddings and per-clip
    histograms and motion energy are kept, so memory grows little with its
    length; a resumed video starts from those it saved.  ``keeper`` (a partial.Keeper) saves
    them now and then, and when the run stops part way through a video.
    """
    import torch  # here, not at the top: a run with nothing to encode never loads it

    embeddings: list = []
    measures: list = []
    try:
        for kind, i, payload in decoded:
            item, row = work[i]
            if kind == "start":
                times, resume, total = payload
                embeddings, measures = ([resume.embeddings], [(resume.hists, resume.motion)]) if resume else ([], [])
                if keeper is not None:
                    keeper.begin(item, times, resume, total)
                if on_clips is not None and resume is not None:
                    on_clips(item, resume.clips, total, resumed_from=resume.clips)
                continue
            if kind == "frames":
                frames, first_is_repeat, done, total, fallback = payload
                embedded = encode_distinct(encoder, frames, first_is_repeat,
                                           embeddings[-1][-1] if first_is_repeat and embeddings else None)
                measured = clip_measures(frames)
                embeddings.append(embedded)
                measures.append(measured)
                if on_clips is not None:
                    on_clips(item, done, total)
                if keeper is not None:
                    keeper.chunk(embeddings, measures, fallback)
                continue
            if keeper is not None:
                if isinstance(payload, TransientError):  # not the file's fault: what was done is kept
                    keeper.stopped(embeddings, measures)
                keeper.end()
            if kind == "done":
                info, grid, times, fallback, bad_frames, claimed = payload
                n = len(grid)  # fewer clips than were decoded where the stream was cut short
                yield item, row, (info, grid, times, torch.cat(embeddings)[:2 * n + 1],
                                  torch.cat([h for h, _ in measures])[:n], torch.cat([m for _, m in measures])[:n],
                                  fallback, bad_frames, claimed)
            else:
                yield item, row, payload
            embeddings, measures = [], []
    except (Exception, KeyboardInterrupt):  # Ctrl-C, a kill (Terminated), an error: keep what was done
        if keeper is not None:
            keeper.stopped(embeddings, measures)
        raise


def encode_distinct(encoder, frames, skip_first: bool = False, before=None):
    """The embeddings of frames[1:] (``skip_first``: frames[0] is the previous chunk's last, whose
    embedding is ``before``) or of all frames, each frame whose decoded pixels equal the one's
    before it taking that one's embedding instead of an encoder pass.  A still scene (a screen
    recording's unchanging screen, a tripod shot, a title card) costs no encoding: 21 % of the
    stored frames of bench/realsize.py's synthetic world repeat the one before, the camera files
    of the test media none (bench/repeated_frames.py); the comparison costs about 0.16 ms a frame at 224 x 224 (2 cores), against
    30-60 ms to encode it with ViT-B/32."""
    import torch

    n, first = frames.shape[0], 1 if skip_first else 0
    same = torch.zeros(n, dtype=torch.bool)
    if n > 1:
        same[1:] = (frames[1:] == frames[:-1]).flatten(1).all(1)
    if skip_first and before is None and n > 1:
        same[1] = False  # (no embedding of frames[0] to take)
    fresh = [i for i in range(first, n) if not same[i]]
    if len(fresh) == n - first:
        return encoder.encode_images(frames[first:])
    encoded = encoder.encode_images(frames[fresh]) if fresh else None
    out, k, last = [], 0, before
    for i in range(first, n):
        if not same[i]:
            last, k = encoded[k], k + 1
        out.append(last)
    return torch.stack(out)


def clip_measures(frames):
    """(colour histograms [k, 3 frames, 3, bins], motion energy [k]) of the k clips whose uint8
    frames 2j, 2j+1, 2j+2 (first, middle, last) are given: 2k+1 frames."""
    import torch

    from vmr_models.bam import colour_histograms, motion_energy

    thumbs = torch.nn.functional.interpolate(frames.float(), size=(THUMB, THUMB), mode="area")
    thumbs = thumbs.to(torch.uint8)  # truncation, as the shot threshold was measured with
    hists = colour_histograms(thumbs)
    k = (frames.shape[0] - 1) // 2
    per_clip = torch.stack([hists[0:2 * k:2], hists[1:2 * k:2], hists[2:2 * k + 1:2]], 1)
    return per_clip, motion_energy(thumbs[0:2 * k:2], thumbs[2:2 * k + 1:2])


# -- one video into the library ----------------------------------------------------------------
def _commit_video(library, encoder, item, info, grid, times, embeddings, hists, motion, root: str,
                  bad_frames: int = 0) -> None:
    """BAM vectors, stored frames and clip rows of one decoded video, handed to the library if
    the file is still the one that was decoded."""
    import torch

    from vmr_models.bam import bam_features, shot_ids_from_histograms

    n = len(grid)
    first, middle, last = embeddings[0:2 * n:2], embeddings[1:2 * n:2], embeddings[2:2 * n + 1:2]
    shots = shot_ids_from_histograms(hists[:, 0], hists[:, 1], hists[:, 2])
    A, B, M = bam_features(first, middle, last, shots)
    clips = [{"idx": k, "start": s, "end": e, "shot": int(shots[k]), "motion": float(motion[k])}
             for k, (s, e) in enumerate(grid)]
    fp = _unchanged_fingerprint(item)
    vectors = {"A": A.numpy(), "B": B.numpy(), "M": M.numpy(), "F": embeddings.numpy(),
               "F_t": torch.tensor(times, dtype=torch.float32).numpy()}
    library.put_video(dict(_file_row(item), fingerprint=fp, root=root, model=encoder.name,
                           bad_frames=bad_frames, **info.as_row()), clips, vectors)


def _unchanged_fingerprint(item) -> str:
    """The file's fingerprint, after checking it is still the file that was planned.  If not,
    nothing is recorded (TransientError): an entry it had keeps its vectors, and the next run
    reads the file as it is then.  Recorded as failed, a file moved away and back during the run
    (same size and time) was never read again, and an indexed one lost its vectors."""
    if not _as_planned(item):
        raise TransientError(CHANGED)
    try:
        return fingerprint(item.path, item.size)
    except OSError:  # vanished after the re-stat: the same outcome as before it
        raise TransientError(CHANGED) from None


def _as_planned(item) -> bool:
    """Whether the file still has the size and time the run planned it with (its re-stat)."""
    st = _stat(item.path)
    return st is not None and (st.st_size, st.st_mtime_ns) == (item.size, item.mtime_ns)


def _stat(path: str):
    try:
        return os.stat(path)
    except OSError:
        return None
