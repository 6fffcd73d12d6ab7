"""``vmr search``: query -> candidate videos -> windows on the stored timeline -> refined moments.

1. The query is encoded once; FAISS finds the clips whose appearance vector is
   nearest, and their videos become the candidates.
2. Per candidate, the frames the index already encoded (each clip's first and
   middle frame, kept in its shard) are scored against the query: a timeline
   at clip_seconds / 2 with no decoding and no encoding.  The moment head
   proposes windows on it; they are what the search selects.
3. One budget of dense frames per query, spent on the best windows across
   all videos: frames on a fine grid between a window's edge and its
   neighbour outside are decoded and encoded (or taken from the frame cache)
   and move the edge to where the similarity crosses over.
``exhaustive`` instead decodes and encodes the fine grid over every clip: the
baseline that trimming is measured against.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from vmr_models.moment_head import temporal_iou

from .catalog import MISREAD_BY_OLDER_VMR, misread_by_older_vmr
from .copies import contents, copies_of, others, print_of
from .decode import open_reader, search_backend
from .errors import DecodeError, NotLogged, SkipVideo, TransientError, VmrError, stop_if_interrupted
from .paths import library_names, under
from .probe import VideoInfo

MAX_QUERY_CHARS = 2000
ENCODE_BATCH = 256  # dense frames decoded and encoded per step (bounds memory in exhaustive search)
# Weight of a window's contrast with the frames around it, against its own level, in the moment
# head's score.  Measured on the stored timeline (synthetic worlds of seeds 0, 1, 2, 10 x 120 s,
# tiny CLIP): 0.25 beat 0, 0.5, 0.75 and 1.0 (the dense-timeline value) on every seed, per video
# and in the corpus (bench/RESULTS.md).
CONTRAST = 0.25
JOINERS = "\u200c\u200d"  # zero-width non-joiner and joiner: part of words and emoji, not controls
MIN_FRAMES = 2  # frames a moment needs (see _Video.proposals)
MIN_MOMENT = 1.0  # seconds: a shorter moment is not one a person would keep (unless the video is)


PER_VIDEO = 3  # moments at most from one video of several, unless asked otherwise (--per-video)


@dataclass
class SearchOptions:
    top_k: int = 10
    exhaustive: bool = False
    min_score: float | None = None   # None: keep everything
    max_videos: int = 10             # candidate videos searched per query
    dense_fps: float = 4.0           # the fine grid exhaustive search decodes over every clip
    refine: int = 3                  # best windows (across videos) whose edges get dense frames
    refine_fps: float = 2.0          # the grid between a refined edge's stored frames (see _edges)
    per_video: int | None = None     # moments per video (none nested in another); None: PER_VIDEO, or
    #                                  top_k where a single video is searched (no other to make room for)
    only_video: str | None = None    # restrict to one video (moment retrieval in eval)
    within: tuple = ()               # restrict to the videos at or under these paths (vmr search --in)
    record_selection: bool = False   # stats["selections"]: the clips the windows cover, per video


def clean_query(query: str, limit: int | None = MAX_QUERY_CHARS) -> str:
    """One line of printable text, at most ``limit`` characters; a clear error for an empty query.
    The zero-width (non-)joiner stays: words (Persian می‌خواهم) and emoji (👩‍💻) need it.  Bytes
    that are not UTF-8 (a Latin-1 terminal) are refused: dropped, 'café rouge' was searched as
    'caf rouge' without a word."""
    if any("\udc80" <= ch <= "\udcff" for ch in query):
        raise VmrError("the query is not UTF-8 text; set your terminal to UTF-8 (its encoding, or LANG)")
    text = "".join(ch if ch.isprintable() or ch in JOINERS else " " for ch in query)
    text = " ".join(text.split())
    if not text.strip(JOINERS + " "):
        raise VmrError("the query is empty; say what happens, e.g. vmr search \"person opens the door\"")
    return text[:limit]


def _query_note(whole: str, read: str, tokens: int | None) -> str:
    """What part of a long query was used, in words (in characters where the cut falls inside
    the first word: a URL, a language written without spaces), and why: the model's text length
    (``tokens``), else vmr's MAX_QUERY_CHARS."""
    words, used = whole.split(), read.split()
    if len(used) > 1:
        part, tail = f"the first {len(used)} of the query's {len(words)} words", " ".join(used[-3:])
    else:
        part, tail = f"the first {len(read)} of the query's {len(whole)} characters", read
    tail = ("…" + tail[-30:].lstrip()) if len(tail) > 30 else tail
    why = (f"the model reads at most {tokens} tokens of a query" if tokens is not None
           else f"vmr reads at most {MAX_QUERY_CHARS} characters of a query")
    return f"only {part} were used (up to \"{tail}\"): {why}"


