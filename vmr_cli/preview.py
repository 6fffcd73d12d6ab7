"""Playable previews of moments in files a browser cannot play.

Browsers play H.264 (8-bit 4:2:0), VP8, VP9 and AV1 with AAC, MP3, Opus or
Vorbis in MP4 or WebM; AVI, MPEG-1/2, WMV, MPEG-4 part 2, HEVC, Theora...
give a grey player (10 of 12 results of a camera library).  For a moment in
such a file the page links a preview instead: the moment alone, re-encoded by
ffmpeg as a small H.264/AAC MP4 (at most 640 px a side and MAX_SECONDS long),
made when a page needs it and kept in the library's ``previews/`` folder.

A preview's name is a hash of the source's path, size, mtime, inode and
device, the moment and the settings: a changed video gets a new name, so a
page never shows a stale preview.  Each is written to a temp file in that
folder and renamed into place (two pages at once both produce a whole file),
needs no lock (an index running beside it never touches the folder), and the
folder is kept under CACHE_BYTES by dropping the least recently used.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time

from .cut import cut
from .errors import VmrError, first_line
from .probe import HDR_TRANSFERS, ratio

FOLDER = "previews"
VERSION = 4            # part of every key: change it when the settings below change (2: cuts start with
                       # the frame on screen, transport streams from the key frame before: cut.py;
                       # 3: sound kept through decoding errors, as in an Ogg file's empty audio packets;
                       # 4: whole frames laid on the source's own, sound in step: cut.py)
MAX_SIDE = 640
MAX_SECONDS = 300.0
CACHE_BYTES = 512 * 1024 * 1024
TEMP_MAX_AGE = 3600.0  # a temp file this old was left by a killed writer
FFMPEG_TIMEOUT = 600

# What Chromium and Firefox both play from a file (ffprobe's names).
PLAYABLE = {
    "mp4": ({"h264", "vp9", "av1"}, {"aac", "mp3", "opus", "flac", "alac"}),
    "webm": ({"vp8", "vp9", "av1"}, {"vorbis", "opus"}),
}
PLAIN_PIXELS = {"yuv420p", "yuvj420p"}  # H.264 in 10 bit or 4:2:2/4:4:4 plays in few browsers
# HDR (a phone's HLG or PQ, BT.2020) as an SDR screen shows it: to linear light where 203 nits
# (HDR's reference white) is 1.0, BT.709's primaries, highlights above 0.8 compressed up to a
# 1000-nit peak (peak=5: a phone's HLG, and most PQ), 8-bit BT.709; about as fast as no mapping
# at a thumbnail's size.  As vmr's embedded frames are (frames.tone_map).
TONE_MAP = ("zscale=t=linear:npl=203{given},format=gbrpf32le,zscale=p=bt709,tonemap=mobius:param=0.8:peak=5:"
            "desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p")  # {given}: see tone_map_filter


class PreviewError(VmrError):
    """A preview could not be made; the page says why and keeps the original."""


def media_info(path: str, ffprobe: str = "ffprobe") -> dict | None:
    """{'format', 'video': (codec, pix_fmt), 'audio': [codecs], 'hdr': str, 'interlaced': bool,
    'tick': seconds or None} of path; None when ffprobe fails.  'hdr': where the video's colour transfer is PQ or HLG, the
    filters that tone-map it (tone_map_filter), else ''; 'interlaced': its frames are two fields
    (a camcorder's 1080i, DV, broadcast TV), as ffprobe's field order says; 'tick': its time base,
    the grid its frames' times lie on (an AVI's is a frame)."""
    cmd = [ffprobe, "-v", "error", "-print_format", "json", "-show_entries",
           "format=format_name:stream=codec_type,codec_name,pix_fmt,color_transfer,color_primaries,color_space,"
           "field_order,time_base"
           ":stream_disposition=attached_pic",
           "file:" + os.path.abspath(path)]
    try:
        done = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
        data = json.loads(done.stdout or b"{}") if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if not data:
        return None
    streams = data.get("streams") or []
    video = [s for s in streams if s.get("codec_type") == "video"
             and not (s.get("disposition") or {}).get("attached_pic")]
    return {"format": str((data.get("format") or {}).get("format_name", "")),
            "video": (str(video[0].get("codec_name", "")), str(video[0].get("pix_fmt", ""))) if video else None,
            "audio": [str(s.get("codec_name", "")) for s in streams if s.get("codec_type") == "audio"],
            "hdr": tone_map_filter(video[0]) if video and video[0].get("color_transfer") in HDR_TRANSFERS else "",
            "interlaced": bool(video) and video[0].get("field_order") in INTERLACED_ORDERS,
            "tick": (ratio(video[0].get("time_base")) or None) if video else None}


INTERLACED_ORDERS = ("tt", "bb", "tb", "bt")  # ffprobe's field orders of interlaced video (else progressive, unknown)
DEINTERLACE = "bwdif=mode=send_frame:deint=interlaced"  # one frame per frame, only frames flagged interlaced
DEINTERLACE_ONE = "yadif=mode=send_frame:deint=interlaced"  # a lone frame (a thumbnail): bwdif passes one as it is


def tone_map_filter(stream: dict) -> str:
    """TONE_MAP for an HDR stream (ffprobe's fields), told BT.2020 where the stream does not say
    its primaries or matrix: zscale cannot convert without them, and every thumbnail and the
    preview of such a file failed (the frames vmr embeds take BT.2020 there too: frames.tone_map)."""
    known = {"", "unknown", "reserved"}
    given = "".join([":pin=bt2020:p=bt2020" if stream.get("color_primaries", "") in known else "",
                     ":min=bt2020nc" if stream.get("color_space", "") in known else ""])
    return TONE_MAP.format(given=given)


def container(format_name: str, path: str) -> str | None:
    """'mp4' or 'webm' when a browser reads the container, else None."""
    names = set(format_name.split(","))
    if "mp4" in names or "mov" in names:
        return "mp4"
    if "webm" in names or "matroska" in names:  # one ffprobe name for both; codecs decide
        return "webm" if os.path.splitext(path)[1].lower() in (".webm", ".mkv") else None
    return None


def browser_plays(info: dict | None, path: str) -> tuple[bool, str]:
    """(True, '') when browsers play path from the file, else (False, what they cannot play)."""
    if not info or not info["video"]:
        return False, "the file could not be read"
    codec, pixels = info["video"]
    kind = container(info["format"], path)
    label = f"{codec} in {info['format'].split(',')[0].upper() or '?'}"
    if kind is None:
        return False, label
    videos, audios = PLAYABLE[kind]
    if codec not in videos:  # the container's codecs: 'h264 in MATROSKA' (not its pixels)
        return False, label
    if codec == "h264" and pixels not in PLAIN_PIXELS:
        return False, f"{codec} ({pixels})"
    bad_audio = [a for a in info["audio"] if a not in audios]
    if bad_audio:
        return False, f"{bad_audio[0]} audio"
    return True, ""


def preview_key(path: str, start: float, end: float, hdr: str = "", interlaced: bool = False) -> str:
    """Changes whenever the file (size, mtime, inode), the moment or the settings change (an HDR
    file's tone-mapped preview, an interlaced file's deinterlaced one, have keys of their own:
    those made before were not)."""
    st = os.stat(path)
    raw = json.dumps([VERSION, MAX_SIDE, MAX_SECONDS, os.fsencode(os.path.abspath(path)).hex(), st.st_size,
                      st.st_mtime_ns, st.st_ino, st.st_dev, round(start, 3), round(end, 3)]
                     + (["tone-mapped"] if hdr else []) + (["deinterlaced"] if interlaced else []))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def preview_codec(side: int = MAX_SIDE, hdr: str = "", interlaced: bool = False) -> list[str]:
    """ffmpeg output options of a preview: H.264/AAC MP4, display aspect and rotation kept, never
    upscaled past ``side``; ``hdr``: the filters that tone-map it to SDR (media_info), after the scale;
    ``interlaced``: deinterlaced first (browsers do not: scaled down, the two fields of a
    camcorder's 1080i showed everything that moves twice, half transparent)."""
    first = DEINTERLACE + "," if interlaced else ""
    scale = (f"{first}scale=w='max(2,trunc(if(gte(dar,1),min({side},iw*sar),min({side},ih)*dar)/2)*2)'"
             f":h='max(2,trunc(ow/dar/2)*2)',setsar=1,{hdr or 'format=yuv420p'}")
    return ["-sn", "-dn", "-map_metadata", "-1", "-vf", scale,
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "28", "-maxrate", "1500k", "-bufsize", "3000k",
            "-c:a", "aac", "-b:a", "96k", "-ac", "2", "-movflags", "+faststart", "-f", "mp4"]


class Previews:
    """The library's preview cache: get(path, start, end) makes or finds one."""

    def __init__(self, library_dir: str, ffmpeg: str = "ffmpeg", max_bytes: int = CACHE_BYTES):
        self.folder = os.path.join(library_dir, FOLDER)
        self.ffmpeg, self.max_bytes = ffmpeg, max_bytes

    def get(self, path: str, start: float, end: float, hdr: str = "", interlaced: bool = False) -> str:
        """Absolute path of the preview of (path, start, end); PreviewError when it cannot be made.
        ``hdr``: the source is HDR, and these filters (``media_info``) tone-map the preview;
        ``interlaced``: the source is interlaced (``media_info``), and the preview deinterlaced."""
        try:
            key = preview_key(path, start, end, hdr, interlaced)
            os.makedirs(self.folder, exist_ok=True)
        except OSError as exc:
            raise PreviewError(f"{exc.strerror or first_line(exc)}") from None
        final = os.path.join(self.folder, key + ".mp4")
        if os.path.isfile(final):
            try:
                os.utime(final)  # recently used: kept by prune
            except OSError:
                pass
            return final
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".mp4", dir=self.folder)
        os.close(fd)
        try:
            seconds = max(0.1, min(end - start, MAX_SECONDS))
            try:
                cut(self.ffmpeg, os.path.abspath(path), max(0.0, start), seconds, tmp, preview_codec(hdr=hdr, interlaced=interlaced),
                    timeout=FFMPEG_TIMEOUT)
            except VmrError as exc:  # the cut's reason (no frame, a full disk, ffmpeg's own words)
                raise PreviewError(f"ffmpeg failed: {exc}") from None
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return final

    def prune(self, keep=()) -> int:
        """Drop least recently used previews past max_bytes (never those in keep) and old temp files."""
        keep = {os.path.abspath(k) for k in keep}
        entries, total, removed = [], 0, 0
        try:
            names = os.listdir(self.folder)
        except OSError:
            return 0
        now = time.time()
        for name in names:
            full = os.path.join(self.folder, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            if name.startswith(".tmp-"):
                if now - st.st_mtime > TEMP_MAX_AGE:
                    removed += _unlink(full)
                continue
            if name.endswith(".mp4"):
                entries.append((st.st_mtime, st.st_size, full))
                total += st.st_size
        for _mtime, size, full in sorted(entries):
            if total <= self.max_bytes:
                break
            if full not in keep and _unlink(full):
                total -= size
                removed += 1
        return removed


def _unlink(path: str) -> int:
    try:
        os.unlink(path)
        return 1
    except OSError:
        return 0
