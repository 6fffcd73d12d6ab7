"""Shared fixtures: a library per test, the tiny CLIP, generated and real videos.

Every test gets its own library through VMR_LIBRARY, and no test touches the
network (HF_HUB_OFFLINE=1).  The tiny CLIP is saved with save_pretrained and
loaded through the same path as a hub model.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import subprocess
import sqlite3
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # examples/ is not a package on the path by default

TEST_MEDIA = Path(os.environ.get("VMR_TEST_MEDIA", ROOT / ".test-media"))
VTEST = TEST_MEDIA / "usr/share/doc/opencv-doc/examples/data/vtest.avi"
PHONE = TEST_MEDIA / "usr/share/forensics-samples/original-files/movie1/VID_20191220_170832.mp4"


@pytest.fixture(autouse=True)
def isolated_library(tmp_path, monkeypatch):
    library = tmp_path / "library"
    monkeypatch.setenv("VMR_LIBRARY", str(library))
    monkeypatch.setenv("XDG_VIDEOS_DIR", str(tmp_path / "Videos"))  # vmr export's default folder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return library


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from examples.tiny_clip import make_tiny_clip

    return str(make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"), seed=0))


@pytest.fixture(scope="session")
def other_model(tmp_path_factory):
    from examples.tiny_clip import make_tiny_clip

    return str(make_tiny_clip(tmp_path_factory.mktemp("other-clip"), seed=1, projection_dim=32))


def make_video(path, segments=(("red", 4.0),), size="160x120", fps=10, rotate=None, audio=False,
               gop=None) -> Path:
    """An H.264 file of solid-colour segments (name or 'testsrc'), each (colour, seconds)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["ffmpeg", "-v", "error", "-y"]
    for colour, seconds in segments:
        source = (f"testsrc2=size={size}:rate={fps}" if colour == "testsrc"
                  else f"color=c={colour}:size={size}:rate={fps}")
        cmd += ["-f", "lavfi", "-t", str(seconds), "-i", source]
    n = len(segments)
    if audio:
        total = sum(s for _, s in segments)
        cmd += ["-f", "lavfi", "-t", str(total), "-i", "sine=frequency=440:sample_rate=44100"]
    chain = "".join(f"[{i}:v]" for i in range(n)) + f"concat=n={n}:v=1:a=0[v]"
    cmd += ["-filter_complex", chain, "-map", "[v]"]
    if audio:
        cmd += ["-map", f"{n}:a", "-c:a", "aac"]
    cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p"]
    if gop:
        cmd += ["-g", str(gop)]
    if rotate is not None:
        tmp = path.with_name(path.name + ".plain.mp4")
        subprocess.run(cmd + [str(tmp)], check=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(tmp), "-c", "copy",
                        "-metadata:s:v:0", f"rotate={rotate}", str(path)], check=True)
        tmp.unlink()
    else:
        subprocess.run(cmd + ["file:" + str(path)], check=True)
    return path


def ffprobe_duration(path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json",
                          "file:" + str(path)], capture_output=True, check=True)
    return float(json.loads(out.stdout)["format"]["duration"])


def vmr(*args, expect: int | None = 0):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    from click.testing import CliRunner

    from vmr_cli.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if expect is not None:
        assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
    return result.exit_code, result.stdout, result.stderr


def vmr_json(*args, expect: int | None = 0):
    code, out, _err = vmr(*args, "--json", expect=expect)
    return json.loads(out)


@pytest.fixture
def videos(tmp_path):
    """A folder of three short, different videos."""
    folder = tmp_path / "videos"
    make_video(folder / "red_then_blue.mp4", [("red", 3.0), ("blue", 3.0)])
    make_video(folder / "green.mp4", [("green", 4.0)])
    make_video(folder / "sub" / "pattern.mp4", [("testsrc", 5.0)], audio=True)
    return folder


@pytest.fixture
def small(tmp_path):
    """One short video and one query: a trimmer trains for an epoch in seconds."""
    make_video(tmp_path / "v" / "green.mp4", [("red", 2.0), ("green", 2.0)])
    (tmp_path / "ann.txt").write_text("green 2 4##a green screen\n")
    return tmp_path


def without_permission_override(cmd: list[str]) -> list[str]:
    """cmd run so that file permissions apply: as root (CI), without CAP_DAC_OVERRIDE."""
    if os.geteuid() != 0:
        return cmd
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    if not shutil.which("setpriv") or subprocess.run(prefix + ["true"]).returncode != 0:
        pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE (setpriv missing or not allowed)")
    return prefix + cmd


