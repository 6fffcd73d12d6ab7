"""``--html``: one self-contained page to look at, play and pick search results.

Reading "0:12:03.5–0:12:09.0" tells little; a page shows each moment as a
strip of thumbnails and a player limited to the moment (a media-fragment URL
``file:///path#t=start,end``).  It works offline: thumbnails are inlined as
data: URIs, there is no framework and no network request, only a few lines of
vanilla JS (stop at the end, build the ``vmr export`` line from checkboxes).
Every name comes from the file system and is escaped: a file called
``<img src=x onerror=...>.mp4`` is text on the page, never an element.

Browsers play few of the formats cameras write (AVI, MPEG-2, WMV...): a
moment in such a file plays from a small H.264 preview of that moment that
``preview.py`` makes and caches in the library; files a browser plays are
linked as they are.  The target is checked (``user_file_target``) before
the slow part, and progress goes to stderr.
"""

from __future__ import annotations

import base64
import html
import os
import secrets
import subprocess
import sys
import time
import urllib.parse
import webbrowser
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .cut import exact_begin
from .paths import printable, shell_word, user_file_target, write_user_file
from .preview import DEINTERLACE_ONE, MAX_SECONDS, Previews, PreviewError, browser_plays, media_info
from .timecodes import timecode

THUMBS = 4
THUMB_WIDTH = 160
FFMPEG_TIMEOUT = 30


def esc(text: str) -> str:
    """HTML-escape text that may hold surrogate escapes (non-UTF-8 names)."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return html.escape(text, quote=True)


def file_url(path: str, start: float | None = None, end: float | None = None) -> str:
    """file:// URL of the exact bytes of path ('#', '%', newlines, bad UTF-8 all encoded)."""
    url = "file://" + urllib.parse.quote(os.fsencode(os.path.abspath(path)))
    if start is not None and end is not None:
        url += f"#t={start:.3f},{end:.3f}"
    return url


def thumb_times(start: float, end: float, count: int = THUMBS) -> list[float]:
    """Centres of count equal slices of the moment: never its very last frame."""
    span = max(0.0, end - start)
    return [start + span * (i + 0.5) / count for i in range(count)]


def thumbnails(path: str, start: float, end: float, count: int = THUMBS,
               width: int = THUMB_WIDTH, ffmpeg: str = "ffmpeg", hdr: str = "",
               format_name: str | None = None, interlaced: bool = False,
               tick: float | None = None) -> list[bytes | None]:
    """count small JPEGs across the moment from one ffmpeg call; None where it failed.

    One input per time, each sought before -i to the key frame before it; of each, the frame
    on screen at its time is scaled (display aspect, autorotated) and the frames are
    concatenated into one MJPEG stream.  ffmpeg's own seek would drop that frame (see SHOWN in
    cut.py): a sparse file's thumbnail showed the frame after, even one past the moment.  So
    timestamps stay the file's (-copyts, from 0) and the fps filter, from the thumbnail's time
    on (in milliseconds), gives the last frame timed at or before it.  ``hdr``: the video is HDR,
    and these filters (``media_info``) tone-map its thumbnails to SDR, after the scale.  Where a
    seek does not land on the key frame before its time (MPEG-TS/PS), an input is sought to that
    key frame, found from the packets (cut.key_seeks; ``format_name``: ffprobe's, where known).
    ``interlaced``: each frame is deinterlaced before the scale (yadif: bwdif passes a lone frame
    through as it is), or its two fields, woven, show everything that moves twice.  ``tick``: the
    stream's time base (``media_info``): the fps filter rounds its start to the nearest tick, so
    in an AVI (a tick a frame) a time in a frame's second half showed the next frame, and half a
    second late in a 1 fps timelapse; each time is put on the last tick at or before it (cut.on_ticks).
    """
    from .cut import key_seeks, on_ticks

    times = [on_ticks(t, tick) for t in thumb_times(start, end, count)]
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-copyts", "-start_at_zero"]
    for seek in key_seeks(_sibling(ffmpeg, "ffprobe"), os.path.abspath(path), times, format_name):
        cmd += ["-ss", f"{seek:.3f}", "-noaccurate_seek", "-i", "file:" + os.path.abspath(path)]
    deinterlace = DEINTERLACE_ONE + "," if interlaced else ""
    chains = [f"[{i}:v:0]fps=1000:start_time={t:.6f},trim=end_frame=1,setpts=PTS-STARTPTS,{deinterlace}"
              f"scale=w={width}:h='max(2,trunc(ow/dar/2)*2)',setsar=1{',' + hdr if hdr else ''}[f{i}]"
              for i, t in enumerate(times)]
    graph = ";".join(chains) + ";" + "".join(f"[f{i}]" for i in range(count)) + f"concat=n={count}:v=1:a=0,setpts=N/TB[v]"
    cmd += ["-filter_complex", graph, "-map", "[v]", "-fps_mode", "passthrough",
            "-f", "image2pipe", "-c:v", "mjpeg", "-q:v", "5", "pipe:1"]
    try:
        done = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=FFMPEG_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return [None] * count
    frames = _split_jpegs(done.stdout) if done.returncode == 0 else []
    frames = frames[:count]
    return frames + [None] * (count - len(frames))


