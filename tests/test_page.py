"""The results page: unit tests of vmr_cli.page, and the page rendered in headless Chromium.

The browser test speaks the DevTools protocol over ``--remote-debugging-pipe``
(NUL-separated JSON on fds 3 and 4), so it needs no websocket package.
"""

from __future__ import annotations

import fcntl
import html
import json
import os
import select
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import make_video
from vmr_cli.errors import VmrError
from vmr_cli.page import file_url, open_in_browser, timecode, write_page

HOSTILE = "<img src=x onerror=alert(1)>.mp4"


def fake_search(results, query="red car", search_id=3):
    rows = [{"rank": i + 1, "video": str(video), "start": start, "end": end, "score": 0.5 - i / 10,
             "video_id": i + 1, "search_id": search_id} for i, (video, start, end) in enumerate(results)]
    return {"id": search_id, "query": query, "model": "tiny", "options": {}, "stats": {},
            "created_at": time.time(), "results": rows}


# -- unit tests ---------------------------------------------------------------------------

def test_timecode():
    assert timecode(12.04) == "0:00:12.0"
    assert timecode(3723.46) == "1:02:03.5"


def test_file_url_percent_encodes_odd_bytes():
    odd = os.fsdecode(b"/v/a b#1%?\"'<\n\xff.mp4")
    url = file_url(odd, 1.5, 3.25)
    assert url == "file:///v/a%20b%231%25%3F%22%27%3C%0A%FF.mp4#t=1.500,3.250"
    assert urllib.parse.unquote_to_bytes(url[len("file://"):url.index("#")]) == os.fsencode(odd)


def test_page_escapes_names_and_query(tmp_path):
    hostile = make_video(tmp_path / HOSTILE, [("red", 2.0)])
    nonutf8 = tmp_path / os.fsdecode(b"caf\xe9 \"quoted\".mp4")
    shutil.copy(hostile, nonutf8)
    page = tmp_path / "page.html"
    written = write_page(fake_search([(hostile, 0.0, 1.0), (nonutf8, 0.5, 1.5)],
                                     query="<script>alert(2)</script>"), str(page))
    assert written == str(page)
    text = page.read_text(encoding="utf-8")
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;.mp4" in text
    assert "<script>alert(2)" not in text and "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    assert "caf\\xe9 &quot;quoted&quot;.mp4" in text  # shown as text, bytes kept in the URL
    assert "caf%E9%20%22quoted%22.mp4#t=0.500,1.500" in text
    assert text.count('<img class="thumb"') == 8  # 4 per result, all decoded
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".vmr-page-")]


def test_missing_source_gets_a_note(tmp_path):
    gone = tmp_path / "gone.mp4"
    page = tmp_path / "page.html"
    write_page(fake_search([(gone, 0.0, 2.0)]), str(page))
    text = page.read_text()
    assert "no longer exists" in text
    assert "<video" not in text and '<img class="thumb"' not in text


def test_a_result_whose_file_changed_since_the_search_says_so_on_the_page(tmp_path):
    """show --html warned of it on stderr only: the page showed the new file's frames as the moment."""
    odd = make_video(tmp_path / "a <b> & c\nd.mp4", [("red", 2.0)])
    search = fake_search([(odd, 0.0, 1.0), (odd, 1.0, 2.0)])
    warning = f"result 1: {odd} changed since this search (modified or re-indexed); search again"
    search["results"][0]["warning"] = warning
    write_page(search, str(tmp_path / "page.html"))
    text = (tmp_path / "page.html").read_text()
    first, second = text.split('<section class="result"')[1:]
    assert f'<div class="missing">{html.escape(warning)}</div>' in first and "a <b>" not in text
    assert "changed since" not in second and first.count('<img class="thumb"') == 4


def test_thumbnails_show_the_frame_on_screen_at_their_time(tmp_path):
    """ffmpeg's seek drops the frame still on screen at the time: a screen recording holding a red
    frame from 1 s to 8 s had the thumbnails of 4-8.4 s all show the blue one of 8 s."""
    from vmr_cli.page import thumb_times, thumbnails

    screen = tmp_path / "screen.mp4"  # no B-frames: with them the 8 s key frame is decoded at 0.9 s, and
    # an MP4 seek to any time after that (by decoding time) lands on it (cut.py's cuts too)
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=64x48:r=10:d=14", "-vf",
                    "drawbox=c=blue:t=fill:enable='gte(t,8)',select='lt(t,1.05)+gte(t,8)'", "-fps_mode", "vfr",
                    "-c:v", "libx264", "-bf", "0", "-pix_fmt", "yuv420p", str(screen)], check=True)

    def colours(start, end):
        shown = []
        for jpeg in thumbnails(str(screen), start, end):
            rgb = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-vf", "scale=1:1", "-f", "rawvideo",
                                  "-pix_fmt", "rgb24", "pipe:1"], input=jpeg, capture_output=True, check=True).stdout
            shown.append("red" if rgb[0] > rgb[2] else "blue")
        return shown

    assert thumb_times(4.0, 8.4)[-1] < 8.0 and colours(4.0, 8.4) == ["red"] * 4
    assert [round(t, 2) for t in thumb_times(7.6, 8.4)] == [7.7, 7.9, 8.1, 8.3]
    assert colours(7.6, 8.4) == ["red", "red", "blue", "blue"]


