"""Cutting a moment out of a video with ffmpeg, checked: what export and the page's previews share.

ffmpeg's exit status does not say the cut is right.  It exits 0 after writing a
file that holds no frame (seeking before ``-i`` in some MPEG-TS recordings lands
nowhere) or a file cut short by a full disk, and it fails a whole cut over an
audio stream it cannot decode, and a stream copy (Ogg/Theora) can keep a few of the
moment's video frames while the audio, and so the file's length, is whole.  So every cut
is probed afterwards (a video frame at least, about the length asked for, for a stream
copy the source's video frames in the moment, and for a re-encode its first frame
looking like the source's there: see LOOK) and tried again another way when it
is not right: seeking after ``-i`` (decodes from the start: slower, exact), and
without the audio when only the audio is in the way (said in a warning).  An exact cut (a
re-encode) starts with the frame on screen at its start: see SHOWN, and INDEXED for where
its input is sought.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import subprocess
import time

from .errors import VmrError
from .probe import _number, ratio

PROBE_TIMEOUT = 600  # seconds for reading a cut back
REPEATED = "Last message repeated"
MIN_FREE = 1 << 20  # bytes: less than this free after a failed cut means the disk is full


class CutError(VmrError):
    """This moment could not be cut (the file's fault, or ffmpeg's): other cuts can go on."""


class DiskFull(VmrError):
    """No room left where the cuts go: no other cut can succeed either."""


def ffmpeg_reason(stderr: bytes) -> str:
    """The last line of ffmpeg's stderr that says something ("Last message repeated N times" does not)."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith(REPEATED)]
    return lines[-1] if lines else "failed"


def cut(ffmpeg: str, source: str, start: float, seconds: float, target: str, codec_args: list[str],
        timeout: float | None = None) -> str | None:
    """Write [start, start + seconds] of source's first video stream (and first audio stream,
    when it can be read) to target, encoded with codec_args; returns a warning or None.

    Only a cut shorter than asked is wrong (a stream copy starts at the key frame before
    ``start``, so may be longer).  ``timeout``: seconds per ffmpeg run (None: no
    limit).  CutError when no way gives a right file; DiskFull when the disk is full."""
    ffprobe = shutil.which("ffprobe") or "ffprobe"
    # A stream copy holds the source's packets: it must hold every video frame of the moment
    # (an Ogg/Theora copy kept 25 of 129 while its audio, and so its length, was whole).  The
    # source is counted only for a copy with fewer frames than its own rate implies: two more
    # ffprobe runs doubled the cost of a good copy.
    expected = functools.cache(lambda: _frames_in(ffprobe, source, start, seconds)) if "copy" in codec_args else None

    # A re-encode's sound that could not be decoded at all is left out with ffmpeg exiting 0
    # (-max_error_rate 1: see _run); whether the source has sound is asked only then.
    sound = functools.cache(lambda: _has_sound(ffprobe, source)) if expected is None else None

    def attempt(seek: str, audio: bool) -> str | None:
        """Why this way failed, or None when target now holds the moment."""
        failed = _run(ffmpeg, source, start, seconds, target, codec_args, seek, audio, timeout, rate)
        if failed is None:  # ffmpeg exits 0 on a full disk too: the file is read back
            failed = _wrong(ffprobe, target, seconds, expected, sound if audio else None)
        if failed is None and expected is None:  # a re-encode: its frames are the source's (see LOOK)
            failed = _footage_wrong(ffmpeg, source, target, start, rate, codec_args, sought, timeout)
        if failed is not None and ("No space left on device" in failed or _disk_full(target)):
            raise DiskFull(f"no space left on device for {os.path.dirname(target)}")
        return failed

    # The input seek: the key frame before the start must be decoded, or copied (see INDEXED).
    # An exact cut is whole frames (see SHOWN): from where the frame on screen at the start
    # begins (up to a frame earlier) to where the one on screen just before the end ends, its
    # sound with them.  (ffmpeg's -t keeps the frames that begin before it, rounded to a frame:
    # 3.013-4.014 s of a 29.97 fps video, 1.011 s, lost the frame shown from 4.004 s.)
    if expected is None:
        seek, begin, rate = _exact_seek(ffprobe, source, start)
        sought = seek
        slots = max(1, math.ceil((start + seconds - _leeway(rate) - begin) * eval_rate(rate)))
        start, seconds = begin, slots / eval_rate(rate)
    else:
        seek, rate = _copy_seek(ffprobe, source, start), None
    first = attempt(seek, True)
    if first is None:
        return None
    if first.startswith(TIMED_OUT):
        raise CutError(first)  # no other way is faster
    if not first.startswith(WRONG):  # ffmpeg failed, or no sound: the audio, if the video alone goes through
        silent = f"cut without its sound: ffmpeg could not read the audio ({first})"
        if attempt(seek, False) is None:
            if first in (NO_SOUND, EARLY_SOUND):  # what the cut held, not a failure that may pass (its
                return ("cut without sound: none could be decoded in this moment (the file's sound may end "
                        "before it, or be unreadable there)")  # sound may simply end before the moment)
            if attempt(seek, True) is None:  # it was not the audio after all (a passing I/O error)
                return None
            if attempt(seek, False) is None:
                return silent
        raise CutError(first)
    # ffmpeg exited 0 with a wrong file: a seek before -i that landed nowhere; decode from the start
    if attempt("output", True) is None:
        return None
    raise CutError(first + ("; a stream copy of this file loses frames: export it without --copy"
                            if first.startswith(FEWER) else ""))


