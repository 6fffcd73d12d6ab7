#!/usr/bin/env bash
# Real camera videos for the tests, from Debian packages (never committed).
# Extracts without installing into .test-media/ (or $VMR_TEST_MEDIA).
set -euo pipefail
dest="${VMR_TEST_MEDIA:-$(cd "$(dirname "$0")/.." && pwd)/.test-media}"
mkdir -p "$dest"
cd "$dest"
want_vtest="usr/share/doc/opencv-doc/examples/data/vtest.avi"
want_phone="usr/share/forensics-samples/original-files/movie1/VID_20191220_170832.mp4"
fetch() {  # package, file that proves it is extracted
  if [ -f "$2" ]; then return 0; fi
  rm -f "$1"_*.deb
  apt-get download "$1" >/dev/null
  dpkg -x "$1"_*.deb .
  rm -f "$1"_*.deb
}
fetch opencv-doc "$want_vtest"
fetch forensics-samples-files "$want_phone"
# Keep only the videos the tests use; the rest of the packages is large.
find usr -type f ! -name '*.avi' ! -name '*.mp4' ! -name '*.mpeg' ! -name '*.ogg' -delete 2>/dev/null || true
ls -la "$want_vtest" "$want_phone"