def one_fps_avi(path) -> Path:
    """6 s of one frame a second, red and blue in turn (frame k at k s; blue where k is odd), as
    an AVI: its time base is a frame (1 s), as in every AVI."""
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=64x48:r=1:d=6", "-vf",
                    "drawbox=c=blue:t=fill:enable='mod(floor(t+0.01),2)'", "-c:v", "mpeg4", "-q:v", "2",
                    str(path)], check=True)
    return path


def thumbnail_colours(jpegs) -> list[str]:
    shown = []
    for jpeg in jpegs:
        rgb = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-vf", "scale=1:1", "-f", "rawvideo",
                              "-pix_fmt", "rgb24", "pipe:1"], input=jpeg, capture_output=True, check=True).stdout
        shown.append("red" if rgb[0] > rgb[2] else "blue")
    return shown


def test_thumbnails_of_an_avi_show_the_frame_on_screen_at_their_time(tmp_path):
    """ffmpeg's fps filter rounds its start time to the stream's time base, a whole frame in an
    AVI: a thumbnail in the second half of a frame showed the next one (half a second late in a
    1 fps timelapse; a frame late in half the thumbnails of a 30 fps AVI)."""
    from vmr_cli.page import _prepare, thumb_times

    timelapse = str(one_fps_avi(tmp_path / "timelapse.avi"))
    assert [round(t, 2) for t in thumb_times(2.2, 4.2)] == [2.45, 2.95, 3.45, 3.95]
    frames, _media = _prepare({"video": timelapse, "start": 2.2, "end": 4.2}, None, {}, "ffmpeg")
    assert thumbnail_colours(frames) == ["red", "red", "blue", "blue"]


def test_a_previewed_moments_thumbnails_come_from_its_preview(tmp_path, monkeypatch):
    """A moment the browser cannot play gets a preview, decoded from the source at full size; the
    thumbnails were then decoded from the source again (a phone's 4K HEVC: 1.9 s of a moment's
    7.3 s).  They come from the small preview now, and show the same frames."""
    from vmr_cli.page import _prepare
    from vmr_cli.preview import Previews

    timelapse = str(one_fps_avi(tmp_path / "timelapse.avi"))
    commands = []
    real_run = subprocess.run

    def run(cmd, *args, **kwargs):
        commands.append([str(part) for part in cmd])
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    frames, media = _prepare({"video": timelapse, "start": 2.2, "end": 4.2},
                             Previews(str(tmp_path / "lib")), {}, "ffmpeg")
    assert media["preview"] and media["why"] == "mpeg4 in AVI"
    thumbnailing = [cmd for cmd in commands if "image2pipe" in cmd]
    assert thumbnailing and all(f"file:{media['preview']}" in cmd and f"file:{timelapse}" not in cmd
                                for cmd in thumbnailing), thumbnailing
    assert thumbnail_colours(frames) == ["red", "red", "blue", "blue"]