TIMED_OUT = "ffmpeg took longer than"
WRONG = "the cut "  # how _wrong's reasons begin
FEWER = "the cut holds only"
NO_SOUND = "no sound could be decoded"  # not WRONG: retried without the audio
EARLY_SOUND = "its sound ends before its picture starts"  # (a stream copy) not WRONG either


def _run(ffmpeg, source, start, seconds, target, codec_args, seek, audio, timeout, rate=None) -> str | None:
    """ffmpeg's reason when it failed, else None.  ``seek``: "input" (-ss before -i), "output"
    (after it: decodes from the file's start), or for a re-encode the point (seconds) to seek
    the input to, at or before ``start`` (see _exact_seek); ``rate``: a re-encode's frame rate."""
    if "copy" in codec_args:  # a stream copy: packets as they are, from the key frame before
        pre = start if seek == "input" else None if seek == "output" else float(seek)
        where = ["-i", "file:" + source, "-ss", f"{start:.3f}"] if pre is None else \
            ["-ss", f"{pre:.3f}", "-i", "file:" + source]
        seconds += start - pre if pre is not None else 0.0  # (from a point sought before the start)
    else:  # decoded from a key frame before, every frame handed to the fps filter (see SHOWN)
        pre = start if seek == "input" else 0.0 if seek == "output" else float(seek)
        codec_args, video, sound = _without_filters(codec_args)  # theirs go after ours: one -vf counts
        # the start, counted from where the input was sought, is where both filters begin (not an
        # -itsoffset: ffmpeg "corrects" an MPEG-TS/PS timestamp that jumps back more than 10 s, and
        # a cut 11.5 s after its key frame held the file's first second)
        offset = f"{max(0.0, start - pre):.6f}"
        where = [*(["-ss", f"{pre:.6f}", "-noaccurate_seek"] if pre > 0 else []), "-i", "file:" + source,
                 "-vf", ",".join([SHOWN.format(rate=rate or FALLBACK_RATE, offset=offset), *video]),
                 "-af", ",".join([f"atrim=start={offset},asetpts=PTS-{offset}/TB", *sound])]
    # -max_error_rate 1: decoding errors alone never fail the cut (an Ogg file's thousands of empty
    # audio packets, each an error, failed it though all of its sound decoded); the cut is read back.
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-max_error_rate", "1", "-y", *where,
           "-t", f"{seconds:.6f}", "-map", "0:v:0", *(["-map", "0:a:0?"] if audio else ["-an"]), *codec_args,
           "file:" + target]
    try:
        done = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"{TIMED_OUT} {timeout:.0f} s"
    except OSError as exc:
        return f"cannot run ffmpeg: {exc.strerror}"
    return ffmpeg_reason(done.stderr) if done.returncode != 0 else None


