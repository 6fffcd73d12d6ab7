#!/usr/bin/env bash
# Everything vmr and its tests need on a fresh Debian/Ubuntu machine:
# ffmpeg from apt, pinned CPU wheels, vmr itself (editable), real test media.
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
fi
if [ ! -x /usr/bin/chromium ]; then  # headless browser for tests/test_page.py
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r requirements-cpu.txt
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e '.[test]'
if [ "${VMR_SKIP_TEST_MEDIA:-0}" != 1 ]; then
  bash scripts/fetch_test_media.sh >/dev/null
fi
echo "vmr set up: $(python3 -m vmr_cli --version)"
