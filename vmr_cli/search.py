"""``vmr search``: query -> candidate videos -> trimmed clip selection -> moments.

1. The query is encoded once; FAISS finds the clips whose appearance vector is
   nearest, and their videos become the candidates.
2. Per candidate, every clip gets a prior score from its stored Background,
   Appearance and Motion vectors (no decoding).  Recursive selection verifies
   the best few clips with dense frames, grows toward neighbours of clips that
   verified well and drops the rest (``exhaustive`` verifies every clip).
3. The moment head turns the dense frame scores of the verified clips into
   windows at frame resolution; scores share one scale across videos.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .decode import open_reader
from .errors import DecodeError, SkipVideo, VmrError
from .probe import VideoInfo

MAX_QUERY_CHARS = 2000


@dataclass
class SearchOptions:
    top_k: int = 10
    exhaustive: bool = False
    min_score: float | None = None   # None: keep everything
    max_videos: int = 10             # candidate videos verified per query
    dense_fps: float = 4.0           # frames per second decoded inside verified clips
    initial: int = 8                 # clips verified in the first selection step
    max_steps: int = 4
    max_clips: int | None = None     # verification budget per video
    per_video: int = 5               # moments kept per video before the global ranking
    only_video: str | None = None    # restrict to one video (moment retrieval in eval)
    record_selection: bool = False   # stats["selections"]: the clips finally selected, per video


def clean_query(query: str) -> str:
    """One line of printable text; a clear error for an empty query."""
    text = "".join(ch if ch.isprintable() else " " for ch in query)
    text = " ".join(text.split())
    if not text:
        raise VmrError("the query is empty; say what happens, e.g. vmr search \"person opens the door\"")
    return text[:MAX_QUERY_CHARS]


class Searcher:
    """Holds the encoder so that many queries (eval, benchmarks) share one load."""

    def __init__(self, library, encoder=None, backend: str = "torchcodec"):
        from .encoders import ClipEncoder

        self.library = library
        self.info = library.require_encoder()
        self.encoder = encoder or ClipEncoder(self.info["name"])
        if self.encoder.name != self.info["name"] or self.encoder.dim != self.info["dim"]:
            raise VmrError(f"library was built with encoder '{self.info['name']}', not "
                           f"'{self.encoder.name}'; search with the same model, or rebuild the library")
        self.backend = backend
        # Repairs the FAISS cache in memory only: a search never writes the library,
        # so it is safe beside a running index (which repairs and saves for real).
        library.check(repair=True, save=False)

    def search(self, query: str, options: SearchOptions | None = None, log: bool = True) -> dict:
        options = options or SearchOptions()
        started = time.time()
        text = clean_query(query)
        q = self.encoder.encode_text([text])[0]
        stats = {"videos_considered": 0, "clips_verified": 0, "frames_decoded": 0,
                 "frames_encoded": 0, "seconds": 0.0}
        moments = []
        for video in self._candidates(q, options):
            try:
                found = self._search_video(video, q, options, stats)
            except (SkipVideo, DecodeError) as exc:
                # A file that moved or broke since indexing must not end the search.
                stats.setdefault("skipped", []).append({"video": video["path"], "error": str(exc)})
                continue
            moments += found
        moments.sort(key=lambda m: -m["score"])
        if options.min_score is not None:
            moments = [m for m in moments if m["score"] >= options.min_score]
        results = [dict(rank=i + 1, **m) for i, m in enumerate(moments[:options.top_k])]
        stats["seconds"] = round(time.time() - started, 3)
        search_id = None
        if log:
            search_id = self.library.catalog.log_search(text, self.info["name"], asdict(options), stats, results)
        for r in results:
            r.pop("video_id", None)
        return {"query": text, "search_id": search_id, "results": results, "stats": stats}

    # -- step 1: candidate videos ------------------------------------------------------------
    def _candidates(self, q: torch.Tensor, options: SearchOptions) -> list[dict]:
        catalog = self.library.catalog
        if options.only_video is not None:
            video = catalog.video_by_path(options.only_video)
            if video is None or video["status"] != "ok":
                raise VmrError(f"video not in the library: {options.only_video}")
            return [video]
        ok = catalog.videos("ok")
        if len(ok) <= options.max_videos:
            candidate_ids = [v["id"] for v in ok]
        else:
            k = max(256, 32 * options.max_videos)
            scores, clip_ids = self.library.vectors.search(self.info["dim"], q.numpy(), k)
            owners = catalog.clip_video_ids(clip_ids.tolist())
            candidate_ids = []
            for cid in clip_ids.tolist():  # already best first
                vid = owners.get(cid)
                if vid is not None and vid not in candidate_ids:
                    candidate_ids.append(vid)
                if len(candidate_ids) == options.max_videos:
                    break
        by_id = {v["id"]: v for v in ok}
        return [by_id[i] for i in candidate_ids if i in by_id]

    # -- steps 2 and 3: one video ---------------------------------------------------------------
    def _search_video(self, video: dict, q: torch.Tensor, options: SearchOptions, stats: dict) -> list[dict]:
        clips, shard = self._stored_vectors(video)
        stats["videos_considered"] += 1
        verifier = _FrameVerifier(video, clips, q, self.encoder, options.dense_fps, self.backend, stats)
        try:
            selection = self._select(clips, shard, q, options, verifier)
        finally:
            verifier.close()
        stats["clips_verified"] += len(selection.verified)
        if options.record_selection:
            stats.setdefault("selections", {})[video["path"]] = [
                [clips[i]["start"], clips[i]["end"]] for i in selection.selected]
        baseline = float((torch.from_numpy(np.asarray(shard["A"])) @ q).median())  # no decoding
        return self._moments(video, verifier, baseline, options)

    def _stored_vectors(self, video: dict):
        """The video's clip rows and shard; SkipVideo when they are gone or the file is."""
        shard = self.library.vectors.read_shard(video["id"], video["vectors_token"])
        clips = self.library.catalog.clips(video["id"])
        if shard is None or len(shard["clip_ids"]) != len(clips):
            raise SkipVideo("vectors missing; run 'vmr index' to repair")
        if not os.path.exists(video["path"]):
            raise SkipVideo(f"file no longer exists: {video['path']}")
        return clips, shard

    @staticmethod
    def _select(clips, shard, q, options: SearchOptions, verifier):
        """Which clips to verify: all of them (exhaustive), or the paper's recursive selection
        driven by the prior from the stored B, A and M vectors."""
        from vmr_models.fusion import clip_scores
        from vmr_models.selection import exhaustive, select_clips

        if options.exhaustive:
            return exhaustive(len(clips), verifier, chunk=64)
        stored = lambda key: torch.from_numpy(np.asarray(shard[key]))  # noqa: E731
        motion = torch.tensor([c["motion"] or 0.0 for c in clips])
        prior = clip_scores(q, stored("A"), stored("B"), stored("M"), motion)
        return select_clips(prior, verifier, initial=options.initial, max_steps=options.max_steps,
                            max_clips=options.max_clips)

    @staticmethod
    def _moments(video: dict, verifier, baseline: float, options: SearchOptions) -> list[dict]:
        """The moment head over the verified frames, clipped to the video."""
        from vmr_models.moment_head import propose_moments

        if not verifier.times:
            return []
        proposals = propose_moments(torch.tensor(verifier.times), torch.tensor(verifier.scores),
                                    1.0 / options.dense_fps, top_k=options.per_video, baseline=baseline,
                                    duration=float(video["duration"]))
        out = []
        for start, end, score in proposals:
            start, end = max(0.0, float(start)), min(float(video["duration"]), float(end))
            if end - start <= 1e-3:
                continue
            out.append({"video": video["path"], "video_id": video["id"], "start": round(start, 3),
                        "end": round(end, 3), "score": round(float(score), 4)})
        return out