def _split_jpegs(data: bytes) -> list[bytes]:
    """Split an MJPEG stream at end-of-image markers (0xFFD9 never occurs inside: stuffing)."""
    frames, begin = [], 0
    while True:
        start = data.find(b"\xff\xd8", begin)
        end = data.find(b"\xff\xd9", start + 2) if start >= 0 else -1
        if end < 0:
            return frames
        frames.append(data[start:end + 2])
        begin = end + 2


STYLE = """
*{box-sizing:border-box}body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1em;background:#f6f6f4;color:#222}
h1{font-size:1.4em;margin:.2em 0}.meta{color:#666;margin-bottom:1em}
.result{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.7em;margin:.7em 0}
.head{display:flex;gap:1em;align-items:baseline;flex-wrap:wrap}.rank{font-weight:bold;font-size:1.2em}
.path{font-family:ui-monospace,monospace;word-break:break-all;white-space:pre-wrap;color:#333}
.score,.span{font-variant-numeric:tabular-nums;color:#555}
.body{display:flex;gap:.7em;align-items:flex-start;flex-wrap:wrap;margin-top:.5em}
.strip{display:flex;gap:3px}.thumb{width:160px;border-radius:3px;background:#ccc;display:block}
.none{width:160px;height:90px;display:flex;align-items:center;justify-content:center;color:#777;font-size:12px}
video{width:320px;max-height:240px;background:#000;border-radius:3px;display:block}
.player{max-width:320px}.note{color:#666;font-size:12px;margin-top:.2em}
.missing{color:#a00;background:#fff3f3;padding:.5em;border-radius:3px}
#export{position:sticky;top:0;background:#f6f6f4;padding:.4em 0;font-family:ui-monospace,monospace}
#cmd{width:100%;box-sizing:border-box;font:inherit;padding:.3em}
"""

SCRIPT = """
for (const v of document.querySelectorAll('video')) {
  const s = +v.dataset.start, e = +v.dataset.end;
  v.addEventListener('timeupdate', () => { if (v.currentTime >= e) v.pause(); });
  v.addEventListener('play', () => { if (v.currentTime >= e - 0.05 || v.currentTime < s) v.currentTime = s; });
}
const boxes = document.querySelectorAll('input.pick'), cmd = document.getElementById('cmd');
function update() {
  const ranks = [...boxes].filter(b => b.checked).map(b => b.value);
  cmd.value = ranks.length ? cmd.dataset.base + ' ' + ranks.join(' ') : '(tick results to export)';
}
boxes.forEach(b => b.addEventListener('change', update)); update();
"""


def vmr_command(library: str | None, words: str) -> str:
    """A command line to paste: it names the library (shell-quoted) unless it is the default one,
    so that pasted later, in another shell, it acts on the library the page shows."""
    where = f" --library {shell_word(library)}" if library else ""
    return f"vmr{where} {words}"


