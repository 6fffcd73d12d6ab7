#!/usr/bin/env bash
# The main job, fully offline: generate example videos of the synthetic world,
# index them with the tiny CLIP trained on that world, search, and cut a result.
# Everything lands in examples/videos, examples/library and examples/cuts (git-ignored).
# Runs vmr from the checkout's .venv (made by `bash scripts/setup.sh`); VMR_PYTHON names
# another interpreter that has vmr installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${VMR_PYTHON:-$PWD/.venv/bin/python}"
if [ ! -x "$PY" ]; then
  echo "demo: no $PY: run 'bash scripts/setup.sh' first" >&2
  exit 1
fi
export VMR_LIBRARY="$PWD/examples/library"
MODEL=examples/models/tiny-clip
if [ ! -f examples/videos/annotations.jsonl ]; then
  "$PY" examples/synthetic_world.py examples/videos --videos 4 --duration 60 --seed 1
fi
"$PY" -m vmr_cli index examples/videos --model "$MODEL"
first='import json; a = json.loads(open("examples/videos/annotations.jsonl").readline())'
query="$("$PY" -c "$first; print(a['query'])")"
echo "searching: $query" >&2
echo "ground truth: $("$PY" -c "$first; w = a['relevant_windows'][0]; print(a['vid'], w[0], '-', w[1], 's')")" >&2
"$PY" -m vmr_cli search "$query" --top-k 5
mkdir -p examples/cuts
"$PY" -m vmr_cli export --clip 1 --out examples/cuts --force
"$PY" -m vmr_cli status
# How often search is right on these videos (synthetic-world numbers):
"$PY" -m vmr_cli eval examples/videos/annotations.jsonl --videos examples/videos