def test_unreadable_video_gets_placeholders(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    page = tmp_path / "page.html"
    write_page(fake_search([(broken, 0.0, 2.0)]), str(page))
    text = page.read_text()
    assert text.count('class="thumb none"') == 4 and "<video" in text


def test_refuses_folder_and_missing_parent_overwrites_file(tmp_path):
    search = fake_search([])
    with pytest.raises(VmrError, match="not a folder"):
        write_page(search, str(tmp_path))
    with pytest.raises(VmrError, match="does not exist"):
        write_page(search, str(tmp_path / "nope" / "page.html"))
    page = tmp_path / "page.html"
    page.write_text("old")  # not a page vmr wrote: the user's, left as it is
    with pytest.raises(VmrError, match="exists and is not a file vmr wrote"):
        write_page(search, str(page))
    assert page.read_text() == "old"
    page.write_text("")  # an empty file (touch page.html) is written
    write_page(search, str(page))
    assert "No results" in page.read_text()
    write_page(fake_search([]), str(page))  # a page vmr wrote is replaced
    assert "No results" in page.read_text()


def test_a_killed_page_writes_leftover_goes_with_a_later_write(tmp_path):
    """'vmr search --html PAGE' killed while writing left a '.tmp-...' beside the user's files
    that nothing removed; vmr's own temporary name is removed by a later write, once stale."""
    left = tmp_path / ".vmr-tmp-abcd1234"  # a killed write's, an hour ago and more
    left.write_text("<html>half")
    os.utime(left, (0, 0))
    running = tmp_path / ".vmr-tmp-efgh5678"  # another write's, going on now
    running.write_text("<html>")
    mine = [tmp_path / ".vmr-tmp-notes.txt", tmp_path / ".vmr-tmp-abcd12345"]  # the user's, as old
    for path in mine:
        path.write_text("mine")
        os.utime(path, (0, 0))
    write_page(fake_search([]), str(tmp_path / "page.html"))
    assert sorted(os.listdir(tmp_path)) == sorted([".vmr-tmp-efgh5678", "page.html"] + [p.name for p in mine])


def test_open_in_browser_without_browser(tmp_path, monkeypatch):
    import webbrowser

    seen = []

    def fail(url):
        seen.append(url)
        raise webbrowser.Error("could not locate runnable browser")

    monkeypatch.setattr(webbrowser, "open", fail)
    assert open_in_browser(str(tmp_path / "a b.html")) is False
    assert seen == [(tmp_path / "a b.html").as_uri()]
    monkeypatch.setattr(webbrowser, "open", lambda url: False)  # none found, no error raised
    assert open_in_browser(str(tmp_path / "a b.html")) is False
    monkeypatch.setattr(webbrowser, "open", lambda url: True)
    assert open_in_browser(str(tmp_path / "a b.html")) is True



# -- headless Chromium --------------------------------------------------------------------

def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """Headless Chromium driven over --remote-debugging-pipe: no port, no websocket client."""

    def __init__(self, binary, profile):
        to_chrome_r, self._out = os.pipe()
        self._in, from_chrome_w = os.pipe()

        def child_fds():  # Chromium reads commands on fd 3 and writes replies on fd 4
            a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD_CLOEXEC, 10)  # above 4: no clash
            b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--allow-file-access-from-files", "--mute-audio", "--hide-scrollbars",
                "--autoplay-policy=no-user-gesture-required",
                f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(args, preexec_fn=child_fds, close_fds=False,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf, self._next, self.events, self.session = b"", 0, [], None

    def _read_message(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method, timeout=30, **params):
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_event(self, method, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))

    def evaluate(self, expression, timeout=30):
        result = self.send("Runtime.evaluate", timeout=timeout, expression=expression,
                           awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def open_tab(self):
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def close(self):
        try:
            os.write(self._out, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        os.close(self._in)
        os.close(self._out)


@pytest.fixture
def browser(tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.skip("Chromium not found (install the Debian package 'chromium'; scripts/setup.sh does)")
    chrome = Browser(binary, tmp_path / "chromium-profile")
    try:
        chrome.open_tab()
        yield chrome
    finally:
        chrome.close()


CHECK_PAGE = """
(async () => {
  const videos = [...document.querySelectorAll('video')];
  const meta = v => v.readyState >= 1 ? Promise.resolve() : new Promise((ok, fail) => {
    v.addEventListener('loadedmetadata', ok, {once: true});
    v.addEventListener('error', () => fail(new Error('video error ' + (v.error && v.error.code))), {once: true});
    v.load();
  });
  await Promise.all(videos.map(meta));
  await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
  return {
    rows: [...document.querySelectorAll('section.result')].map(s => +s.dataset.rank),
    videos: videos.map(v => ({start: +v.dataset.start, offset: +v.dataset.offset, current: v.currentTime,
                              src: v.src, source: v.dataset.source})),
    thumbs: [...document.querySelectorAll('img.thumb')].map(i => i.naturalWidth),
    hostile: [...document.querySelectorAll('img')].filter(i => i.getAttribute('src') === 'x').length,
    onerror: document.querySelectorAll('[onerror]').length,
    alerted: window.alerted === true,
    title: document.title,
    text: document.body.innerText,
    h264: document.createElement('video').canPlayType('video/mp4; codecs="avc1.64001e"'),
  };
})()
"""


def test_page_in_headless_chromium(tmp_path, tiny_model, browser):
    from conftest import vmr, vmr_json

    folder = tmp_path / "videos"
    make_video(folder / "red_then_blue.mp4", [("red", 3.0), ("blue", 3.0)])
    make_video(folder / HOSTILE, [("red", 4.0)])
    make_video(folder / "it's a red one.mp4", [("green", 2.0), ("red", 3.0)])
    make_video(folder / "green.mp4", [("green", 3.0)])
    vmr_json("index", folder, "--model", tiny_model)
    page = tmp_path / "out" / "results page.html"
    page.parent.mkdir()
    t0 = time.monotonic()
    found = vmr_json("search", "red", "--html", page)
    search_seconds = time.monotonic() - t0
    results = found["results"]
    assert results and page.is_file()
    assert any(r["video"].endswith(HOSTILE) for r in results)

    browser.send("Page.enable")
    browser.send("Page.addScriptToEvaluateOnNewDocument",
                 source="window.alerted = false; window.alert = () => { window.alerted = true; };")
    browser.send("Emulation.setDeviceMetricsOverride", width=1100, height=900, deviceScaleFactor=1,
                 mobile=False)
    browser.send("Page.navigate", url=page.as_uri())
    browser.wait_event("Page.loadEventFired")
    state = browser.evaluate(CHECK_PAGE, timeout=30)

    assert state["h264"] in ("probably", "maybe"), "this Chromium cannot play H.264"
    assert state["rows"] == [r["rank"] for r in results]
    assert len(state["videos"]) == len(results)
    for result, video in zip(results, state["videos"]):
        assert video["source"] == "original"  # H.264 in MP4: the page plays the file itself
        assert abs(video["current"] - result["start"]) <= 0.1, (result, video)
        assert abs(video["start"] - result["start"]) < 0.001
    assert len(state["thumbs"]) >= 3 * len(results)
    assert all(width > 0 for width in state["thumbs"]), state["thumbs"]
    assert state["hostile"] == 0 and state["onerror"] == 0 and not state["alerted"]
    assert HOSTILE in state["text"] and "it's a red one.mp4" in state["text"]
    assert state["title"] == "vmr: red"

    picked = browser.evaluate("document.querySelectorAll('input.pick')[0].click(); "
                              "document.querySelectorAll('input.pick')[1].click(); "
                              "document.getElementById('cmd').value")
    assert picked == f"vmr export --search {found['search_id']} --clip 1 2"  # the inline script ran

    shot = browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    import base64

    png = base64.b64decode(shot["data"])
    (tmp_path / "page.png").write_bytes(png)
    if os.environ.get("VMR_PAGE_SCREENSHOT"):  # keep one to look at
        Path(os.environ["VMR_PAGE_SCREENSHOT"]).write_bytes(png)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert search_seconds < 30

    again = tmp_path / "again.html"  # vmr show: the same page from the log; a missing folder is refused
    shown = vmr_json("show", found["search_id"], "--html", again)
    assert [r["rank"] for r in shown["results"]] == state["rows"] and again.is_file()
    code, _out, err = vmr("show", found["search_id"], "--html", tmp_path / "nowhere" / "p.html", expect=1)
    assert "does not exist" in err


# -- players that play: previews of what a browser cannot play -----------------------------

def make_avi(path, colour="red", seconds=4.0, codec="mpeg4", audio=True) -> Path:
    """A camera-style AVI: MPEG-4 part 2 (or MJPEG) video, MP3 audio."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-t", str(seconds),
           "-i", f"color=c={colour}:size=160x120:rate=10"]
    if audio:
        cmd += ["-f", "lavfi", "-t", str(seconds), "-i", "sine=frequency=440:sample_rate=44100",
                "-c:a", "libmp3lame"]
    cmd += ["-c:v", codec, "-pix_fmt", "yuvj420p" if codec == "mjpeg" else "yuv420p", "file:" + str(path)]
    subprocess.run(cmd, check=True)
    return path


def test_which_files_a_browser_plays():
    from vmr_cli.preview import browser_plays

    mp4 = "mov,mp4,m4a,3gp,3g2,mj2"
    cases = [
        (mp4, ("h264", "yuv420p"), ["aac"], "a.mp4", True),
        (mp4, ("h264", "yuvj420p"), [], "a.MOV", True),
        (mp4, ("av1", "yuv420p"), ["opus"], "a.mp4", True),
        ("matroska,webm", ("vp9", "yuv420p"), ["opus"], "a.webm", True),
        ("matroska,webm", ("vp8", "yuv420p"), ["vorbis"], "a.mkv", True),
        ("avi", ("mpeg4", "yuv420p"), ["mp3"], "a.avi", False),
        ("avi", ("h264", "yuv420p"), [], "a.avi", False),         # the container
        ("mpeg", ("mpeg2video", "yuv420p"), ["mp2"], "a.mpg", False),
        (mp4, ("hevc", "yuv420p"), ["aac"], "a.mp4", False),
        (mp4, ("h264", "yuv444p"), [], "a.mp4", False),          # High 4:4:4
        (mp4, ("h264", "yuv420p10le"), [], "a.mp4", False),      # High 10
        (mp4, ("h264", "yuv420p"), ["pcm_s16le"], "a.mov", False),  # camera MOV with PCM audio
        (mp4, ("mpeg4", "yuv420p"), ["aac"], "a.mp4", False),
        ("matroska,webm", ("h264", "yuv420p"), ["aac"], "a.mkv", False),
        ("ogg", ("theora", "yuv420p"), ["vorbis"], "a.ogv", False),  # Chromium dropped Theora
        ("asf", ("wmv2", "yuv420p"), ["wmav2"], "a.wmv", False),
    ]
    for format_name, video, audio, name, expected in cases:
        plays, why = browser_plays({"format": format_name, "video": video, "audio": audio}, name)
        assert plays is expected, (format_name, video, audio, name)
        assert bool(why) is not expected
    assert browser_plays(None, "x.mp4") == (False, "the file could not be read")
    # what the page's note says: the container's codecs, or the pixels ('h264 (yuv420p)' blamed an MKV's pixels)
    assert browser_plays({"format": "matroska,webm", "video": ("h264", "yuv420p"), "audio": []}, "a.mkv") == \
        (False, "h264 in MATROSKA")
    assert browser_plays({"format": mp4, "video": ("h264", "yuv444p"), "audio": []}, "a.mp4") == \
        (False, "h264 (yuv444p)")


def test_preview_is_cached_keyed_on_the_file_and_bounded(tmp_path):
    from vmr_cli.preview import Previews, media_info

    avi = make_avi(tmp_path / "-cam\nera.avi")
    previews = Previews(str(tmp_path / "lib"))
    first = previews.get(str(avi), 1.0, 3.0)
    assert os.path.dirname(first) == str(tmp_path / "lib" / "previews")
    info = media_info(first)
    assert info["video"] == ("h264", "yuv420p") and info["audio"] == ["aac"]
    assert 1.9 <= float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                                        "csv=p=0", first], capture_output=True, text=True).stdout) <= 2.2
    made = os.stat(first)
    assert previews.get(str(avi), 1.0, 3.0) == first and os.stat(first).st_ino == made.st_ino  # reused
    assert previews.get(str(avi), 0.0, 2.0) != first                                          # another moment

    make_avi(avi, colour="blue")  # the file changes: a new preview, never the stale one
    os.utime(avi, ns=(made.st_mtime_ns + 10**9, made.st_mtime_ns + 10**9))
    changed = previews.get(str(avi), 1.0, 3.0)
    assert changed != first

    left = tmp_path / "lib" / "previews" / ".tmp-killed.mp4"  # a killed writer's temp file
    left.write_bytes(b"x")
    os.utime(left, (time.time() - 7200, time.time() - 7200))
    os.utime(first, (time.time() - 100, time.time() - 100))  # the least recently used
    small = Previews(str(tmp_path / "lib"), max_bytes=os.path.getsize(changed) + 1)
    small.prune(keep=[changed])
    assert not left.exists() and not os.path.exists(first) and os.path.exists(changed)
    assert sorted(p.name for p in (tmp_path / "lib" / "previews").iterdir()) == [os.path.basename(changed)]


def test_preview_that_fails_leaves_nothing_and_the_page_says_why(tmp_path):
    from vmr_cli.preview import PreviewError, Previews

    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF" + os.urandom(4000))
    previews = Previews(str(tmp_path / "lib"))
    with pytest.raises(PreviewError, match="ffmpeg failed"):
        previews.get(str(broken), 0.0, 2.0)
    assert list((tmp_path / "lib" / "previews").iterdir()) == []  # no temp file left behind

    avi = make_avi(tmp_path / "cam.avi")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "previews").write_text("not a folder")  # previews cannot be written there
    page = tmp_path / "page.html"
    write_page(fake_search([(avi, 0.5, 2.5)]), str(page), previews_dir=str(tmp_path / "ro"))
    text = page.read_text()
    assert 'data-source="original"' in text and "no preview:" in text and "vmr play --search 3 1" in text


def test_page_links_previews_only_for_files_a_browser_cannot_play(tmp_path):
    mp4 = make_video(tmp_path / "phone.mp4", [("red", 3.0)], audio=True)
    avi = make_avi(tmp_path / "camera.avi")
    page = tmp_path / "page.html"
    lib = tmp_path / "lib"
    write_page(fake_search([(mp4, 0.5, 2.5), (avi, 1.0, 3.0)]), str(page), previews_dir=str(lib))
    text = page.read_text()
    made = list((lib / "previews").iterdir())
    assert len(made) == 1  # the AVI's moment only
    assert f'src="{file_url(str(mp4), 0.5, 2.5)}" data-start="0.500" data-end="2.500" data-offset="0.000" ' \
           f'data-source="original"' in text
    assert f'src="{file_url(str(made[0]), 0.0, 2.0)}" data-start="0.000" data-end="2.000" data-offset="1.000" ' \
           f'data-source="preview"' in text
    assert "preview: mpeg4 in AVI does not play in a browser" in text


PLAY_ALL = """
(async () => {
  const out = [];
  for (const v of document.querySelectorAll('video')) {
    v.muted = true;
    if (v.readyState < 2) await new Promise(ok => {
      v.addEventListener('canplay', ok, {once: true}); v.addEventListener('error', ok, {once: true});
      setTimeout(ok, 10000); v.load();
    });
    const before = v.currentTime;
    let refused = null;
    try { await v.play(); } catch (e) { refused = String(e); }
    await new Promise(ok => setTimeout(ok, 700));
    out.push({source: v.dataset.source, offset: +v.dataset.offset, start: +v.dataset.start, src: v.src,
              before, after: v.currentTime, ready: v.readyState, error: v.error && v.error.code,
              refused, width: v.videoWidth});
    v.pause();
  }
  return out;
})()
"""


def test_avi_moments_play_in_headless_chromium(tmp_path, tiny_model, browser):
    """AVI (MPEG-4 part 2 + MP3, and MJPEG) plays through a preview; MP4 plays from the original."""
    from conftest import vmr_json

    folder = tmp_path / "videos"
    make_video(folder / "phone.mp4", [("red", 4.0)], audio=True)
    make_avi(folder / "camera.avi", "red")
    make_avi(folder / "webcam mjpeg.avi", "red", codec="mjpeg", audio=False)
    vmr_json("index", folder, "--model", tiny_model)
    page = tmp_path / "page.html"
    found = vmr_json("search", "red", "--html", page)
    sources = {os.path.basename(r["video"]) for r in found["results"]}
    assert sources == {"phone.mp4", "camera.avi", "webcam mjpeg.avi"}, sources

    browser.send("Page.enable")
    browser.send("Page.navigate", url=page.as_uri())
    browser.wait_event("Page.loadEventFired")
    played = browser.evaluate(PLAY_ALL, timeout=120)
    previews = Path(os.environ["VMR_LIBRARY"]) / "previews"
    assert len(played) == len(found["results"])
    for result, video in zip(found["results"], played):
        original = not result["video"].endswith(".avi")
        assert video["source"] == ("original" if original else "preview"), (result, video)
        if original:
            assert video["src"] == file_url(result["video"], result["start"], result["end"])
        else:
            assert video["src"].startswith(previews.as_uri() + "/")
            assert abs(video["offset"] - result["start"]) < 0.001 and video["start"] == 0.0
        assert video["error"] is None and video["refused"] is None, video
        assert video["ready"] >= 2 and video["width"] > 0, video
        assert video["after"] > video["before"] + 0.05, video  # it actually played


def test_previews_beside_a_running_index_and_a_library_check(tmp_path):
    """Pages make previews without the writer lock; an index's check never removes them."""
    from conftest import vmr
    from vmr_cli.library import Library

    avi = make_avi(tmp_path / "camera.avi")
    lib = Library(None, create=True)
    search_id = lib.catalog.log_search("red", "tiny", {}, {},
                                       [{"rank": 1, "video": str(avi), "start": 0.5, "end": 2.5, "score": 0.9}])
    page = tmp_path / "page.html"
    with lib.writer_lock("vmr index (a test holding the lock)"):
        vmr("show", search_id, "--html", page)
    previews = list((Path(lib.directory) / "previews").iterdir())
    assert len(previews) == 1 and 'data-source="preview"' in page.read_text()
    with lib.writer_lock("vmr index"):
        lib.check(repair=True, deep=True)
        lib.vectors.remove_temp_files()
    lib.close()
    assert list((Path(lib.directory) / "previews").iterdir()) == previews


def test_page_commands_name_a_library_that_is_not_the_default(tmp_path):
    """The copy box and the 'vmr play' note left out --library: pasted, they acted on another library."""
    from vmr_cli.page import render

    clip = make_avi(tmp_path / "clip.avi", seconds=2.0)
    search = fake_search([(clip, 0.0, 1.0)], search_id=2)
    text = render(search, library="/tmp/my lib")
    assert "vmr --library &#x27;/tmp/my lib&#x27; export --search 2 --clip" in text
    assert "<code>vmr --library &#x27;/tmp/my lib&#x27; play --search 2 1</code>" in text
    plain = render(search)  # the default library: not named
    assert "vmr export --search 2 --clip" in plain and "<code>vmr play --search 2 1</code>" in plain


@pytest.mark.parametrize("name", [b"tab\tlib", b"caf\xe9", b"two\nlines", b"back\\slash", b"it's"])
def test_a_page_command_pasted_into_bash_names_the_same_library(tmp_path, name):
    """The library was written shlex.quote(printable(path)): a tab, a newline or a byte that is
    not UTF-8 came out escaped inside single quotes, which the shell takes literally, so the
    pasted command said 'no vmr library at .../tab\\tlib'."""
    import html
    import re

    from vmr_cli.page import render

    clip = make_avi(tmp_path / "clip.avi", seconds=2.0)
    library = os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), name))
    text = html.unescape(render(fake_search([(clip, 0.0, 1.0)], search_id=2), library=library))
    command = re.search(r"vmr --library (.*?) play --search 2 1", text).group(1)
    echoed = subprocess.run(["bash", "-c", f"printf %s {command}"], capture_output=True, check=True).stdout
    assert echoed == os.fsencode(library), command