def _player_html(result: dict, media: dict, search_id: int, library: str | None = None) -> str:
    """The <video> of one moment: the original when browsers play it, else its preview."""
    rank, start, end = int(result["rank"]), float(result["start"]), float(result["end"])
    play = f"<code>{esc(vmr_command(library, f'play --search {int(search_id)} {rank}'))}</code>"
    if media.get("preview"):
        offset, src = start, media["preview"]
        first, last = 0.0, max(0.0, min(end - start, MAX_SECONDS))
        note = (f'<div class="note">preview: {esc(media["why"])} does not play in a browser; '
                f'{play} opens the original in your player</div>')
    else:
        offset, src, first, last = 0.0, result["video"], start, end
        note = ""
        if media.get("why"):
            reason = f' (no preview: {esc(media["error"])})' if media.get("error") else ""
            note = (f'<div class="note">{esc(media["why"])} may not play in a browser{reason}; '
                    f'{play} opens it in your player</div>')
    url = esc(file_url(src, first, last))
    kind = "preview" if media.get("preview") else "original"
    return (f'<div class="player"><video controls preload="metadata" src="{url}" data-start="{first:.3f}" '
            f'data-end="{last:.3f}" data-offset="{offset:.3f}" data-source="{kind}"></video>{note}</div>')


def _result_html(result: dict, frames: list[bytes | None] | None, media: dict | None = None,
                 search_id: int = 0, library: str | None = None) -> str:
    rank, start, end = int(result["rank"]), float(result["start"]), float(result["end"])
    head = (f'<div class="head"><label><input type="checkbox" class="pick" value="{rank}"> '
            f'<span class="rank">#{rank}</span></label>'
            f'<span class="span">{timecode(start)} – {timecode(end)}</span>'
            f'<span class="score">score {float(result["score"]):.3f}</span>'
            f'<span class="path">{esc(printable(result["video"]))}</span></div>')
    if frames is None:
        body = ('<div class="missing">The source video no longer exists (moved or deleted since '
                'indexing?); run <code>vmr index</code> and search again.</div>')
    else:
        imgs = []
        for t, jpeg in zip(thumb_times(start, end, len(frames)), frames):
            if jpeg is None:
                imgs.append('<span class="thumb none">no frame</span>')
            else:
                data = base64.b64encode(jpeg).decode("ascii")
                imgs.append(f'<img class="thumb" alt="frame at {timecode(t)}" title="{timecode(t)}" '
                            f'src="data:image/jpeg;base64,{data}">')
        body = f'<div class="strip">{"".join(imgs)}</div>' + _player_html(result, media or {}, search_id, library)
    if frames is not None and result.get("warning"):  # where_now's: changed since the search, forgotten...
        head += f'<div class="missing">{esc(result["warning"])}</div>'
    return f'<section class="result" data-rank="{rank}">{head}<div class="body">{body}</div></section>'


def _prepare(result: dict, previews: Previews | None, infos: dict, ffmpeg: str) -> tuple:
    """(thumbnails, media) of one result: None thumbnails when the source is gone."""
    path = result["video"]
    if not os.path.isfile(path):
        return None, {}
    start, end = float(result["start"]), float(result["end"])
    if path not in infos:
        infos[path] = media_info(path, ffprobe=_sibling(ffmpeg, "ffprobe"))
    info = infos[path]
    media: dict = {}
    if info is not None:  # (not readable as a video: the "no frame" thumbnails say so)
        plays, why = browser_plays(info, path)
        media["why"] = why
        if not plays and previews is not None:
            try:
                media["preview"] = previews.get(path, start, end, hdr=info.get("hdr") or "",
                                                interlaced=info["interlaced"])
            except PreviewError as exc:
                media["error"] = str(exc)
    frames = _preview_thumbnails(media["preview"], path, start, end, ffmpeg) if media.get("preview") else None
    if frames is None:
        info = info or {}
        frames = thumbnails(path, start, end, ffmpeg=ffmpeg, hdr=info.get("hdr") or "", format_name=info.get("format"),
                            interlaced=bool(info.get("interlaced")), tick=info.get("tick"))
    return frames, media