class Timer:
    """Seconds per named stage, summed over a query."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started

    def rounded(self) -> dict:
        return {k: round(v, 3) for k, v in self.seconds.items()}


class Searcher:
    """Holds the encoder so that many queries (eval, benchmarks) share one load."""

    def __init__(self, library, encoder=None, backend: str | None = None, frame_cache: bool = True,
                 trimmer: str | None = None):
        """``backend``: the decoder, or None for torchcodec where it loads, else PyAV
        (``decode.search_backend``; chosen at the first frame decoded, so a search that decodes
        nothing never imports a decoder).
        ``frame_cache`` False neither reads nor writes the frame cache (benchmarks that compare
        search modes on one library, so that one mode does not encode for the other).
        ``trimmer``: a folder written by ``vmr train``; its network then chooses the windows
        on the stored features instead of the parameter-free moment head."""
        from .encoders import ClipEncoder
        from .trained import TrainedTrimmer

        self.trimmer = TrainedTrimmer(trimmer, library) if trimmer else None

        self.library = library
        self.info = library.require_encoder()
        started = time.perf_counter()
        self.encoder = encoder or ClipEncoder(self.info["name"])
        self.load_seconds = time.perf_counter() - started
        if self.encoder.name != self.info["name"] or self.encoder.dim != self.info["dim"]:
            raise VmrError(f"library was built with encoder '{self.info['name']}', not "
                           f"'{self.encoder.name}'; search with the same model, or rebuild the library")
        library.check_preprocessing(self.encoder)
        # One asked for by name is checked now, like vmr index does: a missing one is an error
        # before anything is searched.  The default is chosen at the first frame decoded.
        self._backend = search_backend(backend) if backend is not None else None
        self.frame_cache = library.frames if frame_cache else None
        # Repairs the FAISS cache in memory only: a search never writes the catalog or the
        # vectors, so it is safe beside a running index (which repairs and saves for real).
        library.check(repair=True, save=False)

    def _encode_query(self, text: str):
        """(q [D], its token features [L, D] or None): the tokens only for a trimmer trained on
        them, from the same pass of the text tower (q is then exactly encode_text's)."""
        if self.trimmer is None or not self.trimmer.uses_tokens:
            return self.encoder.encode_text([text])[0], None
        found = self.encoder.encode_text_tokens([text])
        if found is None:  # the same weights as in training (checked), so only another model family
            raise VmrError(f"trimmer {self.trimmer.where} was trained on the query's token features, which "
                           f"encoder '{self.encoder.name}' does not give; train it again without --tokens")
        pooled, tokens, mask = found
        return pooled[0], tokens[0][mask[0]]

    def _decoder(self, stats: dict) -> str:
        """The backend to decode with, chosen once; its note (PyAV instead of torchcodec)
        goes into every search's stats that decodes."""
        if self._backend is None:
            self._backend = search_backend(None)
        name, note = self._backend
        stats["decoder"] = name
        if note:
            stats["decoder_note"] = note
        return name

    def search(self, query: str, options: SearchOptions | None = None, log: bool = True,
               progress: bool | None = False) -> dict:
        options = options or SearchOptions()
        started = time.perf_counter()
        timer = Timer()
        text = clean_query(query)
        with timer("text_encode"):
            q, tokens = self._encode_query(text)
        stats = {"videos_considered": 0, "clips_verified": 0, "frames_stored": 0, "frames_cached": 0,
                 "frames_decoded": 0, "frames_encoded": 0, "seconds": 0.0,
                 "decoder": None}  # always there for scripts: None when nothing was decoded
        read = self.encoder.text_read(text)
        whole = clean_query(query, limit=None)
        if read is not None or whole != text:  # dropped by the model's text length, or MAX_QUERY_CHARS
            stats["query_note"] = _query_note(whole, read if read is not None else text,
                                              self.encoder.text_tokens if read is not None else None)
        with timer("vectors"):
            candidates, copies = self._candidates(q, options)
            videos = [v for v in (self._stored(video, q, stats) for video in candidates) if v]
        if options.only_video is not None:  # one video: its best top_k moments, not a per-video cap
            options = replace(options, per_video=options.top_k)
        elif options.per_video is None:
            options = replace(options, per_video=options.top_k if len(videos) == 1 else PER_VIDEO)
        if options.exhaustive:
            moments = self._exhaustive(videos, q, options, stats, timer, progress)
        else:
            moments = self._trimmed(videos, q, options, stats, timer, progress, tokens)
        moments.sort(key=lambda m: -m["score"])
        if options.min_score is not None:
            moments = [m for m in moments if m["score"] >= options.min_score]
        results = [dict(rank=i + 1, **m, copies=copies.get(m["video_id"], []))
                   for i, m in enumerate(moments[:options.top_k])]
        shown = {r["video"] for r in results}
        for key in ("changed", "read_again"):
            said = [c for c in stats.pop(key, []) if c["video"] in shown]
            if said:  # kept, as export keeps them: said only of the videos results are in
                stats[key] = said
        stats["seconds"] = round(time.perf_counter() - started, 3)
        stats["time"] = timer.rounded()
        search_id = None
        if log:
            try:
                search_id = self.library.catalog.log_search(text, self.info["name"], asdict(options), stats,
                                                            results)
            except NotLogged as exc:  # disk full, catalog busy: the results stand, unlogged
                stats["not_logged"] = str(exc)
        for r in results:
            r.pop("video_id", None)
        return {"query": text, "search_id": search_id, "results": results, "stats": stats}

    # -- step 1: candidate videos ------------------------------------------------------------
    def _candidates(self, q: torch.Tensor, options: SearchOptions) -> tuple[list[dict], dict[int, list[str]]]:
        """The candidate videos, and {video id: the paths of its copies}: videos of one content
        are one candidate, so a moment is shown once and a library's copies do not crowd other
        videos out of the candidates.  One content: the same size and fingerprint (first and last
        256 KiB) and the same stored vectors, read only for rows that share a fingerprint (two
        files that differ between their first and last 256 KiB, which 'vmr index' embedded each
        as itself, were one candidate, and the moments of one of them were never shown)."""
        catalog = self.library.catalog
        if options.only_video is not None:
            video = catalog.video_by_path(options.only_video)
            if video is None or video["status"] != "ok":
                raise VmrError(f"video not in the library: {options.only_video}")
            return [video], {video["id"]: copies_of(self.library, video)}
        ok = everything = catalog.videos("ok")
        if options.within:  # only theirs are candidates, and a content is shown under a copy inside
            roots = catalog.roots()
            prefixes = [p for path in options.within for p in library_names(path, roots, catalog.holds_under)]
            ok = [v for v in ok if any(under(v["path"], p) for p in prefixes)]
        groups: dict = {}  # fingerprint -> its rows, first indexed first
        for v in everything:  # a copy outside --in is still listed with the one shown (and logged)
            groups.setdefault(print_of(v), []).append(v)
        inside = {v["id"] for v in ok}
        known: dict[int, list] = {}  # id -> the rows of its content, the one shown first

        def content(video) -> list:
            if video["id"] not in known:
                rows = groups.get(print_of(video), [video])
                known.update(contents(rows, self.library.vectors) if len(rows) > 1 else {video["id"]: rows})
            return known[video["id"]]

        def shown(video) -> int:  # the id its content is shown under: its first row inside --in
            return next(r["id"] for r in content(video) if r["id"] in inside)

        by_id = {v["id"]: v for v in ok}
        if len(ok) <= options.max_videos:
            candidate_ids = [v["id"] for v in ok if shown(v) == v["id"]]
        else:
            # The best k clips, k grown until they hold max_videos videos: a few long videos
            # can fill the first k (two 10-minute videos left 9 of 12 asked for).
            # With --in, only the clips of the videos inside are looked among (taking the library's
            # best and dropping the others grew k to every clip of a large library).
            among = catalog.clip_ids_of_videos(inside) if options.within else None
            k = max(256, 32 * options.max_videos)
            total = len(among) if among is not None else self.library.vectors.count(self.info["dim"])
            while True:
                scores, clip_ids = self.library.vectors.search(self.info["dim"], q.numpy(), k, among)
                owners = catalog.clip_video_ids(clip_ids.tolist())
                candidate_ids = []
                for cid in clip_ids.tolist():  # already best first
                    owner = by_id.get(owners.get(cid))
                    vid = shown(owner) if owner is not None else None
                    if vid is not None and vid not in candidate_ids:
                        candidate_ids.append(vid)
                    if len(candidate_ids) == options.max_videos:
                        break
                if len(candidate_ids) == options.max_videos or k >= total:
                    break
                k *= 4
        chosen = [by_id[i] for i in candidate_ids if i in by_id]
        return chosen, {v["id"]: others(content(v), v) for v in chosen}

    # -- step 2: the stored timeline of each candidate ---------------------------------------------
    def _stored(self, video: dict, q: torch.Tensor, stats: dict):
        """The video with its stored timeline scored against q, or None when it must be skipped."""
        try:
            video, clips, shard, st = self._stored_vectors(video)
        except SkipVideo as exc:
            stats.setdefault("skipped", []).append({"video": video["path"], "error": str(exc)})
            return None
        if misread_by_older_vmr(video, st.st_size):  # unchanged, but its vectors are of the wrong times
            stats.setdefault("read_again", []).append({"video": video["path"], "reason": MISREAD_BY_OLDER_VMR})
        elif (st.st_size, st.st_mtime_ns) != (video["size"], video["mtime_ns"]):  # its moments may be elsewhere now
            stats.setdefault("changed", []).append({
                "video": video["path"], "reason": "changed since it was indexed (its size or time differ), so its "
                "moments may lie elsewhere or past its end now; 'vmr index' updates it"})
        stats["videos_considered"] += 1
        v = stored_timeline(video, clips, shard, q, self.info["clip_seconds"])
        stats["frames_stored"] += len(v.times)
        if self.trimmer is not None:  # its inputs come from the same shard, read once
            from .features import clip_features

            v.features = clip_features(shard, clips, self.trimmer.drop)
        return v

    def _stored_vectors(self, video: dict):
        """(row, clip rows, shard, the file's os.stat) of the video; SkipVideo when they are gone
        or the file is.

        A ``vmr index`` running beside the search may re-index the video between the moment
        its row was read and its shard: the video then has a new row (a new id, see
        ``Library.put_video``) and the old shard is deleted.  Its row is read again, once, by
        path, so the search uses the new vectors instead of skipping the video (or says it was
        removed, or why its new version could not be indexed)."""
        found = self._shard_and_clips(video)
        if found is None:
            now = self.library.catalog.video_by_path(video["path"])
            if now is None:
                raise SkipVideo("removed from the library while this search ran")
            if now["status"] == "failed":  # 'vmr index' would fail the same way: say why instead
                raise SkipVideo(f"could not be indexed again while this search ran: {now['error']}")
            if now["status"] == "ok" and (now["id"], now["vectors_token"]) != (video["id"], video["vectors_token"]):
                video, found = now, self._shard_and_clips(now)
        if found is None:
            raise SkipVideo("vectors missing; run 'vmr index' to repair")
        shard, clips = found
        try:
            st = os.stat(video["path"])
        except FileNotFoundError:
            raise SkipVideo(f"file no longer exists: {video['path']}") from None
        except OSError as exc:  # a folder on the way that cannot be entered, a dropped share
            raise SkipVideo(_unreadable(exc)) from None
        return video, clips, shard, st

    def _shard_and_clips(self, video: dict):
        """(shard, clip rows) of the row, or None when its shard is gone or does not match them."""
        shard = self.library.vectors.read_shard(video["id"], video["vectors_token"])
        clips = self.library.catalog.clips(video["id"])
        if shard is None or len(shard["clip_ids"]) != len(clips):
            return None
        return shard, clips

    # -- trimmed: windows on the stored timeline, edges refined with a few dense frames -------------
    def _trimmed(self, videos, q, options: SearchOptions, stats: dict, timer: Timer, progress,
                 tokens=None) -> list[dict]:
        windows = []
        with timer("moment_head"):
            for v in videos:
                if self.trimmer is not None:
                    kept = trimmer_moments(v, self.trimmer.windows(v.features, q, options.per_video, tokens),
                                           options.per_video)
                else:
                    kept = v.kept(v.proposals(v.times, v.sims, v.step, options.per_video), options.per_video)
                windows += [(v, start, end, score) for start, end, score in kept]
        windows.sort(key=lambda w: -w[3])
        if options.record_selection:
            for v in videos:
                spans = [(s, e) for w, s, e, _ in windows if w is v]
                stats.setdefault("selections", {})[v.path] = [
                    [c["start"], c["end"]] for c in v.clips if any(c["start"] < e and c["end"] > s for s, e in spans)]
        best = windows[:options.refine]
        refined = {}
        from .progress import progress as bar_for

        bar = bar_for(len(best), "refining", "moment", enabled=progress)
        for v in dict.fromkeys(w[0] for w in best):
            mine = [(w, _edges(w, options.refine_fps)) for w in best if w[0] is v]
            times = sorted({x for _w, edges in mine for edge in edges for x in edge[-1]})
            try:
                with _FrameSource(self.frame_cache, v, self.encoder, self._decoder, q, stats, timer) as frames:
                    sims = dict(zip(times, frames.similarities(times))) if times else {}
            except UNREADABLE as exc:  # broke or unreadable since indexing: its stored windows
                # stand, with their edges unrefined (not "skipped": its moments are in the results)
                stop_if_interrupted()  # (or a Ctrl-C that native code made a decode error)
                stats.setdefault("unrefined", []).append({"video": v.path, "error": _unreadable(exc)})
                continue
            for w, edges in mine:
                stats["clips_verified"] += len(edges)
                refined[id(w)] = _at_least(_refined(w, edges, sims), v.min_moment, v.duration)
                bar.update(1)
        bar.close()
        out, taken = [], {}
        for w in windows:  # best first: a window its refined edges moved onto a better one's goes
            v, start, end, score = w
            start, end = refined.get(id(w), (start, end))
            if any(temporal_iou((start, end), span) > 0.5 for span in taken.get(id(v), ())):
                continue
            taken.setdefault(id(v), []).append((start, end))
            out += _moment(v, start, end, score)
        return out

    # -- exhaustive: the fine grid over every clip ---------------------------------------------------
    def _exhaustive(self, videos, q, options: SearchOptions, stats: dict, timer: Timer, progress) -> list[dict]:
        from .progress import progress as bar_for

        out = []
        bar = bar_for(len(videos), "verifying", "video", enabled=progress)
        for v in videos:
            times = [t for c in v.clips for t in dense_grid(c["start"], c["end"], options.dense_fps)]
            times = times or [v.duration / 2]  # shorter than the grid's first point (one frame, 0.1 s)
            try:
                with _FrameSource(self.frame_cache, v, self.encoder, self._decoder, q, stats, timer) as frames:
                    sims = frames.similarities(times)
            except UNREADABLE as exc:
                stop_if_interrupted()  # (a Ctrl-C that native code made a decode error: not this video's)
                stats.setdefault("skipped", []).append({"video": v.path, "error": _unreadable(exc)})
                continue
            stats["clips_verified"] += len(v.clips)
            with timer("moment_head"):
                found = v.proposals(times, sims, 1.0 / options.dense_fps, options.per_video)
            for start, end, score in v.kept(found, options.per_video):
                out += _moment(v, start, end, score)
            bar.update(1)
        bar.close()
        return out


def stored_timeline(row: dict, clips: list[dict], shard: dict, q: torch.Tensor, clip_seconds: float) -> "_Video":
    """The video's stored frames scored against q: what search reads instead of decoding."""
    if "F" in shard and len(shard["F"]) == len(shard["F_t"]):
        times = np.asarray(shard["F_t"], dtype=np.float64)
        sims = np.asarray(shard["F"], dtype=np.float32) @ q.numpy()
    else:  # a shard from before frames were stored: the middle frames only
        times = np.array([(c["start"] + c["end"]) / 2 for c in clips], dtype=np.float64)
        sims = np.asarray(shard["A"], dtype=np.float32) @ q.numpy()
    step = clip_seconds / (2 if "F" in shard else 1)
    return _Video(row, clips, times, sims.astype(np.float64), step)


def trimmer_moments(v: "_Video", windows, limit: int) -> list[tuple[float, float, float]]:
    """A trained trimmer's windows of v as search ranks them: edges and score from the stored
    timeline (_snapped), then widened and de-nested like any moment (_Video.kept)."""
    snapped = (_snapped(v, w) for w in windows)
    return v.kept([w for w in snapped if w is not None], limit)


class _Video:
    """A candidate video with its stored timeline: frame times and their query similarity."""

    def __init__(self, row: dict, clips: list[dict], times: np.ndarray, sims: np.ndarray, step: float):
        self.row, self.clips, self.times, self.sims, self.step = row, clips, times, sims, step
        self.features: dict | None = None  # the trained trimmer's inputs, when one is used
        self.path, self.duration = row["path"], float(row["duration"])
        finite = sims[np.isfinite(sims)]  # (a frame the encoder overflowed on is none: see propose_moments)
        self.baseline = float(np.median(finite)) if finite.size else 0.0  # the video's background level
        self.min_moment = min(MIN_MOMENT, self.duration)

    def proposals(self, times, sims, step: float, top_k: int) -> list[tuple[float, float, float]]:
        """The parameter-free moment head over frames of this video (stored or dense), judged
        against the video's background level and bounded by its duration.

        A moment needs at least two frames: on the 1-per-second stored timeline one frame that
        happens to match (a passing object, a lucky pose) would otherwise score as high as a
        whole event (R1@0.5 on the synthetic benchmark, seeds 0/1/2: moment retrieval
        82.2/87.2/73.9 -> 84.4/87.2/73.9, corpus 51.1/55.3/52.2 -> 53.3/57.4/52.2).  Only
        where no run of two frames exists (a very short video) does one frame do, so frames
        given always yield a window."""
        from vmr_models.moment_head import propose_moments

        def propose(min_frames):
            return propose_moments(torch.as_tensor(times), torch.as_tensor(sims), step, top_k=top_k,
                                   baseline=self.baseline, duration=self.duration, alpha=CONTRAST,
                                   min_frames=min_frames)

        return propose(MIN_FRAMES) or propose(1)

    def kept(self, windows, limit: int) -> list[tuple[float, float, float]]:
        """Windows widened to the shortest moment a person keeps, then none nested in another."""
        from vmr_models.moment_head import nms

        widened = [(*_at_least((s, e), self.min_moment, self.duration), score) for s, e, score in windows]
        return nms(widened, 0.5, limit=limit)


def _snapped(v, window) -> tuple[float, float, float] | None:
    """A trained trimmer's window (clip edges, 2 s apart), its edges set by the stored timeline
    (None where none of its frames has a finite score).

    The network says where the moment is; inside its window the parameter-free head finds the
    run of frames that stands out, at the timeline's resolution (R1@0.5 71 -> 82 on the seed-0
    synthetic benchmark), and scores it: the timeline's score is comparable across videos,
    the network's is not (corpus R1@0.5 18 with it alone); with the network's score mixed in
    (times its square root, its fourth root, itself) the trimmer of README's table was as bad
    or worse on synthetic seeds 0, 1 and 2 (README, "The trained trimmer, measured")."""
    start, end, _network = window
    finite = np.isfinite(v.sims)  # a frame the encoder overflowed on counts as not decoded (propose_moments)
    inside = (v.times >= start) & (v.times <= end)
    if inside.any() and not (inside & finite).any():
        return None  # every frame of the window is such a frame: nothing tells how well it matches
    inside &= finite
    if inside.sum() < 2:  # a shard from before frames were stored: one middle frame a clip
        distance = np.where(finite, np.abs(v.times - (start + end) / 2), np.inf)
        near = inside if inside.any() else np.argmin(distance)
        if not finite[near].any():
            return None
        return start, end, float(np.max(v.sims[near]))
    (start, end, level), = v.proposals(v.times[inside], v.sims[inside], v.step, 1)
    return start, end, level


def dense_grid(start: float, end: float, fps: float) -> list[float]:
    """Times of the fine grid (k + 0.5) / fps inside [start, end): the same grid in every search,
    so the frame cache can match frames by time."""
    first = math.ceil(start * fps - 0.5 - 1e-9)
    times = []
    k = first
    while (k + 0.5) / fps < end - 1e-9:
        if (k + 0.5) / fps >= start - 1e-9:
            times.append((k + 0.5) / fps)
        k += 1
    return times


def _edges(window, fps: float) -> list[tuple]:
    """The edges of a window that can move: (side, t_out, s_out, t_in, s_in, inside level, fine-grid
    times strictly between the stored frame outside and the first (last) stored frame inside).

    The grid is 2 fps (SearchOptions.refine_fps): two frames between stored frames a second
    apart, an edge placed to a quarter second.  4 fps gave the same R1@0.5 and R1@0.7 on the
    synthetic benchmark's seeds 0, 1 and 2 (mIoU 0.2-0.7 points higher) for twice the frames,
    which with a ViT-B/32 on a CPU is most of a first search's own cost (bench/RESULTS.md)."""
    v, start, end, _score = window
    t, s = v.times, v.sims
    inside = (t >= start) & (t <= end)
    if not inside.any():
        return []
    first, last = int(np.argmax(inside)), len(t) - 1 - int(np.argmax(inside[::-1]))
    finite = np.isfinite(s)  # a frame the encoder overflowed on has no score (propose_moments)
    scored = s[first:last + 1][finite[first:last + 1]]
    if not scored.size:
        return []
    level = float(scored.mean())
    edges = []
    for side, out, into in (("start", first - 1, first), ("end", last + 1, last)):
        if 0 <= out < len(t) and finite[out] and finite[into]:  # else nothing to cut between
            lo, hi = sorted((t[out], t[into]))
            between = [x for x in dense_grid(lo, hi, fps) if lo + 1e-9 < x < hi - 1e-9]
            if between:
                edges.append((side, t[out], s[out], t[into], s[into], level, between))
    return edges


def _refined(window, edges, sims: dict) -> tuple[float, float]:
    """The window with each edge moved to where the fine-grid similarity crosses over.

    Between the stored frame outside and the one inside, the cut is put where it best
    separates the two: it maximises the summed margin, over (outside + inside level) / 2,
    of the samples on the inside of the cut."""
    _v, start, end, _score = window
    for side, t_out, s_out, t_in, s_in, level, between in edges:
        xs = [t_out] + (between if side == "start" else between[::-1]) + [t_in]  # outside -> inside
        ys = [s_out] + [sims[x] for x in xs[1:-1]] + [s_in]
        threshold = (s_out + level) / 2
        margins = [y - threshold for y in ys]
        best, cut = -math.inf, 1
        for c in range(1, len(xs)):  # samples [c:] are inside; the stored ones keep their side
            value = sum(margins[c:])
            if value > best:
                best, cut = value, c
        edge = (xs[cut - 1] + xs[cut]) / 2
        if side == "start":
            start = edge
        else:
            end = edge
    return start, end


def _at_least(window: tuple[float, float], length: float, duration: float) -> tuple[float, float]:
    """The window, cut to the video, widened evenly around its centre to ``length`` seconds
    inside it.  (A window can reach half a frame step past the end; measured before the cut, a
    0.82 s moment at the end of a 9.32 s video passed as long enough.)"""
    start, end = max(0.0, window[0]), min(duration, window[1])
    if end - start >= length:
        return start, end
    centre = min(max((start + end) / 2, length / 2), duration - length / 2)
    return centre - length / 2, centre + length / 2


def _moment(v: _Video, start: float, end: float, score: float) -> list[dict]:
    start, end = max(0.0, float(start)), min(v.duration, float(end))
    if end - start <= 1e-3:
        return []
    return [{"video": v.path, "video_id": v.row["id"], "start": round(start, 3), "end": round(end, 3),
             "score": round(float(score), 4)}]


# What reading a candidate's frames raises when the file broke or cannot be read since it was
# indexed: the decoders open the file at its first frame, and PyAV (torchcodec's fallback) says
# a file gone or denied with TransientError, which ended the whole search.
UNREADABLE = (DecodeError, TransientError, OSError)


def _unreadable(exc: Exception) -> str:
    """Why a candidate's frames could not be read: the decoder's reason, or the system's (also
    behind a TransientError, which names the path the result already shows)."""
    system = exc.__context__ if isinstance(exc, TransientError) else exc
    if isinstance(system, OSError) and system.strerror:
        return f"cannot read the file: {system.strerror}"
    return str(exc)


class _FrameSource:
    """Embeddings of a video's frames at fine-grid times: from the frame cache where it has
    them, else decoded and encoded (then cached).  Each frame is counted once, here."""

    def __init__(self, cache, video: _Video, encoder, decoder, q: torch.Tensor, stats: dict,
                 timer: Timer):
        """``decoder(stats)``: the backend name, asked only when a frame must be decoded."""
        self.cache, self.video, self.encoder, self.decoder = cache, video, encoder, decoder
        self.q, self.stats, self.timer = q.float(), stats, timer
        self.reader = None

    def __enter__(self):
        return self

    def similarities(self, times: list[float]) -> list[float]:
        """Query similarity of the frames at times."""
        return (self.embeddings(times) @ self.q).tolist()

    def embeddings(self, times: list[float]) -> torch.Tensor:
        row = self.video.row
        keys = [int(round(t * 1000)) for t in times]
        cache = self.cache
        found = cache.get(row["id"], row["vectors_token"], keys, self.encoder.dim) if cache else {}
        missing = [t for t, k in zip(times, keys) if k not in found]
        self.stats["frames_cached"] += len(times) - len(missing)
        fresh = {}
        for at in range(0, len(missing), ENCODE_BATCH):
            part = missing[at:at + ENCODE_BATCH]
            with self.timer("decode"):
                pixels = self._reader().frames_at(part)
            with self.timer("encode"):
                encoded = self.encoder.encode_images(pixels)
            self.stats["frames_decoded"] += len(part)
            self.stats["frames_encoded"] += len(part)
            # Kept as the cache keeps them (float16), so a search gives the same answer whether
            # its frames were just encoded or came from the cache.
            fresh.update({int(round(t * 1000)): e.numpy().astype(np.float16) for t, e in zip(part, encoded)})
        if fresh and cache:
            cache.put(row["id"], row["vectors_token"], fresh)
        return torch.from_numpy(np.stack([
            np.asarray(found[k] if k in found else fresh[k], dtype=np.float32) for k in keys]))

    def _reader(self):
        if self.reader is None:
            row = self.video.row
            info = VideoInfo(duration=row["duration"], fps=row["fps"] or 0.0, width=row["width"],
                             height=row["height"], rotation=row["rotation"] or 0, codec=row.get("codec") or "")
            self.reader = open_reader(row["path"], info, self.encoder.image_size, backend=self.decoder(self.stats))
        return self.reader

    def __exit__(self, *exc):
        if self.reader is not None:
            if self.reader.fallback:
                self.stats.setdefault("fallbacks", []).append({"video": self.video.path,
                                                               "reason": self.reader.fallback})
            self.reader.close()
        return False