# An exact cut starts with the frame on screen at its start, and shows each frame from its own
# time on.  ffmpeg's own seek (and its -ss after -i) drops every frame timed before the start,
# also the one still on screen there: a screen recording holding a frame from 1 s to 8 s cut
# at 4 s began with the 8 s frame, a 0.5 fps timelapse cut at 5.5 s lost its 4 s frame and
# showed the rest 0.5 s early.  So the input is sought without ffmpeg's trimming
# (-noaccurate_seek), and the fps filter fills each slot from the start on with the frame
# nearest to it, a frame shown since before the start until the next one comes (its default
# rounding: 'up' dropped a third of the frames of a phone video whose times jitter by a few ms,
# and the millisecond's leeway it needed, subtracted from timestamps in the stream's time base,
# moved every AVI frame one frame early).  Its slots are laid on the source's own frames: the
# cut begins where the frame on screen at the start begins (or a whole number of slots after
# it, for a frame held longer), up to a slot before the start, and its sound with it (see
# _exact_seek).  Slots laid from the start itself put a frame more than half a frame old in
# the next slot: a 29.97 fps cut at 2.5 s, a third of the way into frame 74, began with frame
# 75, one at 3.013-4.014 ended a frame early, and a frame in a slot not its own moved against
# the sound by up to half a frame.  Video and sound both count from that beginning; sound that
# begins after it keeps its place (moved to 0 it ran 0.5 s early in a file whose sound starts
# 0.5 s after its picture).  The rate: see _rate.
SHOWN = "fps=fps={rate}:start_time={offset},setpts=PTS-STARTPTS"
FALLBACK_RATE = "25"  # where the source says no rate


def _rate(stream: dict) -> str:
    """An exact cut's frame rate: the one ffmpeg's constant-rate output took before (its guess
    from r_frame_rate, or avg_frame_rate where that is implausibly high), but under 10 frames a
    second raised by a whole factor to 24 at least, so that the frames of a sparse source show
    within 1/24 s of their time (a 0.5 fps timelapse gets 24, 5 fps 25; 15 fps stays 15: at 30
    its cut cost 40 % more); 25 where the source says no rate."""
    rate, average = stream.get("r_frame_rate") or "", stream.get("avg_frame_rate") or ""
    if (ratio(rate) or 0) > 210 and 0 < (ratio(average) or 0) < 70:
        rate = average
    fps = ratio(rate)
    if not fps or fps <= 0 or "/" not in rate and _number(rate) is None:
        return FALLBACK_RATE
    return rate if fps >= 10 else f"{rate}*{math.ceil(24 / fps)}"


# Containers whose index makes ffmpeg's seek before -i land on the key frame before the start
# (ffprobe's format names).  In others ffmpeg seeks by timestamp to some packet before it and
# decoding begins at the next key frame: in MPEG-TS (camcorders' .mts/.m2ts, broadcasts) a cut
# at 3.5 s with a key frame a second began with the 4.0 s frame held half a second, one at 2.0 s
# with a key frame every 10 s held the 10.0 s frame throughout.  Those are sought to just before
# the key frame at or before the start, found from the packets (no decoding): see _exact_seek.
INDEXED = frozenset({"mov", "mp4", "matroska", "webm"})
INDEXED_NAMES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".3gp", ".3g2")  # (a phone's 3GP is an MP4)
COPY_LEAD = 1.5  # seconds a stream copy from another container is sought before the start


def _copy_seek(ffprobe: str, source: str, start: float) -> str | float:
    """Where a stream copy seeks its input: to the start in an INDEXED container (by its name:
    an ffprobe run would be much of a copy's cost), else COPY_LEAD before it.  Those seek by
    timestamp and the copy begins at the next key frame: a camera's .mpeg (an MPEG program
    stream, as .mpg, .vob, .mod are) copied from 2.5 s began 0.3 s into the moment.  Key frames
    there come every half second or so (DVD, HDV, camcorders), so the copy is a little longer
    instead, as a stream copy may be.  That point is put on the video's time base (see
    on_ticks): ffmpeg shifts the copy's timestamps by it rounded to a tick, a frame in an AVI,
    and the copy, as long as asked from there, lost the frame shown at the moment's end when
    that began in the last half frame (a 1 fps timelapse's copy of 4.75-5.25 s ended at 5.0 s)."""
    if source.lower().endswith(INDEXED_NAMES):
        return "input"
    try:
        tick = ratio(_ffprobe(ffprobe, source, "-select_streams", "v:0", "-show_entries", "stream=time_base")
                     .decode("ascii", "replace").strip())
    except (OSError, subprocess.SubprocessError):
        tick = None
    return on_ticks(max(0.0, start - COPY_LEAD), tick)


KEY_WINDOW = 8.0  # seconds before the start first searched for a key frame (then 4x more, ...)


