"""Speed at the size users run: index and search with a ViT-B/32-sized CLIP on this CPU.

    python bench/realsize.py [--videos 8] [--duration 120] [--rounds 3] [--index-runs 3]

A CLIP with ViT-B/32's shapes and random weights (bench/vitb32.py) costs what
openai/clip-vit-base-patch32 costs.  On a synthetic-world library of
``--videos`` videos of ``--duration`` seconds, everything as a user runs it
(fresh ``vmr`` processes), side by side in one run:

- index: ``vmr index`` wall time over (per-frame encode time x seconds of
  video): encoder passes per second of video, decoding and start-up included;
  the per-frame time is measured in the same run, at the batch size vmr uses,
  before, between and after ``--index-runs`` index runs (medians of each);
- F, the floor every search pays: a fresh process that imports what ``vmr
  search`` imports (torchcodec included, which a search imports when it
  decodes; not transformers, which vmr no longer needs for a CLIP model),
  loads the same model and encodes the query text, and ends as vmr does,
  without the interpreter's teardown (0.4 s with torch loaded);
- search: a first search (frame cache empty, as after indexing) and a second
  search with another query, each as a fresh ``vmr search --json`` process,
  over F measured just before it; rounds alternate, medians are reported,
  with each query's own split of where the time went (``stats.time``).

The model's answers mean nothing (random weights): this measures time only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from common import OUT, ROOT, cached_world

FLOOR = """
import sys, time
import faiss, numpy, safetensors, sqlite3, tokenizers, torch  # what every vmr search imports
from vmr_cli.decode import import_torchcodec; import_torchcodec()  # what a search that decodes imports
import vmr_cli.cli, vmr_cli.library, vmr_cli.search
from vmr_cli.encoders import ClipEncoder
ClipEncoder(sys.argv[1]).encode_text([sys.argv[2]])
vmr_cli.cli.exit_process(0)  # without the interpreter's teardown, as vmr ends
"""

PER_FRAME = """
import json, sys, time
import torch
from vmr_cli.encoders import ClipEncoder
encoder = ClipEncoder(sys.argv[1])
frames = torch.randint(0, 256, (int(sys.argv[2]), 3, encoder.image_size, encoder.image_size), dtype=torch.uint8)
encoder.encode_images(frames)  # warm-up (and, where it is used, packing the int8 layers: as in an index)
runs = []
for _ in range(3):
    started = time.perf_counter()
    encoder.encode_images(frames)
    runs.append((time.perf_counter() - started) / frames.shape[0])
print(json.dumps(sorted(runs)[1]))
"""


def timed(cmd: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--duration", type=float, default=120)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--index-runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    from vitb32 import make_vitb32

    model = OUT / "vitb32"
    if not (model / "config.json").exists():
        make_vitb32(model)
    world = OUT / f"realsize_world_{args.videos}v_{args.duration:g}s_seed{args.seed}"
    records = cached_world(world, args.videos, args.duration, args.seed)
    library = OUT / "realsize_library"
    vmr = [sys.executable, "-m", "vmr_cli", "--library", str(library)]
    py = sys.executable

    # The machine is noisy (one frame took 26 to 52 ms in runs minutes apart), so the per-frame
    # time is measured before, between and after the --index-runs index runs, and medians are compared.
    per_frames, index_runs = [], []
    for run in range(args.index_runs):
        per_frames.append(json.loads(timed([py, "-c", PER_FRAME, str(model), "64"])[1]))
        shutil.rmtree(library, ignore_errors=True)
        seconds, out = timed(vmr + ["index", str(world), "--model", str(model), "--json"])
        index_runs.append(seconds)
        summary = json.loads(out)
    per_frames.append(json.loads(timed([py, "-c", PER_FRAME, str(model), "64"])[1]))
    per_frame, index_seconds = statistics.median(per_frames), statistics.median(index_runs)
    print(f"index {index_runs} s, per frame {per_frames} s", file=sys.stderr)
    video_seconds = args.videos * args.duration
    passes = index_seconds / (per_frame * video_seconds)

    queries = [r["query"] for r in records][: 2 * args.rounds]
    rows = []
    for r in range(args.rounds):
        for kind, query in (("first", queries[2 * r]), ("second", queries[2 * r + 1])):
            if kind == "first":  # as right after indexing: nothing in the frame cache
                for name in ("frames.db", "frames.db-wal", "frames.db-shm"):
                    (library / name).unlink(missing_ok=True)
            floor, _ = timed([py, "-c", FLOOR, str(model), query])
            seconds, out = timed(vmr + ["search", query, "--json"])
            stats = json.loads(out)["stats"]
            rows.append({"kind": kind, "query": query, "floor": floor, "search": seconds,
                         "ratio": seconds / floor, "stats": stats})
            print(f"{kind:>6}: F {floor:.2f} s, search {seconds:.2f} s ({seconds / floor:.2f} F), "
                  f"{stats['frames_encoded']} frames encoded, {stats['frames_cached']} cached", file=sys.stderr)

    report = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "videos": args.videos,
              "duration": args.duration,
              "index": {"seconds": index_seconds, "per_frame": per_frame, "runs": index_runs,
                        "per_frame_runs": per_frames, "passes_per_video_second": passes, "summary": summary},
              "searches": rows}
    (OUT / "realsize.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print_table(report)


def print_table(report: dict) -> None:
    idx = report["index"]
    print(f"\n{report['videos']} videos x {report['duration']:g} s, ViT-B/32-sized CLIP (random weights), "
          f"{report['cpus']} CPUs, {report['date']}\n")
    print(f"index: {idx['seconds']:.1f} s for {report['videos'] * report['duration']:g} s of video; "
          f"{1000 * idx['per_frame']:.1f} ms per frame encode -> **{idx['passes_per_video_second']:.2f} "
          "encoder passes per second of video** (target <= 1.2)\n")
    stages = ["startup", "model_load", "text_encode", "vectors", "moment_head", "decode", "encode"]
    print("| search | F (s) | search (s) | search / F | target | frames encoded | cached | "
          + " | ".join(stages) + " |")
    print("|---" * (7 + len(stages)) + "|")
    for kind, target in (("first", 2.0), ("second", 1.5)):
        rows = [r for r in report["searches"] if r["kind"] == kind]
        med = lambda f: statistics.median(f(r) for r in rows)  # noqa: E731
        split = " | ".join(f"{med(lambda r: r['stats']['time'].get(s, 0.0)):.2f}" for s in stages)
        print(f"| {kind} (median of {len(rows)}) | {med(lambda r: r['floor']):.2f} | {med(lambda r: r['search']):.2f} "
              f"| **{med(lambda r: r['ratio']):.2f}** | <= {target} | {med(lambda r: r['stats']['frames_encoded']):.0f} "
              f"| {med(lambda r: r['stats']['frames_cached']):.0f} | {split} |")


if __name__ == "__main__":
    main()
