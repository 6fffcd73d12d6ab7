"""Frames of a video at chosen timestamps, scaled early to the encoder's size.

torchcodec is the default: it samples by presentation time, which is exact on
variable frame rate and open-GOP files, and scales inside the decoder (resize
of the shortest side, centre crop) so full-resolution frames never reach
Python; rotation metadata is honoured.  A file it cannot read is retried with
one sequential PyAV pass.  decord is optional (``--backend decord``): faster to
install on some platforms, but it returned wrong frames on open-GOP HEVC here.
"""

from __future__ import annotations

import torch

from .errors import DecodeError
from .frames import resize_center_crop
from .probe import VideoInfo

BACKENDS = ("torchcodec", "pyav", "decord")
# Codecs whose timestamps random access gets wrong: measured here, torchcodec returned the frame
# 0.5-1 s after the requested one on an MPEG-1 program stream (start offset 0.54 s), with no error.
SEQUENTIAL_ONLY = frozenset({"mpeg1video", "mpeg2video"})


def frame_times(times, info: VideoInfo) -> list[float]:
    """Timestamps clamped inside the stream, so the last clip's last frame exists."""
    last = max(0.0, info.duration - max(1.0 / (info.fps or 30.0), 1e-3))
    return [min(max(0.0, float(t)), last) for t in times]


class VideoReader:
    """Opens one file once; ``frames_at`` may be called many times, in any order."""

    def __init__(self, path: str, info: VideoInfo, size: int, backend: str = "torchcodec"):
        self.path, self.info, self.size = path, info, size
        if backend != "pyav" and info.codec in SEQUENTIAL_ONLY:
            backend = "pyav"  # one sequential pass is the only exact decode of these
        self.backend = backend
        self.frames_decoded = 0
        self._decoder = None
        self._av_state = None

    def frames_at(self, times) -> torch.Tensor:
        """uint8 (N, 3, size, size): for each time, the frame being shown at that moment."""
        times = frame_times(times, self.info)
        if not times:
            return torch.zeros((0, 3, self.size, self.size), dtype=torch.uint8)
        if self.backend == "torchcodec":
            try:
                frames = self._torchcodec(times)
            except (RuntimeError, ValueError, IndexError):
                self.backend, self._decoder = "pyav", None  # sequential decode from now on
                frames = self._pyav(times)
        elif self.backend == "decord":
            frames = self._decord(times)
        else:
            frames = self._pyav(times)
        self.frames_decoded += len(times)
        return frames

    # -- torchcodec -----------------------------------------------------------------
    def _torchcodec(self, times):
        if self._decoder is None:
            from torchcodec.decoders import VideoDecoder
            from torchcodec.transforms import CenterCrop, Resize

            w, h = self.info.width, self.info.height
            scale = self.size / min(w, h)
            resized = (max(self.size, round(h * scale)), max(self.size, round(w * scale)))
            self._decoder = VideoDecoder(self.path, num_ffmpeg_threads=0,
                                         transforms=[Resize(resized), CenterCrop((self.size, self.size))])
            meta = self._decoder.metadata
            self._begin = float(meta.begin_stream_seconds or 0.0)
            self._end = float(meta.end_stream_seconds or self.info.duration)
        order = sorted(range(len(times)), key=times.__getitem__)
        eps = 1e-4
        clamped = [min(max(times[i] + self._begin, self._begin), self._end - eps) for i in order]
        batch = self._decoder.get_frames_played_at(clamped).data
        out = torch.empty_like(batch)
        out[torch.tensor(order)] = batch
        return out

    # -- PyAV, sequential -----------------------------------------------------------
    def _pyav(self, times):
        """Sequential decode: for each wanted time, the last frame shown at or before it.

        The decoder stays open between calls and only moves forward, so the
        chunks of an index run cost one pass over the file; a request for an
        earlier time starts a new pass.
        """
        import av

        order = sorted(range(len(times)), key=times.__getitem__)
        wanted = [times[i] for i in order]
        state = self._av_state
        if state is None or wanted[0] < state["shown_t"]:
            state = self._av_open()
        picked: list[torch.Tensor | None] = [None] * len(times)
        try:
            for pos, t in enumerate(wanted):
                while state["next"] is not None and state["next_t"] <= t:
                    state["shown"], state["shown_t"] = state["next"], state["next_t"]
                    state["next"], state["next_t"] = self._av_next(state)
                shown = state["shown"] if state["shown"] is not None else state["next"]
                if shown is None:
                    break
                if state["converted"] is None or state["converted"][0] is not shown:
                    state["converted"] = (shown, self._convert(shown))
                picked[order[pos]] = state["converted"][1]
        except av.error.FFmpegError as exc:
            raise DecodeError(f"cannot decode: {exc}") from None
        if any(p is None for p in picked):
            raise DecodeError("no frames could be decoded")
        return torch.stack(picked)  # type: ignore[arg-type]

    def _av_open(self) -> dict:
        import av

        self.close()
        try:
            container = av.open(self.path)
            stream = container.streams.video[0]
        except (av.error.FFmpegError, IndexError) as exc:
            raise DecodeError(f"cannot decode: {exc}") from None
        stream.thread_type = "AUTO"
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        state = {"container": container, "frames": container.decode(stream), "base": stream.time_base,
                 "start": start, "shown": None, "shown_t": float("-inf"), "converted": None}
        state["next"], state["next_t"] = self._av_next(state)
        self._av_state = state
        return state

    @staticmethod
    def _av_next(state):
        for frame in state["frames"]:
            if frame.pts is not None:
                return frame, float(frame.pts * state["base"]) - state["start"]
        return None, float("inf")

    def close(self) -> None:
        """Release a sequential decoder held between calls."""
        state, self._av_state = getattr(self, "_av_state", None), None
        if state is not None:
            state["container"].close()

    def _convert(self, frame) -> torch.Tensor:
        array = frame.to_ndarray(format="rgb24")
        tensor = torch.from_numpy(array).permute(2, 0, 1)
        rotation = self.info.rotation % 360
        if rotation:
            # Display matrix rotation is counter-clockwise; rot90 with k>0 turns the same way.
            tensor = torch.rot90(tensor, k=rotation // 90, dims=(1, 2))
        return resize_center_crop(tensor[None], self.size)[0]

    # -- decord (optional) -------------------------------------------------------------
    def _decord(self, times):
        try:
            import decord
        except ImportError:
            raise DecodeError("decord is not installed: pip install 'vmr[decord]'") from None
        if self._decoder is None:
            self._decoder = decord.VideoReader(self.path, ctx=decord.cpu(0))
        fps = self._decoder.get_avg_fps() or self.info.fps or 30.0
        n = len(self._decoder)
        indices = [min(n - 1, int(t * fps)) for t in times]
        frames = torch.from_numpy(self._decoder.get_batch(indices).asnumpy()).permute(0, 3, 1, 2)
        return resize_center_crop(frames, self.size)