def _preview_thumbnails(preview: str, path: str, start: float, end: float, ffmpeg: str) -> list[bytes] | None:
    """The moment's thumbnails taken from its preview, or None to take them from the source.  The
    preview was just decoded from the source at full size (a phone's 4K HEVC: most of a page's
    time); its small H.264 frames, already turned upright, tone-mapped and deinterlaced, are read
    again for a tenth of that.  It shows the source's time begin + t at its own t (cut.SHOWN), so
    each thumbnail is the frame the source shows at its time, as from the source itself."""
    if end - start > MAX_SECONDS:  # (the preview holds the moment's first MAX_SECONDS only)
        return None
    begin = exact_begin(_sibling(ffmpeg, "ffprobe"), os.path.abspath(path), max(0.0, start))
    frames = thumbnails(preview, start - begin, end - begin, ffmpeg=ffmpeg, format_name="mp4")
    return None if None in frames else frames


def _sibling(ffmpeg: str, tool: str) -> str:
    """ffprobe beside the ffmpeg in use (tests pass an ffmpeg path)."""
    folder = os.path.dirname(ffmpeg)
    return os.path.join(folder, tool) if folder else tool


def render(search: dict, ffmpeg: str = "ffmpeg", previews_dir: str | None = None,
           progress: bool | None = None, library: str | None = None) -> str:
    """The page as a string; thumbnails and previews are made in parallel (ffmpeg is the slow part).

    ``previews_dir``: the library folder whose ``previews/`` caches playable
    previews; None links every original as it is.  ``library``: the library the page's
    commands name with --library (None: the default library, not named).
    """
    from .progress import progress as bar_for

    results = search["results"]
    previews = Previews(previews_dir, ffmpeg=ffmpeg) if previews_dir else None
    infos: dict = {}
    bar = bar_for(len(results), "page thumbnails", "result", enabled=progress)

    def prepare(result):
        try:
            return _prepare(result, previews, infos, ffmpeg)
        finally:
            bar.update(1)

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            prepared = list(pool.map(prepare, results))
    finally:
        bar.close()
    if previews is not None:
        previews.prune(keep=[m["preview"] for _f, m in prepared if m.get("preview")])
    query = esc(search["query"])
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(search.get("created_at") or 0))
    sections = "\n".join(_result_html(r, f, m, int(search["id"]), library) for r, (f, m) in zip(results, prepared))
    if not results:
        sections = '<p class="missing">No results.</p>'
    nonce = secrets.token_urlsafe(16)  # CSP: only this script runs, no inline handlers
    base = vmr_command(library, f"export --search {int(search['id'])} --clip")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
            f'media-src file:; style-src \'unsafe-inline\'; script-src \'nonce-{nonce}\'">'
            f'<title>vmr: {query}</title><style>{STYLE}</style></head><body>\n'
            f'<h1>{query}</h1><div class="meta">search {int(search["id"])} · {len(results)} results · '
            f'model {esc(str(search.get("model") or "-"))} · {esc(created)}</div>\n'
            f'<div id="export"><input id="cmd" readonly data-base="{esc(base)}"></div>\n'
            f'{sections}\n<script nonce="{nonce}">{SCRIPT}</script></body></html>\n')


def write_page(search: dict, html_path: str, ffmpeg: str = "ffmpeg", previews_dir: str | None = None,
               progress: bool | None = None, library: str | None = None) -> str:
    """Write the page atomically over a new name or a regular file (a symlink is written through).

    Returns the absolute path of the file written.  The target is checked
    before the (slow) thumbnails and previews are made.
    """
    target = user_file_target(html_path, "--html", ours=is_page)
    text = render(search, ffmpeg=ffmpeg, previews_dir=previews_dir, progress=progress, library=library)

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(text)

    write_user_file(target, write)
    return target


def is_page(head: bytes) -> bool:
    """Whether a file's first bytes are a page ``render`` wrote: only such a file is replaced."""
    return head.startswith(b"<!DOCTYPE html>") and b"<title>vmr: " in head


def open_in_browser(path: str) -> bool:
    """Best effort: a machine without a browser still has the page written.  Whether a
    browser was started.  The browser writes to stderr: it inherits vmr's stdout otherwise, and
    its chatter ('Opening in existing browser session.') landed in the middle of --json."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):  # no stdout to keep clean (closed: sys.stdout is None)
        saved = None
    try:
        if saved is not None:
            os.dup2(2, 1)
        return bool(webbrowser.open(Path(os.path.abspath(path)).as_uri()))
    except Exception:  # webbrowser.Error, or a broken browser command
        return False
    finally:
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
