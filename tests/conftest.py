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