def test_no_two_names_print_alike():
    """A literal backslash was left as it is: 'nl\\nx' and 'nl<newline>x', or 'bad\\xff' and
    the byte 0xff, printed the same in tables, messages and --paths."""
    from vmr_cli.paths import printable

    names = [b"nl\nx", b"nl\\nx", b"bad\xff", b"bad\\xff", b"a\\\\b", b"a\\b", b"tab\t", b"tab\\t"]
    shown = {printable(os.fsdecode(n)) for n in names}
    assert len(shown) == len(names), shown


def test_search_page_names_the_library_it_was_made_from(tmp_path, tiny_model):
    from conftest import vmr

    make_video(tmp_path / "v" / "red.mp4", [("red", 3.0)])
    library = tmp_path / "other library"
    vmr("--library", library, "index", tmp_path / "v", "--model", tiny_model)
    vmr("--library", library, "search", "red", "--html", tmp_path / "page.html")
    assert f"vmr --library &#x27;{library}&#x27; export --search 1 --clip" in (tmp_path / "page.html").read_text()


@pytest.mark.parametrize("transfer", ["smpte2084", "arib-std-b67"])
def test_an_hdr_videos_thumbnails_and_preview_are_tone_mapped(tmp_path, transfer):
    """A phone's HDR video (PQ or HLG): its thumbnails were grey and washed out (saturation 51 and
    94 against 204, a mean difference to the SDR picture of 75 and 53 of 255); its preview too."""
    import numpy as np
    from conftest import make_hdr_video, saturation, sdr_source_frames

    from vmr_cli.page import _prepare, thumb_times
    from vmr_cli.preview import Previews, media_info

    path = str(make_hdr_video(tmp_path / "phone.mov", transfer))
    source = sdr_source_frames().astype(float)

    def first_frame(*source: str, data: bytes | None = None) -> np.ndarray:
        raw = subprocess.run(["ffmpeg", "-v", "error", *source, "-frames:v", "1", "-vf", "format=rgb24", "-f", "rawvideo",
                              "-"], input=data, capture_output=True, check=True).stdout
        return np.frombuffer(raw, np.uint8).reshape(90, 160, 3).astype(float)

    frames, _media = _prepare({"video": path, "start": 0.0, "end": 0.8}, None, {}, "ffmpeg")
    for t, jpeg in zip(thumb_times(0.0, 0.8), frames):
        thumb, shown = first_frame("-f", "mjpeg", "-i", "-", data=jpeg), source[int(t * 10 + 1e-6)]
        assert np.abs(thumb - shown).mean() < 30 and saturation(thumb) > 0.75 * saturation(shown), t
    preview = Previews(str(tmp_path / "lib"), ffmpeg="ffmpeg").get(path, 0.0, 0.8, hdr=media_info(path)["hdr"])
    first = first_frame("-i", preview)
    assert np.abs(first - source[0]).mean() < 30 and saturation(first) > 0.75 * saturation(source[0])
    # the page takes them from that preview (HEVC in MOV): tone-mapped once, not twice
    frames, media = _prepare({"video": path, "start": 0.0, "end": 0.8}, Previews(str(tmp_path / "lib")), {}, "ffmpeg")
    assert media["preview"] == preview
    for t, jpeg in zip(thumb_times(0.0, 0.8), frames):
        thumb, shown = first_frame("-f", "mjpeg", "-i", "-", data=jpeg), source[int(t * 10 + 1e-6)]
        assert np.abs(thumb - shown).mean() < 30 and saturation(thumb) > 0.75 * saturation(shown), t
    # the same stream, its primaries and matrix not said: zscale could not convert it, every thumbnail failed
    untagged = str(tmp_path / "untagged.mov")
    subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-c", "copy", "-bsf:v",
                    "hevc_metadata=colour_primaries=2:matrix_coefficients=2", untagged], check=True)
    frames, _media = _prepare({"video": untagged, "start": 0.0, "end": 0.8}, None, {}, "ffmpeg")
    thumb = first_frame("-f", "mjpeg", "-i", "-", data=frames[0])
    assert np.abs(thumb - source[0]).mean() < 30 and saturation(thumb) > 0.75 * saturation(source[0])