def _ffprobe(ffprobe: str, source: str, *args: str, of: str = "csv=p=0") -> bytes:
    """What ffprobe writes about source (its errors unread), within PROBE_TIMEOUT."""
    return subprocess.run([ffprobe, "-v", "error", *args, "-of", of, "file:" + source],
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=PROBE_TIMEOUT).stdout


def _video_packets(ffprobe: str, source: str, begin: float, end: float) -> list[tuple[str, str, str]]:
    """(pts_time, dts_time, flags) as ffprobe writes them, '' where it writes none, of the video
    packets it reads from ``begin`` to ``end`` (absolute times: seeking to the key frame before)."""
    lines = _ffprobe(ffprobe, source, "-select_streams", "v:0", "-read_intervals", f"{begin:.6f}%{end:.6f}",
                     "-show_entries", "packet=pts_time,dts_time,flags").decode("ascii", "replace").split()
    return [tuple((line.split(",") + ["", "", ""])[:3]) for line in lines]


def _exact_seek(ffprobe: str, source: str, start: float) -> tuple[float, float, str]:
    """(where to seek the input, where the cut begins, its frame rate) for an exact cut at
    ``start`` (seconds from the file's start).  The seek: the beginning in an indexed container
    (MP4/MOV, Matroska/WebM), else a quarter second before the last video key frame at or before
    it; 0.0 (decode from the start: slow, always right) where ffprobe cannot tell.  The
    beginning: where the frame on screen at ``start`` begins, plus the whole slots of the cut's
    rate that fit before ``start`` (see SHOWN); ``start`` where ffprobe cannot tell."""
    try:
        found = json.loads(_ffprobe(ffprobe, source, "-select_streams", "v:0", "-show_entries",
                                    "format=format_name,start_time:stream=time_base,r_frame_rate,avg_frame_rate",
                                    of="json") or b"{}")
    except (OSError, subprocess.SubprocessError, ValueError):
        return 0.0, start, FALLBACK_RATE
    form = found.get("format") or {}
    stream = (found.get("streams") or [{}])[0]
    tick, rate = ratio(stream.get("time_base")), _rate(stream)
    slot = 1 / eval_rate(rate)
    indexed = bool(INDEXED & set(str(form.get("format_name", "")).split(",")))
    origin = _number(form.get("start_time")) or 0.0  # packet times may begin later (MPEG-TS)
    window = 0.0 if indexed else KEY_WINDOW  # (an indexed container's seek lands on the key frame)
    try:
        while True:
            begin = max(0.0, start - window)
            # to a second past the start: a frame shown before it may come after one shown past it
            keys, shown = [], []
            for pts, dts, flags in _video_packets(ffprobe, source, origin + begin, origin + start + 1.0):
                if _number(pts) is None:
                    continue
                shown.append(float(pts) - origin)
                if "K" in flags and float(pts) <= origin + start + 1e-6:
                    keys.append((float(pts), _packet_time(dts, pts)))
            if indexed or keys or begin <= 0:
                break
            window *= 4
        seek = on_ticks(start, tick) if indexed else \
            on_ticks(max(0.0, min(max(keys)) - origin - 0.25), tick) if keys else 0.0
    except (OSError, subprocess.SubprocessError, ValueError):
        return (start if indexed else 0.0), start, rate
    # the frame on screen at the start (or the one after, when it begins within the leeway);
    # where the video begins after it, its first frame
    before = [t for t in shown if t <= start + _leeway(rate)]
    frame = max(before) if before else min(shown, default=None)
    if frame is None:
        return seek, start, rate
    if start < frame <= start + _leeway(rate):  # counts as on screen at the start: the cut begins with it
        return seek, frame, rate  # (laid a slot earlier, it began with the frame before, 1-5 ms of it in the moment)
    begin = frame + math.floor((start - frame) / slot + 1e-6) * slot
    begin = max(0.0, min(start, on_ticks(begin, tick) if begin > frame + 1e-6 else begin))
    return min(seek, begin) if indexed else seek, begin, rate


def exact_begin(ffprobe: str, source: str, start: float) -> float:
    """Where an exact cut of ``source`` at ``start`` begins in the source (see SHOWN): such a
    cut, a page's preview among them, shows at its own time t the source's frame at begin + t."""
    return _exact_seek(ffprobe, source, start)[1]


