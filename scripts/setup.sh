#!/usr/bin/env bash
# Sets vmr up in a virtual environment, .venv in this checkout, on Debian/Ubuntu:
#
#   bash scripts/setup.sh          ffmpeg (apt, when missing), .venv with the pinned CPU
#                                  wheels of requirements-cpu.txt and vmr itself (editable)
#   bash scripts/setup.sh --test   the same, plus Chromium (apt), pytest and the real test
#                                  media (Debian packages, about 126 MB, into .test-media/)
#
# The venv is made by the first python3 on PATH (3.10+); nothing is installed into that
# interpreter. apt runs through sudo when you are not root, and waits up to 10 minutes
# for another apt/dpkg to finish. Running it again is quick: pip runs only when
# requirements-cpu.txt or pyproject.toml changed since the last successful run.
set -euo pipefail

usage() { sed -n '2,12s/^# \{0,1\}//p' "$0"; }
want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done

caller_dir="$PWD"
cd "$(dirname "$0")/.."
root="$PWD"
venv="$root/.venv"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

say() { echo "setup: $*" >&2; }
die() { echo "setup: error: $*" >&2; exit 1; }

# -- apt ----------------------------------------------------------------------------------

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    if [ -t 0 ]; then sudo "$@"; else sudo -n "$@"; fi  # no terminal: fail rather than hang on a password
  else
    die "apt-get needs root: run this as root, or install sudo"
  fi
}

apt_get() {  # apt-get ARGS..., as root, non-interactive, waiting for the apt/dpkg locks
  # DPkg::Lock::Timeout covers dpkg's locks only; 'apt-get update' (lists lock) and the
  # archives lock fail at once, so those are retried here for up to 10 minutes too.
  local deadline=$((SECONDS + 600)) told=0
  while :; do
    if as_root env DEBIAN_FRONTEND=noninteractive LC_ALL=C \
        apt-get -o DPkg::Lock::Timeout=600 -qq "$@" >/dev/null 2>"$tmp/apt.err"; then
      return 0
    fi
    if grep -q 'Could not get lock\|Unable to lock\|Unable to acquire the dpkg frontend lock' "$tmp/apt.err" \
        && [ "$SECONDS" -lt "$deadline" ]; then
      if [ "$told" = 0 ]; then say "waiting for another apt/dpkg to finish (up to 10 minutes)"; told=1; fi
      sleep 5
      continue
    fi
    cat "$tmp/apt.err" >&2
    return 1
  done
}

apt_updated=0
apt_update_once() {
  [ "$apt_updated" = 0 ] || return 0
  apt_updated=1
  say "apt-get update"
  apt_get update || say "apt-get update failed (above); trying with the package lists there are"
}

