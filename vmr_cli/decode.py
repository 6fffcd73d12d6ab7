"""Frames of a video at chosen timestamps, scaled early to the encoder's size.

One small interface, ``frames_at(times)`` and ``close()``, with a class per
backend and one factory, ``open_reader``:

- torchcodec (default) samples by presentation time, which is exact on
  variable frame rate and open-GOP files, and scales inside the decoder
  (resize of the shortest side, centre crop), so full-resolution frames never
  reach Python; rotation metadata is honoured.
- PyAV decodes sequentially (seeking only to jump far ahead, and then checking
  where it landed): the exact fallback for a file torchcodec cannot read, and
  the only exact decode of MPEG-1/2 and of MPEG-TS (.ts, .m2ts/.mts from
  camcorders): on those torchcodec returned a frame 0.5-10 s after the
  requested one, the next key frame, with no error.  Its frames are checked
  (their timestamps): a file where it returns such a frame anyway is read by
  PyAV, and the reader says so.  An index of a file only PyAV reads takes its key frames
  from its packets, and decodes those alone where its times are on them (key_frames, expect);
  so does PyAV taking over an index, also of a clip trimmed without re-encoding (BeginsInsideGop).
- decord is optional (``--backend decord``): it returned wrong frames on
  open-GOP HEVC here.

A switch from the chosen backend to PyAV is never silent: the reader's
``fallback`` says why, and index and search report it.

HDR video (a phone's HLG or PQ, BT.2020) is tone-mapped to BT.709 by every reader
(``frames.tone_map``), from the colour transfer the decoder reads from the file when it
opens it, so an index and a search see the same frames; SDR frames are left as decoded.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

from .errors import DecodeError, TransientError, VmrError, first_line
from .probe import VideoInfo, check_duration, is_environment_error

# torch is imported where frames are made, not here: the CLI reads BACKENDS at start-up.

SEQUENTIAL_ONLY = frozenset({"mpeg1video", "mpeg2video"})
# What a backend raises when it cannot read a file, so PyAV reads it instead.  DecodeError (the
# file itself is wrong) is none of these: it passes through every reader to the caller.
BACKEND_FAILURES = (RuntimeError, ValueError, IndexError, OSError)


# seconds: how far before its end a time is kept at most.  A frame of the average rate before the
# end was the clamp: a screen recording holds a still screen without a new frame (4 frames in 65 s,
# 0.06 fps), and every time in its last 16 s got the frame shown 16 s before the end.
END_MARGIN = 0.05


def frame_times(times, info: VideoInfo) -> list[float]:
    """Timestamps clamped inside the stream, so the last clip's last frame exists: a frame of
    the average rate before the end, or END_MARGIN where that is longer (frames come seldom)."""
    last = max(0.0, info.duration - min(max(1.0 / (info.fps or 30.0), 1e-3), END_MARGIN))
    return [min(max(0.0, float(t)), last) for t in times]


class _Reader:
    """Opens one file once; ``frames_at`` may be called many times, in any order."""

    backend = ""
    ends_at: float | None = None  # a stream cut short (a copy or download that stopped): where it ends

    def __init__(self, path: str, info: VideoInfo, size: int, whole: bool = False):
        """``whole``: the caller reads the file in order from its start (an index), so a
        sequential reader never seeks and counts what it cannot decode over the whole file."""
        self.path, self.info, self.size, self.whole = path, info, size, whole

    def frames_at(self, times):
        """uint8 (N, 3, size, size): for each time, the frame being shown at that moment."""
        import torch

        times = frame_times(times, self.info)
        if not times:
            return torch.zeros((0, 3, self.size, self.size), dtype=torch.uint8)
        return self._frames(times)

    def _frames(self, times: list[float]):
        raise NotImplementedError

    def key_frames(self) -> list[tuple[float, float]]:
        """The display intervals [start, end) of the file's key frames, in seconds from the
        stream's start, where the backend knows them cheaply; [] otherwise (then times are
        never moved to key frames)."""
        return []

    def expect(self, times: list[float]) -> None:
        """The times the caller will ask, all of them, in order (an index's, after key_frames):
        a reader may decode less where it knows what they need."""

    def close(self) -> None:
        """Release what the decoder holds between calls."""


# seconds: where seeks to this far before a time still land after it (ffmpeg's seek in some HEVC
# files), the scan decides; each frame decoded on from a seek is also converted, and from the file's
# start that was every frame up to the time (3,600 of them for a moment half-way through an hour)
SEEK_BACK_LIMIT = 10.0


class TorchcodecReader(_Reader):
    backend = "torchcodec"

    def __init__(self, path: str, info: VideoInfo, size: int, whole: bool = False):
        super().__init__(path, info, size, whole)
        self._decoder = None
        self._scanned = False
        self._file = None

    def _source(self):
        """The path, or the open file where the name is not UTF-8 (bytes a Linux file name may
        hold): torchcodec takes names as UTF-8 only, and every such file fell back to PyAV."""
        try:
            self.path.encode("utf-8")
            return self.path
        except UnicodeEncodeError:
            if self._file is None:
                self._file = open(self.path, "rb")
            self._file.seek(0)  # a decoder that failed to open left it read: again from the start
            return self._file

    def _open(self, scan: bool | None = None):
        """``scan``: let torchcodec read every packet first and build its table of frames (exact
        frame times, key frames), or not (the container's own index; see _by_timestamp).  By
        default an index scans (it reads the whole file anyway) and a search does not."""
        import_torchcodec()
        from torchcodec.decoders import VideoDecoder
        from torchcodec.transforms import CenterCrop, Resize

        from .frames import scaled_shape

        resized = scaled_shape(self.info.height, self.info.width, self.size)
        scan = self.whole if scan is None else scan
        transforms = [Resize(resized), CenterCrop((self.size, self.size))]
        try:
            decoder = VideoDecoder(self._source(), num_ffmpeg_threads=0, seek_mode="exact" if scan else "approximate",
                                   transforms=transforms)
        except BACKEND_FAILURES:
            if scan:
                raise
            # a file whose header says no length (a recording never finished: OBS's Matroska after a
            # crash, a browser's WebM) is read only after the scan ("The maximum pts value in seconds
            # is unknown"): every search of it fell back to PyAV, with a note
            decoder, scan = VideoDecoder(self._source(), num_ffmpeg_threads=0, seek_mode="exact",
                                         transforms=transforms), True
        meta = decoder.metadata
        # HDR: read from the stream's header as the decoder opens (nothing is decoded for it)
        self._colour = (getattr(meta, "color_transfer_characteristic", None), getattr(meta, "color_primaries", None))
        self._begin = float(meta.begin_stream_seconds or 0.0)
        self._end = float(meta.end_stream_seconds or self.info.duration)
        self._origin = _file_start(decoder, self._begin)
        # torchcodec scanned the stream: a duration it cannot back is the file's lie (checked
        # before the decoder is kept, so every later call asks again rather than decoding)
        check_duration(self.info.duration, fps=self.info.fps, frames=meta.num_frames,
                       stream_end=self._end - self._origin if meta.end_stream_seconds else None)
        self._decoder, self._scanned = decoder, scan

    def key_frames(self) -> list[tuple[float, float]]:
        """From the index torchcodec builds when it opens the file (no decoding), at the
        average frame rate.  [] when (nearly) every frame is a key frame: random access
        already decodes one frame per time there.  BeginsInsideGop where the first frame shown
        is not a key frame (_FallbackReader: PyAV takes over)."""
        if self._decoder is None or not self._scanned:  # (the scan's table: asked by an index only)
            self._open(scan=True)
        meta = self._decoder.metadata
        fps = float(meta.average_fps or self.info.fps or 0.0)
        # A private method of torchcodec (pinned): without it, times simply stay where they are.
        indices = getattr(self._decoder, "_get_key_frame_indices", None)
        if fps <= 0 or indices is None:
            return []
        keys = indices().tolist()
        if keys and keys[0] > 0:
            raise BeginsInsideGop(f"its video begins inside a GOP, {keys[0]} frames before its first key frame: "
                                  "trimmed without re-encoding?")
        if not keys or len(keys) * 4 > (meta.num_frames or 0):
            return []
        late = self._begin - self._origin  # the video's first frame, in the file's time
        return [(late + i / fps, late + (i + 1) / fps) for i in keys]

    def _frames(self, times):
        import torch

        from .frames import tone_map

        if self._decoder is None:
            self._open()
        order = sorted(range(len(times)), key=times.__getitem__)
        eps = 1e-4

        def clamped() -> list[float]:
            return [min(max(times[i] + self._origin, self._begin), self._end - eps) for i in order]

        found = None if self._scanned else self._by_timestamp(clamped())
        if found is None:  # the scan's table of frames: every frame exactly where it is shown
            if not self._scanned:
                self._open(scan=True)
            frames = self._decoder.get_frames_played_at(clamped())
            found = frames.data, frames.pts_seconds.tolist()
        data, shown = found
        _check_landed(clamped(), shown, self._decoder.metadata.average_fps or self.info.fps, self._origin)
        batch = tone_map(data, *self._colour)
        if order == list(range(len(order))):  # times already in order, the usual case: no reordering
            return batch
        out = torch.empty_like(batch)
        out[torch.tensor(order)] = batch
        return out

    def _by_timestamp(self, times: list[float]):
        """(frames, the time each is shown from) at times (in order) without the scan, or None
        where the file cannot be read so.  The scan reads every packet of the file: a search
        refining a moment in a 3-hour MP4 (2.5 GB) waited 1.2-1.5 s for it from the page cache
        and 13.6 s from the disk, per video.  Without it, a seek lands on the key frame before a
        time through the container's index and frames are decoded on, in the order they are
        shown: the frame on screen at a time is the last one that begins at or before it, known
        once the next one begins after it.  Only the frames' start times are trusted, never their
        durations (a phone's jittering frame times with B-frames: torchcodec's own lookup, which
        trusts them, returned the frame after the one on screen, and each such file was scanned).
        Where a seek lands after the time, it goes further back (SEEK_BACK_LIMIT); frames out of
        order, or none at all, and the scan decides (None)."""
        import torch
        from torchcodec._core import ops

        core = self._decoder._decoder  # (torchcodec's decoder object under its Python class)
        ended = False

        def decoded():  # the next frame shown, (data, its start time), or None at the end
            nonlocal ended
            try:
                data, start, _duration = ops.get_next_frame(core)
            except IndexError:  # torchcodec's "no more frames left to decode"
                ended = True
                return None
            return data, float(start)

        shown_at, after = None, None  # the last frame decoded that begins at or before the time; the next
        out, shown = [], []
        step = 2.0 / (self.info.fps or 25.0)
        try:
            for t in times:
                on = shown_at is not None and shown_at[1] <= t
                if not (on and (after is None or after[1] > t or t - step <= after[1])):
                    back = step  # seek: the frames a little before t (a few key frames back at most)
                    while True:
                        ops.seek_to_pts(core, max(t - back, self._begin))
                        ended = False
                        shown_at, after = decoded(), None
                        if shown_at is None:
                            return None
                        if shown_at[1] <= t or t - back <= self._begin:
                            break  # (before the first frame decoded: that one, as the scan gives)
                        if back > SEEK_BACK_LIMIT:
                            return None  # seeks land past: decoding on from further back costs more than the scan
                        back *= 4
                while not ended and (after is None or after[1] <= t):
                    if after is not None:
                        shown_at = after
                    after = decoded()
                    if after is not None and after[1] <= shown_at[1]:
                        return None  # not in the order shown
                out.append(shown_at[0])
                shown.append(shown_at[1])
        except BACKEND_FAILURES:  # (a stream shorter than its header says, say): the scan decides
            return None
        return torch.stack(out), shown

    def close(self) -> None:
        self._decoder = None
        if self._file is not None:
            self._file.close()
            self._file = None


def _file_start(decoder, video_begin: float) -> float:
    """The file's time 0 as players and ffmpeg's -ss count it: the earliest start of its streams
    (ffmpeg's start_time), not the video stream's own, which is later where sound begins first
    (2 s in an audit's file: every moment was reported 2 s off what 'vmr play' and export showed;
    tens of milliseconds in many MP4 and MPEG-TS files).  The video stream's start where
    torchcodec cannot tell (its container metadata is not public API)."""
    try:
        from torchcodec import _core

        starts = [s.begin_stream_seconds_from_header for s in _core.get_container_metadata(decoder._decoder).streams]
        starts = [float(x) for x in starts if x is not None]
    except Exception:  # noqa: BLE001 - another torchcodec: the stream's own start, as before
        return video_begin
    return min(starts + [video_begin])


class InexactSeek(RuntimeError):
    """A backend returned a frame shown later than the time asked for (its seek went past)."""


class BeginsInsideGop(RuntimeError):
    """The scan's first frame is not a key frame: an MP4 trimmed without re-encoding from inside a
    GOP (ffmpeg -c copy, LosslessCut, a phone's trim), whose edit list hides the frames before its
    start.  There torchcodec's scan returned the first key frame (0.70 s) for every time before
    it, or (other encodings) decoded every frame up to each time asked, and its key frames' times
    (by the average rate, which the hidden frames skew) drift off the real ones; PyAV reads such
    a file's key frames from its packets exactly (PyAVReader.key_frames) and takes over."""


def _check_landed(asked: list[float], shown_from: list[float], fps: float | None, origin: float) -> None:
    """InexactSeek when a frame's timestamp lies after the time it was asked for by more than
    a frame and a half: torchcodec returns the next key frame when ffmpeg's seek lands past
    the target (MPEG-TS), without an error."""
    slack = 1.5 / fps if fps and fps > 0 else 0.1
    for t, pts in zip(asked, shown_from):
        if pts - t > slack:
            raise InexactSeek(f"it returned the frame of {pts - origin:.2f} s for {t - origin:.2f} s")


class PyAVReader(_Reader):
    """Sequential decode: for each wanted time, the last frame shown at or before it.

    The decoder stays open between calls and only moves forward, so the
    chunks of an index run cost one pass over the file; a request for an
    earlier time starts a new pass.  A packet the decoder rejects (a damaged
    stream) is counted in ``bad_frames`` and skipped, as ffmpeg does: the frame
    before it stays shown.  Whether too little was usable is the caller's call.
    """

    backend = "pyav"
    DEMUX_ERRORS_IN_A_ROW = 100  # then the rest of the file is taken as unreadable

    def __init__(self, path: str, info: VideoInfo, size: int, whole: bool = False, keys: bool = False):
        """``keys``: in an index (``whole``), key_frames reads the file's key frames, and where
        every time asked is on one, only key frames are decoded (open_reader's PyAV, and PyAV
        taking over from another backend)."""
        super().__init__(path, info, size, whole)
        self._container = None
        self._unseekable = False
        self._keys: list[tuple[float, float]] | None = None if keys and whole else []
        self._key_only = False
        self._off_key: set[float] = set()
        self._key_starts: list[float] = []
        self._seeking: PyAVReader | None = None  # (reads the times off key frames when only key frames are decoded)
        self.bad_frames = 0
        self.good_frames = 0
        self.packets = 0  # the stream's packets read on a pass from the start (frames the header lists)

    def key_frames(self) -> list[tuple[float, float]]:
        """The display intervals of the file's key frames, from one pass over its packets without
        decoding them (0.5 s for 400 MB of a camcorder's 1080i from the page cache); [] where
        frames have no timestamps or (nearly) every frame is a key frame.  An index then moves its
        times onto key frames (indexer.on_key_frames) and decodes those alone (expect): a camcorder's
        .mts (a key frame every 0.5 s) or a DVD's MPEG-2 decoded every frame, 12-15 for each one
        used."""
        if self._keys is not None:
            return self._keys
        import av

        self._keys = []
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                if stream.start_time is None:
                    return self._keys
                start = _pyav_file_start(container, stream)  # (times from it, as _open counts them)
                shown, keys = [], []
                for packet in container.demux(stream):
                    if packet.is_discard:
                        continue  # before an edit list's start (a trimmed MP4's): decoded, never shown
                    if packet.pts is None:
                        if packet.size:
                            return self._keys  # frames without times: where each is shown is the decoder's to say
                        continue
                    shown.append(packet.pts)
                    if packet.is_keyframe:
                        keys.append(packet.pts)
                base = stream.time_base
        except (av.error.FFmpegError, IndexError, OSError):
            return self._keys  # (the decoding pass meets the problem and says what it is)
        if not keys or len(keys) * 4 > len(shown):
            return self._keys
        shown.sort()
        after = dict(zip(shown, shown[1:]))  # each frame's successor on screen (the last has none)
        self._keys = sorted((_pyav_time(k, base, start), _pyav_time(after[k], base, start))
                            for k in set(keys) if after.get(k, k) > k)
        return self._keys

    OFF_KEY_SHARE = 0.05  # of an index's times, at most, not on a key frame for key frames only to be decoded

    def expect(self, times: list[float]) -> None:
        """Decode key frames only where (nearly) every time is on one: the decoder skips the
        other frames, and the few times that stay off key frames (where two times would take
        one, near the end) are read by a second reader that seeks to each (_off_key)."""
        keys = self._keys or []
        self._key_starts = [a for a, _ in keys]
        # as _frames will see them: a last clip shorter than two frames asks past the last frame
        off = {t for t in frame_times(times, self.info) if self._key_on_screen(t) < 0}
        self._key_only = bool(keys) and len(off) <= self.OFF_KEY_SHARE * len(times)
        self._off_key = off if self._key_only else set()

    def _key_on_screen(self, t: float) -> int:
        """The index of the key frame on screen at t: the last that begins at or before it, while
        it is shown still (-1: t is not on a key frame)."""
        import bisect

        k = bisect.bisect_right(self._key_starts, t) - 1
        return k if k >= 0 and t < self._keys[k][1] else -1

    def _on_its_key(self, t: float) -> bool:
        """Whether t is on a key frame and the frame shown for it is that key frame (else the
        decoder skipped a frame the packets call key, or t was not expected)."""
        k = self._key_on_screen(t)
        return k >= 0 and abs(self._shown_t - self._key_starts[k]) < 1e-6

    def _frames(self, times):
        import av
        import torch

        order = sorted(range(len(times)), key=times.__getitem__)
        wanted = [times[i] for i in order]
        if (self._container is None or wanted[0] < self._shown_t
                or wanted[0] - max(self._shown_t, 0.0) > self.SEEK_AHEAD):
            self._position(wanted[0])
        picked: list = [None] * len(times)
        try:
            for pos, t in enumerate(wanted):
                if pos and self._seeks and self._next is not None and t - self._next_t > self.SEEK_AHEAD:
                    self._position(t)  # (a search's moments hours apart: it decoded every frame between)
                while self._next is not None and self._next_t <= t:
                    self._shown, self._shown_t = self._next, self._next_t
                    self._next, self._next_t = self._advance()
                shown = self._shown if self._shown is not None else self._next
                if shown is None:
                    break
                if self._next is None and not self._ended:
                    self._ended = True  # the stream ends here: can it back the duration claimed?
                    if not self._partial:  # frames are counted on a pass from the start only
                        check_duration(self.info.duration, fps=self.info.fps, stream_end=self._shown_t,
                                       frames=self.packets if self._key_only else self.good_frames + self.bad_frames)
                        self.bad_frames += self._cut_off(self._shown_t)
                if t in self._off_key:
                    continue  # (the key frame before it is not what is on screen: read below)
                if self._key_only and not self._on_its_key(t):  # the decoder skipped a frame the packets call key
                    self._key_only, self._off_key = False, set()
                    self._position(0.0)  # every frame, from the start
                    return self._frames(times)
                if self._converted is None or self._converted[0] is not shown:
                    self._converted = (shown, self._convert(shown))
                picked[order[pos]] = self._converted[1]
            off = [pos for pos, t in enumerate(wanted) if t in self._off_key]
            if off:
                if self._seeking is None:
                    self._seeking = PyAVReader(self.path, self.info, self.size)
                for pos, frame in zip(off, self._seeking._frames([wanted[pos] for pos in off])):
                    picked[order[pos]] = frame
        except av.error.FFmpegError as exc:
            raise DecodeError(f"cannot decode: {exc}") from None
        if any(p is None for p in picked):
            raise DecodeError("no frames could be decoded")
        return torch.stack(picked)  # type: ignore[arg-type]

    TRUNCATED_AFTER = 2.0  # seconds of claimed duration past the stream's last frame that count as lost
    CUT_SHORT_FRAMES = 3  # frames of an MP4's sample table never read, and of its time, that make it cut short
    SEEK_AHEAD = 10.0  # seconds: a time further ahead than this is reached by a seek, not decoded through

    @property
    def _seeks(self) -> bool:
        """Whether a time far ahead is reached by a seek (_position): not in an index's pass from
        the start, nor in a file without timestamps or whose seek failed (then decoded through)."""
        return not self.whole and not self._unseekable and self._stream.start_time is not None

    def _position(self, t: float) -> None:
        """Be ready to read the frame shown at t: from the file's start (a pass that counts
        damage and a stream cut short) when t is near it, else from a key frame before t.
        ffmpeg's seek can land past its target (MPEG-TS), so where the first frame comes
        after t it seeks again further back.  A search refining one edge near the end of an
        hour of MPEG-2 or of a camcorder's .mts decoded the whole hour before."""
        import av

        self._open()
        if self.whole or t <= self.SEEK_AHEAD or self._stream.start_time is None:  # (no timestamps: no seek)
            return
        back = 1.0
        try:
            while t - back > 0:
                self._container.seek(int((t - back + float(self._start)) / self._base), stream=self._stream, backward=True)
                packets = self._container.demux(self._stream)
                key = self._key_packet(packets, t)
                if key is not None:
                    self._frames_in_order = self._decoded(itertools.chain([key], packets))
                    self._shown, self._shown_t, self._converted, self._ended = None, float("-inf"), None, False
                    self._partial = True
                    self._next, self._next_t = self._advance()
                    if self._next is not None and self._next_t <= t:
                        return
                back *= 4
        except av.error.FFmpegError:  # a file that cannot seek: decode from its start
            self._unseekable = True
        self._open()

    def _key_packet(self, packets, t: float):
        """The first key frame's packet where a seek landed, if it is shown at or before t (a
        decoder can start there); None when the seek landed past t (MPEG-TS lands on any packet,
        not only on key frames, and can land after the target)."""
        for count, packet in enumerate(packets):
            if packet.dts is not None and _pyav_time(packet.dts, self._base, self._start) > t or count > 10_000:
                return None
            if packet.is_keyframe:
                return packet if packet.pts is not None and _pyav_time(packet.pts, self._base, self._start) <= t else None
        return None

    def _cut_off(self, stream_end: float) -> int:
        """Frames the stream claims but ends before (a file cut short: a copy or download that
        stopped): they count as frames that could not be decoded, as damage does, so the
        caller's "more than half" rule sees them instead of the last frame shown for them, and
        ``ends_at`` says where the video really ends.  Other containers get TRUNCATED_AFTER of
        slack (a last frame held a while looks the same); an MP4's sample table lists every frame,
        so there a stream that ends CUT_SHORT_FRAMES early is cut short when packets it lists were
        never read (a phone clip cut to half its bytes: 0.8 s short, unnoticed under that slack).
        Both, since a held last frame (or a damaged tail) has all its packets, and a clip trimmed without
        re-encoding (an edit list) lists frames it never shows, before or after its end."""
        fps = self.info.fps or 25.0
        late = self.info.duration - stream_end - 1.0 / fps  # the last frame is shown for a frame
        if self.info.frames and self.info.frames - self.packets <= self.CUT_SHORT_FRAMES:
            return 0  # every frame listed was read: a held last frame, or a damaged tail (bad_frames)
        late -= self.CUT_SHORT_FRAMES / fps if self.info.frames else self.TRUNCATED_AFTER
        if late <= 0:
            return 0
        self.ends_at = stream_end + 1.0 / fps
        return int(round((self.info.duration - self.ends_at) * fps))

    def _open(self) -> None:
        import av

        self.close()
        try:
            container = av.open(self.path)
            stream = container.streams.video[0]
        except (av.error.FFmpegError, IndexError) as exc:
            if is_environment_error(exc):
                raise TransientError(first_line(exc)) from None
            raise DecodeError(f"cannot decode: {exc}") from None
        stream.thread_type = "AUTO"
        if self._key_only:
            stream.codec_context.skip_frame = "NONKEY"
        self._container, self._stream = container, stream
        self._colour = _pyav_colour(stream)
        self._frames_in_order = self._decoded()
        self._base = stream.time_base
        self._start = _pyav_file_start(container, stream)
        self._shown, self._shown_t, self._converted, self._ended = None, float("-inf"), None, False
        self.bad_frames = self.good_frames = self.packets = 0  # of this pass, which reads the file from its start
        self._untimed = self._partial = False
        self._next, self._next_t = self._advance()

    def _decoded(self, packets=None):
        """The stream's frames in order (from ``packets``, else from where the demuxer is).  A
        packet the decoder rejects is counted and skipped; a demuxer error resumes after the
        damage; an I/O error is not the file's fault."""
        import av

        container, stream = self._container, self._stream
        packets = container.demux(stream) if packets is None else packets
        errors_in_a_row = 0
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:
                if is_environment_error(exc):
                    raise TransientError(first_line(exc)) from None
                errors_in_a_row += 1
                if errors_in_a_row > self.DEMUX_ERRORS_IN_A_ROW:
                    return
                packets = container.demux(stream)  # reads on from where the damage stopped it
                continue
            errors_in_a_row = 0
            if packet.size:
                self.packets += 1
            try:
                frames = stream.decode(packet)
            except av.error.EOFError:
                return
            except av.error.FFmpegError:
                if packet.size:
                    self.bad_frames += 1
                continue
            for frame in frames:
                self.good_frames += 1
                yield frame

    def _advance(self):
        for frame in self._frames_in_order:
            if frame.pts is not None and not self._untimed:
                return frame, _pyav_time(frame.pts, self._base, self._start)
            if self._untimed or (self.good_frames == 1 and self._stream.start_time is None):
                # A raw elementary stream (.h264, .m2v): no timestamps at all; frames are
                # shown one after another at the stream's rate.
                self._untimed = True
                return frame, (self.good_frames - 1) / (self.info.fps or 25.0)
        return None, float("inf")

    def close(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.close()
        if self._seeking is not None:
            self._seeking.close()

    def _convert(self, frame):
        """The frame as shown, its shortest side at ``size``, the centre square.  Scaled by
        swscale as it is converted to RGB (torchcodec does the same in its decoder): converting
        a 1080p frame whole and resizing it in torch cost 58 ms, most of an index of a
        camcorder's .mts once only its key frames were decoded; 7.5 ms so."""
        import torch

        from .frames import scaled_shape, tone_map

        rotation = self.info.rotation % 360
        shown = scaled_shape(self.info.height, self.info.width, self.size)  # as shown: pixels made square, rotated
        coded = shown[::-1] if rotation % 180 else shown  # (height, width) before the rotation
        array = frame.reformat(width=coded[1], height=coded[0], format="rgb24", interpolation="AREA").to_ndarray()
        tensor = torch.from_numpy(array).permute(2, 0, 1)
        if rotation:
            # Display matrix rotation is counter-clockwise; rot90 with k>0 turns the same way.
            tensor = torch.rot90(tensor, k=rotation // 90, dims=(1, 2))
        top, left = (shown[0] - self.size) // 2, (shown[1] - self.size) // 2
        return tone_map(tensor[None, :, top:top + self.size, left:left + self.size].contiguous(), *self._colour)[0]


def _pyav_file_start(container, stream) -> Fraction:
    """The file's time 0 in PyAV's terms: times count from the file's start, as players and
    ffmpeg's -ss do (see _file_start): the earlier of the video stream's start (0 where it has
    none) and the container's.  Exact, so that a frame's time (``_pyav_time``) is: a float 1.4
    taken from a frame at 2.4 s left 1.0000000000000002, and the frame beginning at the time
    asked was taken for one beginning after it (the frame before was shown)."""
    own = stream.start_time * stream.time_base if stream.start_time is not None else Fraction(0)
    return min(own, Fraction(container.start_time, 10**6)) if container.start_time is not None else own


def _pyav_time(ts: int, base, start: Fraction) -> float:
    """A PyAV timestamp in seconds from the file's start (``_pyav_file_start``), rounded once."""
    return float(ts * base - start)


def _pyav_colour(stream) -> tuple[str | None, str | None]:
    """(transfer, primaries) of a PyAV video stream, by ffmpeg's names (those ``tone_map`` knows),
    from the codec parameters read when the file was opened."""
    context = stream.codec_context
    transfer = _PYAV_TRANSFERS.get(int(getattr(context, "color_trc", 0) or 0))
    primaries = _PYAV_PRIMARIES.get(int(getattr(context, "color_primaries", 0) or 0))
    return transfer, primaries


# FFmpeg's AVColorTransferCharacteristic and AVColorPrimaries numbers (those of ITU-T H.273)
_PYAV_TRANSFERS = {16: "smpte2084", 18: "arib-std-b67"}
_PYAV_PRIMARIES = {1: "bt709", 9: "bt2020", 11: "smpte431", 12: "smpte432"}  # as torchcodec names them (P3)


class DecordReader(_Reader):
    """Maps times to frame indices by the average frame rate (not exact on variable rate)."""

    backend = "decord"

    def __init__(self, path: str, info: VideoInfo, size: int, whole: bool = False):
        super().__init__(path, info, size, whole)
        self._decoder = None

    def _frames(self, times):
        import decord
        import torch

        from .frames import resize_center_crop, tone_map

        if self._decoder is None:
            self._decoder = decord.VideoReader(self.path, ctx=decord.cpu(0))
            self._colour = _file_colour(self.path)
        fps = self._decoder.get_avg_fps() or self.info.fps or 30.0
        n = len(self._decoder)
        indices = [min(n - 1, int(t * fps)) for t in times]
        frames = torch.from_numpy(self._decoder.get_batch(indices).asnumpy()).permute(0, 3, 1, 2)
        return tone_map(resize_center_crop(frames, self.size, (self.info.height, self.info.width)), *self._colour)

    def close(self) -> None:
        self._decoder = None


def _file_colour(path: str) -> tuple[str | None, str | None]:
    """(transfer, primaries) of a file's video stream, read by PyAV (its header only); (None,
    None) where PyAV cannot tell: its frames are then taken as SDR."""
    import av

    try:
        with av.open(path) as container:
            return _pyav_colour(container.streams.video[0])
    except (av.error.FFmpegError, IndexError, OSError):
        return None, None


def file_transfer(path: str) -> str | None:
    """The file's HDR colour transfer (PQ, HLG: ffmpeg's names), '' for any other or where PyAV
    cannot read it (its frames are then taken as SDR, as the readers take them), None where the
    file cannot be opened now (a share that dropped): it is asked again another time."""
    import av

    try:
        with av.open(path) as container:
            return _pyav_colour(container.streams.video[0])[0] or ""
    except OSError:  # PyAV's errors of the system are OSErrors too
        return None
    except (av.error.FFmpegError, IndexError):
        return ""


class _FallbackReader(_Reader):
    """The chosen backend until it fails on this file, then one sequential PyAV pass."""

    def __init__(self, primary: _Reader):
        super().__init__(primary.path, primary.info, primary.size, primary.whole)
        self.reader = primary
        self.fallback: str | None = None
        self._failed: str | None = None  # why PyAV took over, said as ``fallback`` once it read frames
        self._expected: list[float] | None = None  # the times an index will ask (expect)

    @property
    def backend(self) -> str:  # type: ignore[override]
        return self.reader.backend

    def _frames(self, times):
        try:
            frames = self.reader._frames(times)
        except BACKEND_FAILURES as exc:
            if isinstance(self.reader, PyAVReader):
                raise
            self._take_over(exc)
            frames = self.reader._frames(times)
        self.fallback = self._failed  # said once PyAV did read them (a note claimed it when it failed too)
        return frames

    def _take_over(self, exc: Exception) -> None:
        """PyAV in place of the backend that failed.  In an index it reads the file's key frames
        from its packets and, where the times expected are on them, decodes those alone, as for
        MPEG-TS: it decoded every frame of the file, however many the times needed."""
        self._failed = f"decoded with PyAV: {self.reader.backend} failed ({first_line(exc)})"
        self.reader.close()
        self.reader = PyAVReader(self.path, self.info, self.size, self.whole, keys=True)
        if self._expected is not None:
            self.reader.key_frames()
            self.reader.expect(self._expected)

    def key_frames(self) -> list[tuple[float, float]]:
        """The backend's key frames; PyAV's where it fails (it takes over: a file torchcodec cannot
        open, or one it cannot read exactly, BeginsInsideGop)."""
        try:
            return self.reader.key_frames()
        except BACKEND_FAILURES as exc:
            if isinstance(self.reader, PyAVReader):
                return []
            self._take_over(exc)
            return self.reader.key_frames()

    def expect(self, times: list[float]) -> None:
        self._expected = list(times)  # (for PyAV, should it take over later)
        self.reader.expect(times)

    @property
    def bad_frames(self) -> int:
        """Frames that could not be decoded (counted by the sequential reader only)."""
        return getattr(self.reader, "bad_frames", 0)

    @property
    def good_frames(self) -> int | None:
        return getattr(self.reader, "good_frames", None)

    @property
    def ends_at(self) -> float | None:  # type: ignore[override]
        return self.reader.ends_at

    def close(self) -> None:
        self.reader.close()


BACKENDS = {"torchcodec": TorchcodecReader, "pyav": PyAVReader, "decord": DecordReader}


def import_torchcodec():
    """``torchcodec.decoders``, imported without importing torch._dynamo.

    At import, torchcodec marks its ops with ``torch._dynamo.disallow_in_graph``,
    and that one call imports dynamo: 1.2 to 2 s of every process that decodes
    (a search is a fresh process), for torch.compile, which vmr never runs.
    While torchcodec imports, a stand-in answers that call (the marks matter only
    inside torch.compile); then it is gone, and ``torch._dynamo`` imports for
    real for anyone who asks.  Should torchcodec ever want more of dynamo at
    import, it is imported again the usual way.
    """
    import sys
    import types

    import torch

    if "torchcodec.decoders" in sys.modules or "torch._dynamo" in sys.modules:
        import torchcodec.decoders
        return torchcodec.decoders
    stand_in = types.ModuleType("torch._dynamo")
    stand_in.disallow_in_graph = lambda fn: fn
    sys.modules["torch._dynamo"] = stand_in
    try:
        import torchcodec.decoders
        return torchcodec.decoders
    except AttributeError:  # a torchcodec that asks more of dynamo: forget the attempt, import plainly
        for name in [m for m in sys.modules if m == "torchcodec" or m.startswith("torchcodec.")]:
            del sys.modules[name]
    finally:
        if sys.modules.get("torch._dynamo") is stand_in:
            del sys.modules["torch._dynamo"]
        if torch.__dict__.get("_dynamo") is stand_in:
            del torch._dynamo
    import torchcodec.decoders
    return torchcodec.decoders


def require_backend(name: str, load: bool = True) -> None:
    """An unknown or missing backend is an error of the environment: it stops the run
    before any file is touched (never a failure recorded against every file).  ``load``
    False checks the name only (loading torchcodec loads torch: 2-3 s of a run with nothing
    to decode)."""
    if name not in BACKENDS:
        raise VmrError(f"unknown decoder backend '{name}'; choose one of {', '.join(BACKENDS)}")
    if not load:
        return
    if name == "decord":
        try:
            import decord  # noqa: F401
        except ImportError:
            raise VmrError("the decord backend is not installed: pip install -e '.[decord]' in vmr's folder, "
                           "or use --backend torchcodec") from None
    if name == "torchcodec":
        problem = _torchcodec_problem()
        if problem:
            raise VmrError(f"the torchcodec backend cannot load ({problem}); reinstall it "
                           "(pip install torchcodec), or use --backend pyav")
    try:
        import av  # noqa: F401  (every backend falls back to PyAV, and MPEG-1/2 always uses it)
    except Exception as exc:
        raise VmrError(f"PyAV cannot load ({first_line(exc)}); reinstall it: pip install av") from None


def _torchcodec_problem() -> str | None:
    """Why torchcodec cannot load here (one line), or None when it loads."""
    try:
        import_torchcodec()  # loads its FFmpeg libraries
    except Exception as exc:  # ImportError, or OSError/RuntimeError when the libraries fail
        return first_line(exc)
    return None


def search_backend(name: str | None) -> tuple[str, str | None]:
    """The backend a search decodes with, and a note when it is not the default.

    ``name`` when given (an error when it cannot load, as for ``vmr index``).  By default
    torchcodec, or PyAV where torchcodec cannot load: a search reads frames at a few times
    of videos that were indexed already, whichever backend indexed them, so a broken
    torchcodec slows it down rather than stopping it; the note says so.
    """
    if name is not None:
        require_backend(name)
        return name, None
    problem = _torchcodec_problem()
    if problem is None:
        return "torchcodec", None
    require_backend("pyav")
    return "pyav", f"decoding with PyAV: torchcodec cannot load ({problem})"


def is_mpeg_ts(path: str) -> bool:
    """Whether the file is an MPEG transport stream (.ts, .m2ts/.mts): packets of 188 bytes that
    start with 0x47, or of 192 bytes with a 4-byte arrival time before each (Blu-ray, AVCHD).
    Read from the file (three packets), so it holds for rows indexed before it was asked."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(3 * 192)
    except OSError:
        return False
    return any(len(head) >= offset + 2 * size + 1 and all(head[offset + k * size] == 0x47 for k in range(3))
               for size, offset in ((188, 0), (192, 4)))


def open_reader(path: str, info: VideoInfo, size: int, backend: str = "torchcodec",
                whole: bool = False) -> _FallbackReader:
    """A reader for one file: the chosen backend, PyAV for MPEG-1/2, PyAV after a failure.

    ``reader.fallback`` is None, or one line saying why another backend reads this file.
    ``whole``: the file is read in order from its start (an index): PyAV, also as the fallback
    midway, reads the file from the start (every frame, or its key frames: expect), so damage and
    a stream cut short are counted.
    """
    require_backend(backend)
    if info.codec in SEQUENTIAL_ONLY or is_mpeg_ts(path) or backend == "pyav":  # (MPEG-1/2 and TS by design,
        return _FallbackReader(PyAVReader(path, info, size, whole, keys=True))  # see above: not a fallback)
    return _FallbackReader(BACKENDS[backend](path, info, size, whole))