class _FrameVerifier:
    """Verifies clips: decodes frames at ``dense_fps`` inside them, encodes them, and keeps
    every frame's time and query similarity for the moment head.  Each frame is counted
    once, here."""

    def __init__(self, video, clips, q, encoder, dense_fps: float, backend: str, stats: dict):
        info = VideoInfo(duration=video["duration"], fps=video["fps"] or 0.0, width=video["width"],
                         height=video["height"], rotation=video["rotation"] or 0, codec=video.get("codec") or "")
        self.reader = open_reader(video["path"], info, encoder.image_size, backend=backend)
        self.video, self.clips, self.q, self.encoder = video, clips, q, encoder
        self.dense_fps, self.stats = dense_fps, stats
        self.times: list[float] = []
        self.scores: list[float] = []

    def __call__(self, indices: list[int]) -> torch.Tensor:
        times, owner = self._frame_times(indices)
        frames = self.reader.frames_at(times)
        sims = (self.encoder.encode_images(frames) @ self.q).tolist()
        self.stats["frames_decoded"] += len(times)
        self.stats["frames_encoded"] += len(times)
        self.times.extend(times)
        self.scores.extend(sims)
        best = [-1.0] * len(indices)
        for j, s in zip(owner, sims):
            best[j] = max(best[j], s)
        return torch.tensor(best)

    def _frame_times(self, indices: list[int]) -> tuple[list[float], list[int]]:
        """Frame centres at dense_fps inside each clip, and which of ``indices`` owns each."""
        step = 1.0 / self.dense_fps
        times, owner = [], []
        for j, idx in enumerate(indices):
            clip = self.clips[idx]
            n = max(1, math.ceil((clip["end"] - clip["start"]) * self.dense_fps - 1e-6))
            for f in range(n):
                t = clip["start"] + (f + 0.5) * step
                if t < clip["end"]:
                    times.append(t)
                    owner.append(j)
        return times, owner

    def close(self) -> None:
        if self.reader.fallback:
            self.stats.setdefault("fallbacks", []).append({"video": self.video["path"],
                                                           "reason": self.reader.fallback})
        self.reader.close()
