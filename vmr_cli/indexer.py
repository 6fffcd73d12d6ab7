"""``vmr index``: scan, decode the clip grid, encode, BAM vectors, commit per video.

Decoding runs in a producer thread that feeds the encoder through a small
queue, so the two overlap.  Each video ends in one catalog transaction that
also covers its vector shard (written just before the commit, tied to the row
by a token), so an interrupted run loses at most the video it was on.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
import uuid

import torch

from .decode import VideoReader
from .encoders import DEFAULT_MODEL, ClipEncoder, model_name
from .errors import DecodeError, VmrError, first_line
from .paths import printable
from .probe import probe, require_tool
from .scan import check_roots, fingerprint, plan_index

CHUNK_CLIPS = 32        # clips decoded per step: bounds memory on very long videos
THUMB = 32              # thumbnail size for the shot and motion measures
SAVE_EVERY_SECONDS = 60  # FAISS cache written at least this often during a run
CHANGED = "file changed or vanished while it was being indexed; the next 'vmr index' picks up its new state"


def clip_grid(duration: float, clip_seconds: float) -> list[tuple[float, float]]:
    n = max(1, math.ceil(duration / clip_seconds - 1e-6))
    return [(k * clip_seconds, min((k + 1) * clip_seconds, duration)) for k in range(n)]


def grid_times(grid, fps: float) -> list[float]:
    """First, middle and last frame time of every clip, flattened."""
    step = 1.0 / (fps or 30.0)
    times = []
    for start, end in grid:
        times += [start, (start + end) / 2, max(start, end - step)]
    return times


def resolve_encoder(library, model: str | None, clip_seconds: float | None):
    """The encoder name and clip length to use: the library's own, or the first ones given."""
    recorded = library.encoder()
    if recorded:
        if model and model_name(model) != recorded["name"]:
            raise VmrError(
                f"library {library.directory} was built with encoder '{recorded['name']}', not "
                f"'{model_name(model)}'; use that model, or index into a new library with "
                "--library DIR (or delete this one) to rebuild with another")
        if clip_seconds and abs(clip_seconds - recorded["clip_seconds"]) > 1e-9:
            raise VmrError(
                f"library {library.directory} uses {recorded['clip_seconds']} s clips; "
                "index into a new library with --library DIR to change the clip length")
        return recorded["name"], recorded["clip_seconds"]
    return model_name(model or DEFAULT_MODEL), clip_seconds or 2.0


def index_paths(library, paths, model: str | None = None, clip_seconds: float | None = None,
                backend: str = "torchcodec", progress: bool | None = None, encoder=None) -> dict:
    """Bring the library up to date with the files under paths; returns the run's summary."""
    from tqdm import tqdm

    started = time.time()
    roots = check_roots(paths)
    if clip_seconds is not None and not (0.25 <= clip_seconds <= 60):
        raise VmrError("--clip-seconds must be between 0.25 and 60")
    require_tool("ffprobe")  # before the model loads, and never inside the decode thread
    with library.writer_lock("vmr index"):
        name, clip_seconds = resolve_encoder(library, model, clip_seconds)
        library.check(repair=True)
        plan = plan_index(library.catalog, roots)
        summary = {"added": 0, "updated": 0, "moved": 0, "unchanged": plan.unchanged,
                   "removed": 0, "failed": list(plan.failed), "clips": 0}
        catalog, vectors = library.catalog, library.vectors

        for item, row, _fingerprint in plan.move:
            with catalog.transaction():
                catalog.move_video(row["id"], item.path, _root_of(item.path, roots), item.mtime_ns)
            summary["moved"] += 1
        dim_known = library.encoder()
        for row in plan.remove:
            _remove_video(library, row, dim_known["dim"] if dim_known else None)
            summary["removed"] += 1

        work = [(item, row) for item, row in plan.add + plan.update]
        if work:
            if encoder is None:
                encoder = ClipEncoder(name)
            if library.encoder() is None:
                library.record_encoder(encoder.name, encoder.dim, encoder.image_size, clip_seconds)
            bar = tqdm(total=len(work), desc="indexing", unit="video", disable=progress is False
                       if progress is not None else None, leave=False)
            last_save = time.time()

            def on_clips(item, done, total):
                bar.set_postfix_str(f"{printable(os.path.basename(item.path))[-30:]} {done}/{total} clips")

            for item, row, result in _encoded(work, clip_seconds, encoder, backend, on_clips):
                try:
                    if isinstance(result, Exception):
                        raise result
                    _commit_video(library, encoder, item, row, *result, root=_root_of(item.path, roots))
                except DecodeError as exc:
                    _record_failure(library, item, row, str(exc), plan.fingerprints.get(item.path))
                    summary["failed"].append({"path": item.path, "error": str(exc)})
                else:
                    summary["updated" if row else "added"] += 1
                bar.update(1)
                if time.time() - last_save > SAVE_EVERY_SECONDS:
                    vectors.save()
                    last_save = time.time()
            bar.close()
        vectors.save()
        summary["clips"] = catalog.counts()["clips"]
        catalog.log_operation("index", {"paths": roots, "model": name, "clip_seconds": clip_seconds},
                              summary, started)
    return summary


def _root_of(path: str, roots: list[str]) -> str:
    from .paths import under

    for root in roots:
        if under(path, root):
            return root
    return os.path.dirname(path)


