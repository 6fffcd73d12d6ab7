"""A long video's index resumed: what a save of its progress costs, and what a resume saves.

    python bench/resume.py [--part save|run|both] [--minutes 10] [--rounds 5]

``save``: Keeper's save of a video's progress (concatenating its chunks, the arrays' sha256, the
safetensors file written, fsynced and renamed: partial.Store.save) and Store.load of it, for the
state of a video indexed 10 minutes, 1 hour and 3 hours far, at ViT-B/32's size (512-value
embeddings, one frame a second, 2 s clips, chunks of CHUNK_CLIPS), in a library on this
machine's disk (bench/out/), medians of ``--rounds``.  Random arrays: time only.

``run``: a ``--minutes`` long 640x360 testsrc2 video (generated once into bench/out/), indexed
with the ViT-B/32-sized CLIP of bench/vitb32.py (random weights: time only), every command a
fresh ``vmr`` process: a whole index into a fresh library; an index stopped by SIGINT half way
through (``--stop-at`` of the whole index's time; its progress saved every SAVE_EVERY_SECONDS of work and when it stops); the index run
again, which resumes.  Prints the wall times, where the resume started, and what the resumed
run took against the whole one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import OUT, ROOT


def save_cost(rounds: int) -> None:
    import torch

    from vmr_cli import indexer, partial
    from vmr_cli.library import Library
    from vmr_cli.scan import Found

    top = OUT / "resume_save"
    shutil.rmtree(top, ignore_errors=True)
    top.mkdir(parents=True)
    lib = Library(str(top / "library"))
    lib.record_encoder("vitb32-sized", 512, 224, 2.0, weights={"sha256": "0" * 64, "files": {}},
                       preprocessing={"image_size": 224, "mean": [0.5] * 3, "std": [0.5] * 3})
    video = top / "video.bin"  # a file for the state to describe (its size, time and fingerprint)
    video.write_bytes(os.urandom(1 << 20))
    st = video.stat()
    item = Found(str(video), st.st_size, st.st_mtime_ns)
    store = partial.Store(lib, "vmr bench", "torchcodec", indexer.CHUNK_CLIPS)
    print("| video done | frames | state (MB) | save (ms) | load (ms) |")
    print("|---|---|---|---|---|")
    for label, seconds in (("10 min", 600), ("1 h", 3600), ("3 h", 3 * 3600)):
        clips = seconds // 2
        chunk = indexer.CHUNK_CLIPS
        embeddings = [torch.randn(2 * chunk + (k == 0), 512) for k in range(clips // chunk)]
        measures = [(torch.rand(chunk, 3, 3, 16), torch.rand(chunk)) for _ in range(clips // chunk)]
        times = [t * 1.0 for t in range(2 * (clips + 10) + 1)]
        saves, loads = [], []
        for _ in range(rounds):
            keeper = partial.Keeper(store)
            keeper.begin(item, times, None, clips + 10)
            started = time.perf_counter()
            keeper._save(embeddings, measures)
            saves.append(time.perf_counter() - started)
            started = time.perf_counter()
            saved = store.load(item, 224, clips + 10)
            loads.append(time.perf_counter() - started)
            assert saved is not None and saved.clips == clips // chunk * chunk
        size = os.path.getsize(partial.state_path(lib.directory, item.path)) / 1e6
        print(f"| {label} | {2 * clips + 1} | {size:.1f} | {1000 * statistics.median(saves):.0f} | "
              f"{1000 * statistics.median(loads):.0f} |")
    lib.close()


def run_cost(minutes: float, stop_at: float) -> None:
    from vitb32 import make_vitb32

    model = OUT / "vitb32"
    if not (model / "model.safetensors").exists():
        make_vitb32(model)
    video = OUT / f"resume_video_{minutes:g}min" / "long.mp4"
    if not video.exists():
        video.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size=640x360:rate=30:duration={minutes * 60:g}", "-c:v", "libx264",
                        "-preset", "veryfast", "-pix_fmt", "yuv420p", str(video)], check=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(
        p for p in [str(ROOT), os.environ.get("PYTHONPATH")] if p))

    def index(library: Path, stop_after: float | None = None):
        cmd = [sys.executable, "-m", "vmr_cli", "--library", str(library), "index", str(video.parent),
               "--model", str(model), "--json"]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if stop_after is not None:
            time.sleep(stop_after)
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate()
        wall = time.perf_counter() - started
        return wall, proc.returncode, (json.loads(out) if out.strip() else None), err

    whole_lib, resumed_lib = OUT / "resume_whole", OUT / "resume_resumed"
    for folder in (whole_lib, resumed_lib):
        shutil.rmtree(folder, ignore_errors=True)
    whole, code, summary, err = index(whole_lib)
    assert code == 0, err
    print(f"whole index: {whole:.1f} s ({summary['clips']} clips)")
    stopped, code, _summary, err = index(resumed_lib, stop_after=whole * stop_at)
    print(f"stopped by SIGINT after {stopped:.1f} s: exit {code}; {err.strip().splitlines()[-2:]}")
    again, code, summary, err = index(resumed_lib)
    assert code == 0, err
    print("  " + "\n  ".join(err.strip().splitlines()))
    resumed = summary["resumed"][0] if summary["resumed"] else None
    print(f"resumed index: {again:.1f} s, from clip {resumed['from_clip'] if resumed else '-'} of "
          f"{resumed['clips'] if resumed else summary['clips']}; {again / whole:.2f} of the whole index's time, "
          f"{whole - again:.1f} s saved")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["save", "run", "both"], default="both")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stop-at", type=float, default=0.6, help="of the whole index's time (run)")
    args = parser.parse_args()
    if args.part in ("save", "both"):
        save_cost(args.rounds)
    if args.part in ("run", "both"):
        run_cost(args.minutes, args.stop_at)