def key_seeks(ffprobe: str, source: str, times: list[float], format_name: str | None = None) -> list[float]:
    """Where to seek ffmpeg's input (-ss before -i, -noaccurate_seek) so that decoding reaches
    the frame on screen at each of ``times`` (seconds from the file's start): the time itself in
    an indexed container (MP4/MOV, Matroska/WebM: see INDEXED), else, as _exact_seek does, a
    quarter second before the last video key frame at or before it, found from the packets (one
    ffprobe run for all of them); the times themselves where ffprobe cannot tell (a thumbnail a
    little late rather than none: decoding 3 hours from the start outlasts the page's timeout).
    ``format_name``: ffprobe's, where the caller knows it.  The page's thumbnails of a transport
    stream, sought to their time, showed the key frame after it: up to half a second late in a
    camcorder's .mts, a GOP (10 s) late in a screen recorder's, past the moment's end."""
    if not times or INDEXED & set(str(format_name or "").split(",")):
        return list(times)
    try:
        form = (json.loads(_ffprobe(ffprobe, source, "-show_entries", "format=format_name,start_time", of="json")
                           or b"{}").get("format") or {})
        if INDEXED & set(str(form.get("format_name", "")).split(",")) or "format_name" not in form:
            return list(times)
        origin, first, window = _number(form.get("start_time")) or 0.0, min(times), KEY_WINDOW
        while True:
            begin = max(0.0, first - window)
            keys = []  # (shown from, where its decoding begins) of each key frame, from the file's start
            for pts, dts, flags in _video_packets(ffprobe, source, origin + begin, origin + max(times)):
                if "K" in flags and _number(pts) is not None:
                    keys.append((float(pts) - origin, min(float(pts), _packet_time(dts, pts)) - origin))
            if any(shown <= first + 1e-6 for shown, _ in keys) or begin <= 0:
                break
            window *= 4
    except (OSError, subprocess.SubprocessError, ValueError):
        return list(times)
    return [max(0.0, max((at for shown, at in keys if shown <= t + 1e-6), default=0.25) - 0.25) for t in times]


def _leeway(rate: str) -> float:
    """Seconds by which a frame beginning after a cut's start (before its end) still counts as
    on screen there (is not): 5 ms, a quarter of a frame above 50 fps.  A phone's frame times
    jitter by a few ms: a cut at 1.0-3.0 s of one began with the 0.967 s frame and ended with the
    frame timed 2.9986 s, 61 frames for 60.  No one sees a frame shown for 5 ms."""
    return min(0.005, 0.25 / eval_rate(rate))


def eval_rate(rate: str) -> float:
    """A rate as _rate writes it ('30000/1001', '1/2*48') as a number."""
    value = 1.0
    for factor in rate.split("*"):
        value *= ratio(factor) if "/" in factor else float(factor)
    return value


def _packet_time(*values: str) -> float | None:
    """The first of ffprobe's packet times given (pts_time, dts_time) that it knows, else None."""
    return next((t for t in map(_number, values) if t is not None), None)


def on_ticks(seconds: float, tick: float | None) -> float:
    """``seconds`` down to a whole number of the video stream's time base where that is coarse
    (an AVI's is one frame): ffmpeg shifts every timestamp by the seek point rounded to it, and
    a seek point half a frame off (2.05 s at 30 fps) moved the frame at the start one slot on."""
    if not tick or tick < 0.001:
        return seconds
    return math.floor(seconds / tick + 1e-6) * tick


def _without_filters(codec_args: list[str]) -> tuple[list[str], list[str], list[str]]:
    """codec_args less their -vf and -af (ffmpeg uses only the last of each), and those filters."""
    rest, video, sound = [], [], []
    args = iter(codec_args)
    for arg in args:
        if arg in ("-vf", "-filter:v", "-af", "-filter:a"):
            (video if arg in ("-vf", "-filter:v") else sound).append(next(args, "null"))
        else:
            rest.append(arg)
    return rest, video, sound


def _frames_in(ffprobe: str, source: str, start: float, seconds: float) -> int | None:
    """Video packets of source timed in [start, start + seconds), or None when ffprobe cannot
    tell.  Cheap: ffprobe seeks there and reads packets, decoding nothing."""
    try:  # times in vmr are from the file's start; packet times may begin later (MPEG-TS)
        origin = float(_ffprobe(ffprobe, source, "-show_entries", "format=start_time").strip() or 0.0)
        begin, end = origin + start, origin + start + seconds  # an absolute end: '%+' counts from the key frame
        lines = _ffprobe(ffprobe, source, "-select_streams", "v:0", "-read_intervals", f"{begin:.3f}%{end:.3f}",
                         "-show_entries", "packet=pts_time,dts_time").decode("ascii", "replace").split()
        # a packet without a pts (an MPEG program stream's, key frames too) by its dts: counted by
        # pts alone, 49 frames of 60 made a copy 8 frames short look whole
        times = [t for t in (_packet_time(*(line.split(",") + [""])[:2]) for line in lines) if t is not None]
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return sum(begin - 1e-6 <= t < end for t in times) or None


