#!/usr/bin/env bash
# Real camera videos for the tests only, from Debian packages (never committed; the demo
# does not need them). `bash scripts/setup.sh --test` runs this. Downloads the packages
# (about 126 MB, once) with apt-get download, which needs no root, and extracts them
# without installing into .test-media/ (or $VMR_TEST_MEDIA), keeping only the videos.
# --check: only say (exit status) whether they are there.
set -euo pipefail
dest="${VMR_TEST_MEDIA:-$(cd "$(dirname "$0")/.." && pwd)/.test-media}"
want_vtest="usr/share/doc/opencv-doc/examples/data/vtest.avi"
want_phone="usr/share/forensics-samples/original-files/movie1/VID_20191220_170832.mp4"
if [ "${1:-}" = --check ]; then  # exit 0 when the media are there, 1 when not; fetch nothing
  [ -f "$dest/$want_vtest" ] && [ -f "$dest/$want_phone" ]
  exit
fi
mkdir -p "$dest"
cd "$dest"
fetch() {  # package, file that proves it is extracted
  if [ -f "$2" ]; then return 0; fi
  echo "fetching test media: apt-get download $1" >&2
  local work
  work="$(mktemp -d "$dest/.fetch-XXXXXX")"
  chmod 755 "$work"
  if [ "$(id -u)" = 0 ] && id -u _apt >/dev/null 2>&1; then
    chown _apt "$work"  # as root, apt downloads as its sandbox user _apt, who must be able to write here
  fi
  if ! (cd "$work" && apt-get download -qq "$1" >/dev/null); then
    rm -rf "$work"
    echo "apt-get download $1 failed: no package lists yet? (sudo apt-get update)" >&2
    return 1
  fi
  # Extract aside, then move into place: an interrupted run leaves no half-written proof file.
  dpkg -x "$work/$1"_*.deb "$work/root"
  find "$work/root" -type f ! -name '*.avi' ! -name '*.mp4' ! -name '*.mpeg' ! -name '*.ogg' -delete
  (cd "$work/root" && find . -type f -print0) | while IFS= read -r -d '' f; do
    mkdir -p "$(dirname "$f")"
    mv -f "$work/root/$f" "$f"
  done
  rm -rf "$work"
  [ -f "$2" ] || { echo "$1 did not hold $2" >&2; return 1; }
}
fetch opencv-doc "$want_vtest"
fetch forensics-samples-files "$want_phone"
ls -la "$want_vtest" "$want_phone"