has_candidate() {  # PACKAGE: apt knows an installable version of it
  local policy
  policy="$(LC_ALL=C apt-cache policy "$1" 2>/dev/null)" || return 1
  [[ "$policy" == *"Candidate: "[!\(]* ]]
}

apt_install() {  # PACKAGE...
  command -v apt-get >/dev/null || die "needs $*: install it with your system's package manager, then run this again"
  apt_update_once
  say "apt-get install $* (waits while another apt/dpkg runs)"
  apt_get install -y "$@" || die "could not install $* with apt-get (above)"
}

# -- system packages ----------------------------------------------------------------------

if ! command -v python3 >/dev/null; then
  apt_install python3 python3-venv
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "vmr needs Python 3.10 or newer; python3 on PATH is $(python3 -V 2>&1) ($(command -v python3))"

if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  apt_install ffmpeg  # the binaries, and the libraries torchcodec loads
fi

# -- the virtual environment --------------------------------------------------------------

venv_works() {
  [ -x "$venv/bin/python" ] \
    && "$venv/bin/python" -c 'import sys, pip; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1
}

make_venv() {
  if python3 -m venv --clear "$venv" >"$tmp/venv.log" 2>&1; then return 0; fi
  if ! command -v apt-get >/dev/null; then
    cat "$tmp/venv.log" >&2
    die "python3 -m venv failed (above)"
  fi
  # Debian and Ubuntu ship venv's ensurepip separately: python3-venv, or python3.X-venv.
  local version package
  version="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  apt_update_once
  if has_candidate "python$version-venv"; then package="python$version-venv"; else package=python3-venv; fi
  say "python3 -m venv failed; installing $package"
  apt_install "$package"
  if ! python3 -m venv --clear "$venv" >"$tmp/venv.log" 2>&1; then
    cat "$tmp/venv.log" >&2
    die "python3 -m venv failed (above), even with $package installed"
  fi
}

if ! venv_works; then
  if [ -e "$venv" ]; then say "recreating .venv (it does not run)"; else say "creating .venv with $(command -v python3) ($(python3 -V 2>&1))"; fi
  make_venv
  venv_works || die "the new .venv does not run: $venv/bin/python"
fi

# pip runs when the wanted set changed since its last success; the stamps live in .venv, so
# a new venv starts without them.
key="$( { cat requirements-cpu.txt pyproject.toml; echo "$root"; } | sha256sum | cut -d' ' -f1)"
stamp_main="$venv/.vmr-setup-main"
stamp_test="$venv/.vmr-setup-test"
stamp_is() { [ -f "$1" ] && [ "$(cat "$1")" = "$key" ]; }

if [ "$want_test" = 1 ]; then
  need_pip=1; stamp_is "$stamp_test" && need_pip=0
  target='.[test]'
else
  need_pip=1; { stamp_is "$stamp_main" || stamp_is "$stamp_test"; } && need_pip=0
  target='.'
fi
if [ "$need_pip" = 1 ]; then
  rm -f "$stamp_main" "$stamp_test"
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  say "pip install -r requirements-cpu.txt (into .venv; the first time takes a few minutes)"
  "$venv/bin/python" -m pip install -q -r requirements-cpu.txt  # the tested versions, torch first
  say "pip install -e '$target' (into .venv)"
  "$venv/bin/python" -m pip install -q -e "$target"
  echo "$key" >"$stamp_main"
  if [ "$want_test" = 1 ]; then echo "$key" >"$stamp_test"; fi
fi

version="$("$venv/bin/python" -m vmr_cli --version)" || die "vmr does not run in .venv (above); remove .venv and run this again"

# -- test browser and media --------------------------------------------------------------

if [ "$want_test" = 1 ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null \
    && ! command -v google-chrome >/dev/null && ! command -v chrome >/dev/null; then
  # Headless browser for tests/test_page.py (which skips its browser test without one).
  if command -v apt-get >/dev/null; then apt_update_once; fi
  if command -v apt-get >/dev/null && has_candidate chromium; then
    apt_install chromium                                                    # Debian
  elif command -v apt-get >/dev/null && command -v snap >/dev/null && has_candidate chromium-browser; then
    say "apt-get install chromium-browser (Ubuntu: installs the snap)"
    apt_get install -y chromium-browser \
      || say "warning: chromium-browser did not install (above); tests/test_page.py's browser test will be skipped"
  else
    say "warning: no Chromium to install here; tests/test_page.py's browser test will be skipped"
  fi
fi

if [ "$want_test" = 1 ] && ! bash scripts/fetch_test_media.sh --check; then
  # apt-get download needs package lists, which a fresh machine may not have yet.
  if command -v apt-get >/dev/null && { ! has_candidate opencv-doc || ! has_candidate forensics-samples-files; }; then
    apt_update_once
  fi
  bash scripts/fetch_test_media.sh >/dev/null || die "could not fetch the test media (above)"
fi

# -- how to use it ------------------------------------------------------------------------

here=""  # how to name this checkout from where setup was run
if [ "$caller_dir" != "$root" ]; then here="$(printf '%q' "$root")/"; fi
echo "$version set up in ${here}.venv ($("$venv/bin/python" -V 2>&1))"
echo "  run it:  ${here}.venv/bin/vmr --help     (or: source ${here}.venv/bin/activate, then vmr ...)"
if [ "$want_test" = 1 ]; then
  echo "  tests:   ${here}.venv/bin/python -m pytest -q"
else
  echo "  demo:    bash ${here}examples/demo.sh"
fi
