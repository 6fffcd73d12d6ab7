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


def frame_times(times, info: VideoInfo) -> list[float]:
    """Timestamps clamped inside the stream, so the last clip's last frame exists."""
    last = max(0.0, info.duration - max(1.0 / (info.fps or 30.0), 1e-3))
    return [min(max(0.0, float(t)), last) for t in times]


class VideoReader:
    """Opens one file once; ``frames_at`` may be called many times, in any order."""

    def __init__(self, path: str, info: VideoInfo, size: int, backend: str = "torchcodec"):
        self.path, self.info, self.size = path, info, size
        self.backend = backend
        self.frames_decoded = 0
        self._decoder = None

    def frames_at(self, times) -> torch.Tensor:
        """uint8 (N, 3, size, size): for each time, the frame being shown at that moment."""
        times = frame_times(times, self.info)
        if not times:
            return torch.zeros((0, 3, self.size, self.size), dtype=torch.uint8)
        if self.backend == "torchcodec":
            try:
                frames = self._torchcodec(times)
            except (RuntimeError, ValueError, IndexError) as exc:
                self.backend, self._decoder = "pyav", None  # sequential decode from now on
                self._fallback_reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
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
        """One forward pass; for each wanted time keep the last frame shown at or before it."""
        import av

        order = sorted(range(len(times)), key=times.__getitem__)
        wanted = [times[i] for i in order]
        picked: list[torch.Tensor | None] = [None] * len(times)
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
                pos, previous, converted = 0, None, None
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    t = float(frame.pts * stream.time_base) - start
                    while pos < len(wanted) and wanted[pos] < t:
                        shown = previous if previous is not None else frame
                        if converted is None or converted[0] is not shown:
                            converted = (shown, self._convert(shown))
                        picked[order[pos]] = converted[1]
                        pos += 1
                    if pos >= len(wanted):
                        break
                    previous = frame
                while pos < len(wanted) and previous is not None:
                    if converted is None or converted[0] is not previous:
                        converted = (previous, self._convert(previous))
                    picked[order[pos]] = converted[1]
                    pos += 1
        except av.error.FFmpegError as exc:
            raise DecodeError(f"cannot decode: {exc}") from None
        if any(p is None for p in picked):
            raise DecodeError("no frames could be decoded")
        return torch.stack(picked)  # type: ignore[arg-type]

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