def vmr_subprocess(library, *args):
    cmd = without_permission_override([sys.executable, "-m", "vmr_cli", "--library", str(library),
                                       *map(str, args)])
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, errors="replace",
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))


@contextlib.contextmanager
def small_disk(folder, size: str, instead: str):
    """``folder`` (made here) as a tmpfs of ``size``, so writes there really run out of space;
    the test is skipped where mounting is not allowed (``instead`` names the test covering it)."""
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                           capture_output=True, check=False).returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here; {instead} covers the case")
    try:
        yield folder
    finally:
        gc.collect()  # libraries that in-process commands left open
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


# HDR phone video, made from testsrc2 (an SDR picture) as a phone records it: 10-bit HEVC,
# BT.2020, PQ or HLG, its reference white (203 nits) where the SDR picture's white is.
HDR_SOURCE = "testsrc2=s=160x90:r=10:d=1"


def sdr_source_frames():
    """The SDR picture HDR_SOURCE's HDR files were made from: uint8 (N, 90, 160, 3)."""
    import numpy as np

    raw = subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", HDR_SOURCE, "-vf", "format=rgb24",
                          "-f", "rawvideo", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 90, 160, 3)


def make_hdr_video(path, transfer: str):
    """HDR_SOURCE as 10-bit HEVC, BT.2020, ``transfer`` 'smpte2084' (PQ, by zscale) or
    'arib-std-b67' (HLG: BT.2100's inverse OOTF and OETF worked out here; this zscale's HLG
    applies its gamma per channel, not to the luminance as BT.2100 and iPhones do)."""
    import numpy as np

    hevc = ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:crf=16",
            "-color_primaries", "bt2020", "-color_trc", transfer, "-colorspace", "bt2020nc", str(path)]
    if transfer == "smpte2084":
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", HDR_SOURCE, "-vf",
                        "format=gbrpf32le,zscale=tin=bt709:min=bt709:pin=bt709:t=smpte2084:m=bt2020nc:p=bt2020"
                        ":npl=203:rangein=tv:range=tv,format=yuv420p10le", *hevc], check=True)
        return path
    # display light in BT.2020 primaries, 1.0 = 203 nits, as planes G, B, R
    raw = subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", HDR_SOURCE, "-vf",
                          "format=gbrpf32le,zscale=tin=bt709:pin=bt709:t=linear:p=bt2020:npl=203,format=gbrpf32le",
                          "-f", "rawvideo", "-"], capture_output=True, check=True).stdout
    g, b, r = np.frombuffer(raw, np.float32).reshape(-1, 3, 90, 160).clip(0, None).transpose(1, 0, 2, 3) * 0.203
    luminance = np.maximum(0.2627 * r + 0.6780 * g + 0.0593 * b, 1e-9)  # of a 1000-nit display
    a, bb, c = 0.17883277, 0.28466892, 0.55991073
    planes = []
    for display in (g, b, r):
        scene = display * luminance ** (-0.2 / 1.2)  # inverse OOTF, system gamma 1.2
        planes.append(np.where(scene <= 1 / 12, np.sqrt(3 * scene), a * np.log(np.maximum(12 * scene - bb, 1e-9)) + c))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gbrpf32le", "-s", "160x90", "-r", "10",
                    "-i", "-", "-vf", "zscale=tin=arib-std-b67:t=arib-std-b67:pin=bt2020:p=bt2020:m=bt2020nc:range=tv"
                    ",format=yuv420p10le", *hevc],
                   input=np.stack(planes, 1).astype(np.float32).tobytes(), check=True)
    return path


def saturation(rgb, channels: int = -1) -> float:
    """Mean of max - min over a pixel's channels (numpy array, their axis ``channels``): 0 for grey."""
    rgb = rgb.astype(float)
    return float((rgb.max(channels) - rgb.min(channels)).mean())


def damage_page(db, name: str) -> None:
    """Overwrite the root page of table or index ``name`` of the SQLite file db with garbage (after
    a full checkpoint): a damaged catalog page."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (name,)).fetchone()[0]
    conn.close()
    with open(db, "r+b") as handle:
        handle.seek((root - 1) * page)
        handle.write(bytes([0x0D, 0xFF, 0xFF, 0x00]) * (page // 4))