def test_the_preview_of_interlaced_video_is_deinterlaced(tmp_path, tiny_model):
    """A camcorder's interlaced .mts (which browsers do not play: the page makes a preview) was
    previewed with its two fields woven into each picture, as browsers show them: combs, or
    scaled down, everything that moves shown twice.  ffmpeg's idet tells from the pictures."""
    import re

    from conftest import vmr_json

    folder = tmp_path / "videos"
    interlaced_mts(folder / "camcorder.mts")
    vmr_json("index", folder, "--model", tiny_model)
    vmr_json("search", "a test pattern", "--top-k", "1", "--html", tmp_path / "page.html")
    [preview] = (Path(os.environ["VMR_LIBRARY"]) / "previews").glob("*.mp4")

    def detected(path) -> dict[str, int]:
        log = subprocess.run(["ffmpeg", "-hide_banner", "-i", str(path), "-vf", "idet", "-f", "null", "-"],
                             capture_output=True, text=True).stderr
        counts = re.search(r"Multi frame detection: TFF: *(\d+) BFF: *(\d+) Progressive: *(\d+)", log)
        return dict(zip(("tff", "bff", "progressive"), map(int, counts.groups())))

    assert detected(folder / "camcorder.mts")["tff"] > 100  # the source's pictures are two fields
    seen = detected(preview)
    assert seen["progressive"] > 10 * (seen["tff"] + seen["bff"]), seen