def _wrong(ffprobe: str, target: str, seconds: float, expected=None, sound=None) -> str | None:
    """Why the cut in target is not the moment asked for, or None when it is: no video frame,
    shorter than asked by more than 5 % (a quarter second, two frames, at least), or, with
    ``expected()`` (the source's video frames in the moment, asked only when the cut holds
    fewer than its frame rate implies), missing more than a tenth of them; or (NO_SOUND), with
    ``sound()`` (whether the source has sound), no sound where the source has some; or
    (EARLY_SOUND, a stream copy) sound that ends before its picture starts."""
    cmd = [ffprobe, "-v", "error", "-count_packets", "-show_entries",
           "stream=codec_type,nb_read_packets,avg_frame_rate,r_frame_rate,start_time,duration:format=duration",
           "-of", "json", "file:" + target]
    try:
        done = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=PROBE_TIMEOUT)
        data = json.loads(done.stdout or b"{}")
        every = data.get("streams") or []
        streams = [s for s in every if s.get("codec_type") == "video"] or [{}]
        audio = [s for s in every if s.get("codec_type") == "audio"]
        frames = int(streams[0].get("nb_read_packets") or 0)
        length = float((data.get("format") or {}).get("duration") or 0.0)
        picture = _number(streams[0].get("start_time"))
        sound_end = (_number(audio[0].get("start_time")) or 0.0) + _number(audio[0].get("duration")) \
            if audio and _number(audio[0].get("duration")) is not None else None
        frame = _seconds_per_frame(streams[0].get("avg_frame_rate")) or _seconds_per_frame(
            streams[0].get("r_frame_rate"))  # an Ogg copy has no average rate (0/0)
    except (OSError, subprocess.SubprocessError, ValueError):
        return "the cut could not be read back"
    if frames == 0:
        return "the cut holds no video frame"
    if sound is not None and not int((audio or [{}])[0].get("nb_read_packets") or 0) and sound():
        return NO_SOUND
    if expected is not None and frame > 0 and frames < 0.9 * seconds / frame:
        wanted = expected()
        if wanted and frames < wanted - max(2, wanted // 10):
            return f"{FEWER} {frames} of the moment's {wanted} video frames"
    if length < seconds - max(0.25, 0.05 * seconds, 2 * frame):
        return f"the cut is {length:.2f} s long instead of {seconds:.2f} s"
    if expected is not None and None not in (picture, sound_end) and sound_end < picture - 0.5:
        return EARLY_SOUND  # a copy that kept the last packet of sound that ended before the moment
    return None


# The footage read back.  A re-encode of the right length with the wrong frames passed every
# check above: an exact cut 11.5 s after its key frame in MPEG-TS/PS held the file's first second
# (an -itsoffset ffmpeg took for a timestamp jump), and the ffmpeg doing the cut is the system's,
# whichever version it is.  So the cut's first frame is compared with the source's frames where it
# belongs (the frame on screen at the cut's beginning), both decoded LOOK x LOOK in grey, the source through
# the cut's own video filters (a preview's scale and tone-mapping), the source's LOOK_SLOTS slots
# either side of that time through the fps filter at the cut's rate (a frame a slot off, a scene
# change there, a VFR phone's jitter are not a different picture): a cut frame matching none of
# those is other footage.  The two sides decode at once (about 0.4 s a cut here, most of it the
# source's frames from its key frame; a middle frame too cost 1 s a cut).  A stream copy is not
# looked at: its packets are the source's own, from a key frame before the start whose time only
# the source's packets tell (the ffprobe run a copy is chosen to save: see _copy_seek), and what
# has gone wrong with copies is frames missing, counted above.  Where the frames cannot be
# decoded or counted, nothing is said: the checks above judge that.
LOOK = 32  # pixels a side
LOOK_SLOTS = 2
# LOOK_LIMIT: the mean absolute difference (grey levels of 255) above which no source frame
# near its time is the cut's frame.  Measured on good cuts (2026-12-02): exact cuts 0.03-0.48
# (the phone's VFR video with its edit list, vtest.avi, tree.avi, movie-hello .mpeg/.avi/.mp4/.ogg,
# a long-GOP MPEG-TS 11.5 s after its key frame, 1080p, 10-bit HEVC PQ and HLG), the page's
# previews (crf 28) 0.15-0.8, 2.5 tone-mapped from HDR; wrong footage: the MPEG-TS bug's first
# second 16 (testsrc2) to 100+ (the tests' coloured frames), a cut 3 s off 4-8 in moving real
# footage (vtest.avi, the phone's), 0.6-3 in footage that hardly moves (no check can tell those).
# 10 is four times the worst good cut: what is refused is plainly other footage.
LOOK_LIMIT = 10.0


def _footage_wrong(ffmpeg: str, source: str, target: str, begin: float, rate: str, codec_args: list[str],
                   seek: float, timeout: float | None) -> str | None:
    """Why the re-encoded cut in target does not begin with the source's frame at ``begin`` (see
    LOOK), or None when it does or when that cannot be told.  ``seek``: where the cut's input
    was sought (_exact_seek)."""
    slot = 1 / eval_rate(rate)
    span = 2 * LOOK_SLOTS + 1
    small = f"scale={LOOK}:{LOOK}:flags=area,format=gray,setsar=1"
    # the cut's own filters go on the source's frames only: the cut went through them already
    # (a tone-mapping run twice, told BT.2020 of an SDR cut, made a good HLG preview 17 levels off)
    filters = ",".join([*_without_filters(codec_args)[1], small])
    first = max(0.0, begin - LOOK_SLOTS * slot)
    # (frames before a key frame sought past the span's start are its first, repeated)
    cut_frames, source_frames = _grey_frames(ffmpeg, [
        (["-i", "file:" + target], f"trim=end_frame=1,{small}"),
        ([*(["-ss", f"{seek:.6f}", "-noaccurate_seek"] if seek > 0 else []), "-i", "file:" + source],
         f"fps=fps={rate}:start_time={max(0.0, first - seek):.6f},trim=end_frame={span},{filters}")], timeout)
    size = LOOK * LOOK
    if len(cut_frames) != size or len(source_frames) != span * size:
        return None  # not decoded, or the source ends within the span: not told
    nearest = min(sum(abs(a - b) for a, b in zip(cut_frames, source_frames[j * size:(j + 1) * size])) / size
                  for j in range(span))
    if nearest > LOOK_LIMIT:
        return (f"the cut shows other footage than the source at {begin:.2f} s (its first frame differs "
                f"from the source's there by {nearest:.0f} grey levels of 255)")
    return None


def _grey_frames(ffmpeg: str, runs: list[tuple[list[str], str]], timeout: float | None) -> list[bytes]:
    """For each (input arguments, filter chain) the LOOK x LOOK grey frames the chain makes of the
    input's first video stream, one after another (b"" where ffmpeg fails); the runs go at once."""
    started = []
    for inputs, chain in runs:
        cmd = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", *inputs, "-map", "0:v:0", "-vf", chain,
               "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]
        try:
            started.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL))
        except OSError:
            started.append(None)
    out, deadline = [], time.monotonic() + (timeout or PROBE_TIMEOUT)  # one wait for both, not one each
    for proc in started:
        try:
            data = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))[0] if proc else b""
            out.append(data if proc and proc.returncode == 0 else b"")
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            out.append(b"")
    return out


def _has_sound(ffprobe: str, source: str) -> bool:
    """Whether source has an audio stream (False when ffprobe cannot tell)."""
    try:
        return bool(subprocess.run([ffprobe, "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=index",
                                    "-of", "csv=p=0", "file:" + source], capture_output=True,
                                   stdin=subprocess.DEVNULL, timeout=PROBE_TIMEOUT).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return False


def _seconds_per_frame(rate) -> float:
    """1 / an ffprobe rate ('30000/1001'), or 0.0 when it says nothing ('0/0', missing)."""
    per_second = ratio(rate)
    return 1 / per_second if per_second and per_second > 0 else 0.0


def _disk_full(target: str) -> bool:
    try:
        return shutil.disk_usage(os.path.dirname(target) or ".").free < MIN_FREE
    except OSError:
        return False
