"""What a video file is: duration, frame rate, size, rotation (ffprobe)."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass

from .errors import DecodeError, VmrError


@dataclass
class VideoInfo:
    duration: float
    fps: float
    width: int      # as displayed, after rotation
    height: int
    rotation: int   # degrees, as recorded in the file
    codec: str

    def as_row(self) -> dict:
        return asdict(self)  # the catalog keeps the codec since schema 2


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise VmrError(f"{name} not found on PATH; install ffmpeg (e.g. 'apt-get install ffmpeg' or 'brew install ffmpeg')")
    return path


def probe(path: str) -> VideoInfo:
    """Read stream metadata; DecodeError with ffprobe's reason when it is not a video."""
    cmd = [require_tool("ffprobe"), "-v", "error", "-print_format", "json", "-show_streams",
           "-show_format", "-select_streams", "v:0", "file:" + path]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DecodeError("ffprobe timed out") from None
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DecodeError(_clean_reason(reason[-1] if reason else "ffprobe failed", path))
    data = json.loads(done.stdout or b"{}")
    streams = [s for s in data.get("streams", []) if s.get("codec_type") == "video"
               and not s.get("disposition", {}).get("attached_pic")]
    if not streams:
        raise DecodeError("no video stream (audio-only, image or not a media file)")
    stream = streams[0]
    duration = _number(stream.get("duration")) or _number(data.get("format", {}).get("duration"))
    fps = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if not duration or duration <= 0:
        raise DecodeError("no duration: zero frames or a still image")
    if width <= 0 or height <= 0:
        raise DecodeError("video stream has no frame size")
    rotation = _rotation(stream)
    if rotation % 180:
        width, height = height, width
    return VideoInfo(duration=float(duration), fps=float(fps or 0.0), width=width, height=height,
                     rotation=rotation, codec=str(stream.get("codec_name", "")))


def _clean_reason(reason: str, path: str) -> str:
    """ffprobe prefixes errors with the file name; the catalog already has it."""
    for prefix in ("file:" + path + ": ", path + ": "):
        if reason.startswith(prefix):
            return reason[len(prefix):]
    return reason


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _rate(text):
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