def interlaced_mts(path, size: str = "320x256") -> Path:
    """6 s of a moving test pattern as a camcorder records it: interlaced H.264 (top field first),
    50 fields a second woven into 25 frames, in MPEG-TS."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=50:d=6", "-vf",
                    "tinterlace=mode=interleave_top,setfield=tff", "-flags", "+ildct+ilme", "-c:v", "libx264",
                    "-preset", "ultrafast", "-f", "mpegts", str(path)], check=True)
    return path


def test_thumbnails_of_interlaced_video_are_deinterlaced(tmp_path):
    """The page's thumbnails of a camcorder's interlaced .mts showed each frame's two fields woven
    together: combs (at the source's width), or scaled down, everything that moves twice.  A
    woven frame's neighbouring lines differ far more than lines two apart (one field)."""
    import numpy as np

    from vmr_cli.page import thumbnails
    from vmr_cli.preview import media_info

    source = interlaced_mts(tmp_path / "camcorder.mts", size="720x576")  # (PAL DV's size)
    assert media_info(str(source))["interlaced"]

    def combs(jpeg: bytes) -> float:
        raw = subprocess.run(["ffmpeg", "-v", "error", "-f", "mjpeg", "-i", "pipe:0", "-f", "rawvideo", "-pix_fmt",
                              "gray", "pipe:1"], input=jpeg, capture_output=True, check=True).stdout
        rows = np.frombuffer(raw, np.uint8).astype(float).reshape(-1, 720)
        return np.abs(2 * rows[1:-1] - rows[:-2] - rows[2:]).mean() / np.abs(rows[2:] - rows[:-2]).mean()

    woven = thumbnails(str(source), 1.0, 5.0, width=720)
    assert all(combs(jpeg) > 2 for jpeg in woven)  # (the test's file is what it says)
    made = thumbnails(str(source), 1.0, 5.0, width=720, interlaced=True)
    assert all(jpeg and combs(jpeg) < 1.4 for jpeg in made), [combs(jpeg) for jpeg in made]
