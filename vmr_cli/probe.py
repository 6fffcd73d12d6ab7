"""What a video file is: duration, frame rate, size, rotation (ffprobe)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass

from .errors import DecodeError, TransientError, VmrError

# HDR video (phones record it by default: iPhone HLG, others PQ), by ffmpeg's names of a stream's
# colour transfer (ffprobe's color_transfer).  Decoded to RGB as it is, its picture is grey and
# washed out: the frames vmr embeds (frames.tone_map) and the page's (preview.TONE_MAP) are mapped.
HDR_TRANSFERS = frozenset({"smpte2084", "arib-std-b67"})


@dataclass
class VideoInfo:
    duration: float
    fps: float
    width: int      # as displayed, after rotation
    height: int
    rotation: int   # degrees, as recorded in the file
    codec: str
    frames: int | None = None  # the frames an MP4/MOV header lists (its sample table), else None
    transfer: str = ""  # the stream's colour transfer where it is HDR's (HDR_TRANSFERS), else ''

    def as_row(self) -> dict:
        row = asdict(self)  # the catalog keeps the codec since schema 2, the transfer since 5
        del row["frames"]  # what the header claimed: only the decoder's check needs it
        return row


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise VmrError(f"{name} not found on PATH; install ffmpeg (e.g. 'apt-get install ffmpeg' or 'brew install ffmpeg')")
    return path


PROBE_TIMEOUT = 60  # seconds for one ffprobe call

# Raw elementary video streams (.h264, .m2v ...) carry no duration: it is counted from packets.
RAW_STREAMS = frozenset("h264 hevc mpegvideo m4v vc1 cavsvideo avs2 avs3 h261 h263 obu mjpeg jpeg_pipe dirac".split())

# A claimed duration that the stream cannot back is refused (issue 11.7): a few KB claiming
# 100 hours would cost the indexer 180,000 clips.  Real files are far from these limits: the
# 3-hour 1 fps 32x32 test video holds 14 bytes per second, a 0.1 fps 16x16 one 2.8.
MIN_BYTES_PER_SECOND = 1.0
LONG_CLAIM = 3600.0             # over a claim this long, the frames must back it:
MAX_SECONDS_PER_FRAME = 600.0   # at least one frame per 10 minutes on average, and
MAX_RATE_SHORTFALL = 1000.0     # at least 1/1000 of the frames the stream's own rate implies

# Errors of the machine, not of the file (ffmpeg prints them with strerror's words): the file
# is not recorded as failed, and the next run tries again.
ENVIRONMENT_ERRNOS = tuple(getattr(errno, name) for name in (
    "EACCES", "ENOENT", "EIO", "ENXIO", "ENOTCONN", "ESTALE", "ETIMEDOUT", "EAGAIN", "ENOMEM",
    "EMFILE", "ENFILE", "EHOSTDOWN", "EHOSTUNREACH", "ENETDOWN", "ENETUNREACH", "ECONNRESET",
    "ECONNABORTED", "EREMOTEIO", "ENOLINK", "ECOMM") if hasattr(errno, name))
ENVIRONMENT_MESSAGES = tuple(os.strerror(number) for number in ENVIRONMENT_ERRNOS)


class ProbeTimeout(TransientError):
    """ffprobe took longer than PROBE_TIMEOUT: a slow or dead share, or a pathological file."""


def is_environment_error(exc: BaseException) -> bool:
    """True for an OS error (or an ffmpeg message carrying one) that says nothing about the file."""
    if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
        return True
    return any(text in str(exc) for text in ENVIRONMENT_MESSAGES)


def probe(path: str, cancel: threading.Event | None = None) -> VideoInfo:
    """Read stream metadata; DecodeError with ffprobe's reason when it is not a video,
    TransientError when the reason is not the file's (it cannot be opened now, ffprobe timed out).
    ``cancel``: an event that, once set, stops the probe (ProbeCancelled)."""
    ffprobe = require_tool("ffprobe")
    size = _readable_size(path)
    data = _ffprobe(ffprobe, path, ["-show_streams", "-show_format", "-select_streams", "v:0"], cancel)
    streams = [s for s in data.get("streams", []) if s.get("codec_type") == "video"
               and not s.get("disposition", {}).get("attached_pic")]
    if not streams:
        raise DecodeError("no video stream (audio-only, image or not a media file)")
    stream = streams[0]
    fmt = data.get("format", {})
    formats = set(str(fmt.get("format_name", "")).split(","))  # ffprobe's demuxer names ('mov,mp4,m4a')
    if _still_image(ffprobe, path, formats, cancel):  # a JPEG was a 0.04 s 'video'
        if stream.get("codec_name") == "webp" and _animated_webp(path):
            raise DecodeError("an animated WebP, which this ffmpeg reads as one image and cannot decode")
        raise DecodeError(f"a still image ({stream.get('codec_name') or 'image'}), not a video")
    own = _number(stream.get("duration"))  # the video stream's length
    file_start = _number(fmt.get("start_time")) or 0.0
    late = (_number(stream.get("start_time")) or 0.0) - file_start
    # Times count from the file's start (decode._file_start): a video that starts late ends late.
    duration = own + max(0.0, late) if own else _number(fmt.get("duration"))
    tagged = _tagged_duration(stream) if "matroska" in formats else None
    if tagged:  # where its video ends: ffmpeg writes the stream's end time
        duration = tagged - file_start
    fps = ratio(stream.get("avg_frame_rate")) or ratio(stream.get("r_frame_rate"))
    frames = _number(stream.get("nb_frames"))
    if not duration and fps and formats & RAW_STREAMS:
        counted = _ffprobe(ffprobe, path, ["-count_packets", "-select_streams", "v:0",
                                           "-show_entries", "stream=nb_read_packets"], cancel)
        frames = _number((counted.get("streams") or [{}])[0].get("nb_read_packets"))
        duration = frames / fps if frames else None
    if not duration and not formats & RAW_STREAMS:  # a recording never finished: read where it ends
        duration, fps = _unfinished(ffprobe, path, size, file_start, fps, cancel)
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if not duration or duration <= 0:
        raise DecodeError("no duration: zero frames or a still image")
    if width <= 0 or height <= 0:
        raise DecodeError("video stream has no frame size")
    check_duration(float(duration), fps=fps, size=size, frames=frames)
    width = _displayed_width(width, stream.get("sample_aspect_ratio"))
    rotation = _rotation(stream)
    transfer = str(stream.get("color_transfer") or "")
    if rotation % 180:
        width, height = height, width
    return VideoInfo(duration=float(duration), fps=float(fps or 0.0), width=width, height=height,
                     rotation=rotation, codec=str(stream.get("codec_name", "")),
                     # MP4/MOV's sample table lists every frame; an AVI index lists dropped ones
                     # too (tree.avi: 444 listed, 68 in the stream), others may say nothing
                     frames=int(frames) if frames and "mov" in formats else None,
                     transfer=transfer if transfer in HDR_TRANSFERS else "")


def _unfinished(ffprobe: str, path: str, size: int, file_start: float, fps, cancel=None):
    """(duration, fps) of a file whose header says no length: a recording that was never
    finished, as OBS leaves a Matroska or FLV file when it (or the machine) stops mid-recording
    and as a browser's recorder (MediaRecorder: video calls, screen capture) writes WebM.  Players
    play them to their last frame; they were refused ("no duration").  Read from the video's
    packets, no decoding: where its last frame ends, from the file's start, and where the stream
    says no rate, its frames over that length.  The whole file is read, as an index then decodes
    it anyway: the time allowed grows with its size (10 MB/s, a slow share's)."""
    text = _ffprobe(ffprobe, path, ["-select_streams", "v:0", "-show_entries", "packet=pts_time,duration_time"],
                    cancel, timeout=PROBE_TIMEOUT + size / 10e6, of="csv=p=0")
    end, count = None, 0
    for line in text.decode("ascii", "replace").split():
        start, _, length = line.partition(",")
        start = _number(start)
        if start is None:
            continue
        count += 1
        stop = start + (_number(length) or 0.0)
        end = stop if end is None else max(end, stop)
    if end is None or end - file_start <= 0:
        return None, fps
    duration = end - file_start
    return duration, fps or (count / duration if count > 1 else None)


def _still_image(ffprobe: str, path: str, names: set, cancel=None) -> bool:
    """Whether ffmpeg read the file as one image: with image2 (a JPEG, a TIFF ...), or with an
    image pipe (png_pipe, jpeg_pipe ...) that holds a single frame; a motion-JPEG stream or an
    animated WebP is read by the same pipes, frame after frame (two packets are counted)."""
    if "image2" in names:
        return True
    if not any(name.endswith("_pipe") for name in names):
        return False
    counted = _ffprobe(ffprobe, path, ["-select_streams", "v:0", "-read_intervals", "%+#2", "-count_packets",
                                       "-show_entries", "stream=nb_read_packets"], cancel)
    return (_number((counted.get("streams") or [{}])[0].get("nb_read_packets")) or 0) <= 1


def _animated_webp(path: str) -> bool:
    """Whether a WebP file says it is animated: its VP8X header's animation flag (RIFF, WEBP,
    VP8X, the chunk's size, then the flags byte, 0x02 for animation)."""
    try:
        with open(path, "rb") as f:
            head = f.read(21)
    except OSError:
        return False
    return len(head) == 21 and head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and bool(head[20] & 0x02)


def check_duration(duration: float, fps: float | None = None, size: int | None = None,
                   frames: float | None = None, stream_end: float | None = None) -> None:
    """DecodeError when what the file holds cannot back the duration it claims: too few bytes,
    too few frames, or a video stream that ends long before.  The probe checks what ffprobe
    reads from the header; the decoders check again with what they find in the stream."""
    from .timecodes import timecode

    claim = f"claims to last {timecode(duration)}"
    if size is not None and size < duration * MIN_BYTES_PER_SECOND:
        raise DecodeError(f"{claim} but holds only {size} bytes ({size / duration:.3g} per second): "
                          "its duration is wrong (a damaged or crafted file)")
    if stream_end is not None and duration > 2 * stream_end + 60:
        raise DecodeError(f"{claim} but its video stream ends at {timecode(stream_end)}: its "
                          "duration is wrong (a damaged or crafted file)")
    if frames and duration > LONG_CLAIM and (duration / frames > MAX_SECONDS_PER_FRAME
                                             or frames * MAX_RATE_SHORTFALL < duration * (fps or 0)):
        raise DecodeError(f"{claim} but its video stream holds {int(frames)} frames: its duration "
                          "is wrong (a damaged or crafted file)")


def ffprobe_version() -> str:
    """ffprobe's version, part of what a failed file is recorded as having failed with."""
    try:
        done = subprocess.run([require_tool("ffprobe"), "-v", "error", "-version"], capture_output=True,
                              timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    words = done.stdout.decode("utf-8", "replace").split()
    return words[2] if len(words) > 2 and words[:2] == ["ffprobe", "version"] else "unknown"


def _readable_size(path: str) -> int:
    """The file's size, after reading its first bytes: a file that cannot be opened or read
    now (permissions, I/O error, a dropped share) is not the file's fault."""
    try:
        with open(path, "rb") as handle:
            handle.read(4096)
            return os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise TransientError(exc.strerror or str(exc)) from None


class ProbeCancelled(TransientError):
    """The index that asked for this probe stopped before it finished."""


def _ffprobe(ffprobe: str, path: str, args: list[str], cancel: threading.Event | None = None,
             timeout: float | None = None, of: str = "json"):
    """ffprobe's JSON for path (``of`` another format: its output, bytes).  ``cancel`` set: the
    process is killed within a quarter second (probes run ahead of the decoder; an index that
    stops must not wait for them)."""
    cmd = [ffprobe, "-v", "error", "-print_format", of, *args, "file:" + path]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise VmrError("ffprobe vanished while vmr was running; install ffmpeg again") from None
    timeout = PROBE_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while True:
        try:
            stdout, stderr = proc.communicate(timeout=0.25 if cancel is not None else timeout)
            break
        except subprocess.TimeoutExpired:
            stopped = cancel is not None and cancel.is_set()
            if stopped or time.monotonic() >= deadline:
                proc.kill()
                proc.communicate()
                if stopped:
                    raise ProbeCancelled("the index stopped") from None
                raise ProbeTimeout(f"ffprobe timed out after {timeout:.0f} s") from None
    done = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    if done.returncode < 0:
        raise TransientError(f"ffprobe was killed by signal {-done.returncode}")
    if done.returncode != 0:
        reason = _reason(done.stderr, path)
        if any(text in reason for text in ENVIRONMENT_MESSAGES):
            raise TransientError(reason)
        if NO_MOOV in done.stderr and _starts_as_mp4(path):  # (bytes of noise named .mp4 have no moov either)
            reason = UNFINISHED_MP4
        raise DecodeError(reason)
    if of != "json":
        return done.stdout
    try:
        return json.loads(done.stdout or b"{}")
    except ValueError:
        raise DecodeError("ffprobe printed no readable description of this file") from None


# An MP4/MOV whose header (the moov atom, written when a recording stops) is missing: a dashcam's
# or camera's last file when the power was cut, a copy that stopped.  ffprobe's own last line,
# 'Invalid data found when processing input', does not say so.
NO_MOOV = b"moov atom not found"
UNFINISHED_MP4 = ("moov atom not found: the recording was never finished (the camera lost power, or a copy "
                  "stopped), and its frames cannot be found without it")


def _starts_as_mp4(path: str) -> bool:
    """Whether the file begins with a box an MP4/MOV begins with (ftyp; a QuickTime camera's
    wide, free or mdat)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return False
    return head[4:8] in (b"ftyp", b"wide", b"free", b"skip", b"mdat")


def _reason(stderr: bytes, path: str) -> str:
    """ffprobe's error without the file name it starts with (the catalog has it).  The name is
    matched in the raw output, so one that is not UTF-8 or holds a newline is cut off whole
    (it was matched line by line in decoded text: 'caf\ufffd.mp4: Invalid data' was left)."""
    text = stderr.decode("utf-8", "surrogateescape").strip()
    for prefix in ("file:" + path + ": ", path + ": "):
        at = text.rfind(prefix)
        if at >= 0 and (at == 0 or text[at - 1] == "\n"):
            text = text[at + len(prefix):].split("\n", 1)[0]
            break
    else:
        text = text.splitlines()[-1] if text else "ffprobe failed"
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").strip() or "ffprobe failed"


def _displayed_width(width: int, sample_aspect) -> int:
    """The width a player shows: pixels that are not square (an anamorphic DVD's 720x480 at
    32:27 is shown 853 wide, HDV's 1440x1080 at 4:3 is 1920) were embedded squeezed."""
    try:
        num, den = (int(x) for x in str(sample_aspect).split(":"))
    except ValueError:
        return width
    if num <= 0 or den <= 0 or num == den or not 0.25 <= num / den <= 4:
        return width
    return max(1, round(width * num / den))


def _tagged_duration(stream: dict) -> float | None:
    """Where a Matroska/WebM stream ends, which its muxer writes as a DURATION tag
    ('00:00:10.003000000', the end time of its last frame): such files hold no length per
    stream, and ffprobe's estimate (or the container's) is the longer audio's.  A 10 s video
    with 100 s of sound was refused as damaged; with 40 s, indexed as 40 s, 30 of them its
    last frame."""
    for key, value in (stream.get("tags") or {}).items():
        if key.upper().startswith("DURATION"):
            try:
                h, m, sec = str(value).strip().split(":")
                seconds = int(h) * 3600 + int(m) * 60 + float(sec)
            except ValueError:
                return None
            return seconds if seconds > 0 else None
    return None


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def ratio(text):
    """An ffprobe ratio ('30000/1001', a time base '1/90000') as a number; None where it says
    nothing ('0/0', missing)."""
    if not text or "/" not in str(text):
        return _number(text)
    num, den = str(text).split("/", 1)
    num, den = _number(num), _number(den)
    return num / den if num and den else None


def _rotation(stream: dict) -> int:
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            return int(round(float(side["rotation"]))) % 360
    tag = (stream.get("tags") or {}).get("rotate")
    return int(round(float(tag))) % 360 if tag else 0