def _decode_chunks(work, clip_seconds: float, size: int, backend: str):
    """Producer: ("frames", i, tensor) per chunk, then ("done", i, (info, grid)) or ("error", i, exc)."""
    for i, (item, _row) in enumerate(work):
        try:
            info = probe(item.path)
            grid = clip_grid(info.duration, clip_seconds)
            reader = VideoReader(item.path, info, size, backend=backend)
            times = grid_times(grid, info.fps)
            try:
                for at in range(0, len(times), CHUNK_CLIPS * 3):
                    yield "frames", i, (reader.frames_at(times[at:at + CHUNK_CLIPS * 3]), len(grid))
            finally:
                reader.close()
            yield "done", i, (info, grid)
        except DecodeError as exc:
            yield "error", i, exc
        except (RuntimeError, ValueError, OSError) as exc:
            yield "error", i, DecodeError(f"cannot decode: {first_line(exc)}")


def _encoded(work, clip_seconds: float, encoder, backend: str, on_clips=None):
    """Yield (item, row, (info, grid, embeddings, histograms, motion) or DecodeError) per video.

    ``on_clips(item, done, total)`` reports progress inside a video (long
    videos take minutes).

    A thread decodes while this one encodes; of a video only its embeddings
    and per-clip histograms and motion energy are kept, so memory grows
    little with its length.
    """
    out: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()

    def produce():
        try:
            for message in _decode_chunks(work, clip_seconds, encoder.image_size, backend):
                if stop.is_set():
                    return
                out.put(message)
        except BaseException as exc:  # re-raised in the caller's thread, never lost in this one
            out.put(("fatal", -1, exc))
        finally:
            out.put(None)

    thread = threading.Thread(target=produce, daemon=True, name="vmr-decode")
    thread.start()
    embeddings: list = []
    measures: list = []
    try:
        while True:
            message = out.get()
            if message is None:
                return
            kind, i, payload = message
            if kind == "fatal":
                raise payload
            item, row = work[i]
            if kind == "frames":
                frames, total = payload
                embeddings.append(encoder.encode_images(frames))
                measures.append(clip_measures(frames))
                if on_clips is not None:
                    on_clips(item, sum(len(e) for e in embeddings) // 3, total)
                continue
            if kind == "done":
                info, grid = payload
                yield item, row, (info, grid, torch.cat(embeddings),
                                  torch.cat([h for h, _ in measures]), torch.cat([m for _, m in measures]))
            else:
                yield item, row, payload
            embeddings, measures = [], []
    finally:
        stop.set()
        while thread.is_alive():
            try:
                out.get(timeout=0.1)
            except queue.Empty:
                pass


def clip_measures(frames: torch.Tensor):
    """(colour histograms [k, 3 frames, 3, bins], motion energy [k]) of k clips' first/middle/last frames."""
    from models.bam import colour_histograms, motion_energy

    thumbs = torch.nn.functional.interpolate(frames.float(), size=(THUMB, THUMB), mode="area")
    thumbs = thumbs.to(torch.uint8).view(-1, 3, 3, THUMB, THUMB)  # as before: truncation, same shots
    hists = colour_histograms(thumbs.flatten(0, 1)).view(thumbs.shape[0], 3, 3, -1)
    return hists, motion_energy(thumbs[:, 0], thumbs[:, 2])


def _commit_video(library, encoder, item, row, info, grid, embeddings, hists, motion, root: str) -> None:
    from models.bam import bam_features, shot_ids_from_histograms

    st = _stat(item.path)
    if st is None or (st.st_size, st.st_mtime_ns) != (item.size, item.mtime_ns):
        raise DecodeError(CHANGED)
    n = len(grid)
    emb = embeddings.view(n, 3, -1)
    shots = shot_ids_from_histograms(hists[:, 0], hists[:, 1], hists[:, 2])
    A, B, M = bam_features(emb[:, 0], emb[:, 1], emb[:, 2], shots)
    clips = [{"idx": k, "start": s, "end": e, "shot": int(shots[k]), "motion": float(motion[k])}
             for k, (s, e) in enumerate(grid)]
    token = uuid.uuid4().hex
    catalog = library.catalog
    dim = encoder.dim
    old_ids = [c["id"] for c in catalog.clips(row["id"])] if row else []
    try:
        fp = fingerprint(item.path, item.size)
    except OSError:  # vanished after the re-stat: the same outcome as before it
        raise DecodeError(CHANGED) from None
    with catalog.transaction():
        video_id = catalog.upsert_video(dict(
            path=item.path, root=root, size=item.size, mtime_ns=item.mtime_ns, fingerprint=fp,
            n_clips=n, status="ok", error=None, model=encoder.name, vectors_token=token,
            indexed_at=time.time(), **info.as_row()))
        clip_ids = catalog.replace_clips(video_id, clips)
        library.vectors.write_shard(video_id, token, clip_ids, {"A": A.numpy(), "B": B.numpy(), "M": M.numpy()})
    library.vectors.remove(dim, old_ids)
    library.vectors.add(dim, clip_ids, A.numpy())


def _record_failure(library, item, row, error: str, fp: str | None) -> None:
    dim = (library.encoder() or {}).get("dim")
    if row and row["status"] == "ok":
        _remove_video(library, row, dim)  # its old vectors describe a file that is no longer there
    with library.catalog.transaction():
        library.catalog.upsert_video(dict(path=item.path, size=item.size, mtime_ns=item.mtime_ns,
                                          fingerprint=fp, status="failed", error=error, n_clips=0,
                                          indexed_at=time.time()))


def _remove_video(library, row, dim) -> None:
    clip_ids = [c["id"] for c in library.catalog.clips(row["id"])]
    with library.catalog.transaction():
        library.catalog.delete_video(row["id"])
    if dim:
        library.vectors.remove(dim, clip_ids)
    library.vectors.delete_shard(row["id"])


def _stat(path: str):
    try:
        return os.stat(path)
    except OSError:
        return None
