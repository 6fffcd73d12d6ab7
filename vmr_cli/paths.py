"""File paths as the catalog stores them.

Names on disk are bytes: they can hold newlines, start with '-', or not be
UTF-8 at all.  The catalog keeps the exact bytes (BLOB) and everything else
works on ``str`` paths from ``os.fsdecode`` (surrogate escapes), which
round-trip to the same bytes.  Paths are always absolute, so no external tool
can read a name as an option.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager

# The common containers.  export keeps a source's extension for its cuts only when it is one of these.
VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .m2ts .mts .ts .wmv .flv .3gp .ogv .ogg .mxf .vob".split()
)

# What 'vmr index' looks at in a folder: the "common extensions" that ffmpeg's demuxers and
# muxers list (ffmpeg -h demuxer=NAME / muxer=NAME) for formats that carry video, less images,
# audio-only formats, playlists/manifests and headerless raw frames (.yuv).  Four names that
# ffmpeg reads by content but lists under no format are added: .divx (AVI), .rmvb (RealMedia),
# .qt (QuickTime) and .dvr-ms (ASF).  A file named on the command line is always taken.
INDEX_EXTENSIONS = VIDEO_EXTENSIONS | frozenset("""
    .3g2 .amv .asf .dav .dif .divx .dv .dvr-ms .f4v .gxf .ismv .ivf .m2t .mj2 .mk3d .mjpeg .mjpg
    .nut .psp .qt .rm .rmvb .wtv .y4m
    .264 .265 .avc .h261 .h263 .h264 .h265 .h26l .hevc .m1v .m2v .obu .vc1 .rcv .cavs .drc .dnxhd
    """.split())


def absolute(path) -> str:
    """Absolute, normalised, symlinks kept (a link is the user's name for a file).  A leading '//'
    (``"$ROOT/$DIR"`` with ROOT=/), which POSIX lets normpath keep, is '/' on Linux: kept, the
    same file had two names (forget found nothing, index saw it as another file's link)."""
    path = os.path.abspath(os.fsdecode(path))
    return path[1:] if path.startswith("//") else path


def to_key(path: str) -> bytes:
    """The catalog's key for a path: its exact bytes."""
    return os.fsencode(path)


def from_key(key) -> str:
    return os.fsdecode(bytes(key))


@contextmanager
def native(path: str, write: bool = False):
    """``path`` as faiss, tokenizers and safetensors' torch loader take it: they read a name as
    UTF-8 only, so a name that is not (a library or model folder under a Latin-1 home folder)
    is handed over as ``/proc/self/fd/N`` of the file opened here, which they open again."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        yield path
        return
    fd = os.open(path, (os.O_WRONLY | os.O_CREAT) if write else os.O_RDONLY, 0o600)
    try:
        yield f"/proc/self/fd/{fd}" if os.path.isdir("/proc/self/fd") else f"/dev/fd/{fd}"
    finally:
        os.close(fd)


def printable(path: str, name: bool = True) -> str:
    """A one-line, valid-UTF-8 rendering of a path for tables and messages: control characters,
    terminal escapes included, are shown escaped, and a backslash as two, so that no two names
    print alike ('a\\nb' is not 'a\nb').  ``name`` False: a whole message, whose names were
    rendered so already (its backslashes stay as they are: they would be doubled twice)."""
    if name:
        path = path.replace("\\", "\\\\")
    try:
        text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to
        text = path.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def shell_word(path: str) -> str:
    """path as one word to paste into bash or zsh: shlex-quoted, or where it holds what
    printable() escapes (a newline, a byte that is not UTF-8), $'...' with those escapes, which
    the shell turns back into the same bytes."""
    import shlex

    if printable(path) == path:
        return shlex.quote(path)
    out = []
    for byte in os.fsencode(path):
        ch = chr(byte)
        if ch in "\\'":
            out.append("\\" + ch)
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    return "$'" + "".join(out) + "'"


def extension(path: str) -> str:
    """The lower-case extension, with its dot ('' when there is none)."""
    return os.path.splitext(os.path.basename(path))[1].lower()


def is_video_name(path: str) -> bool:
    return extension(path) in INDEX_EXTENSIONS


def quoted_tilde(given) -> str:
    """A hint for a PATH that starts with a '~' the shell did not expand (it was quoted, or came
    from a script): the home folder it meant, where that exists and the PATH as given does not."""
    given = os.fsdecode(given)
    if not given.startswith("~") or os.path.lexists(given):
        return ""
    home = os.path.expanduser(given)
    return f" (a '~' in quotes is not the home folder: did you mean {printable(home)}?)" \
        if home != given and os.path.lexists(home) else ""


def under(path: str, root: str) -> bool:
    """True when path is root itself or lies inside it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def library_names(path, roots, holds=None) -> list[str]:
    """The names the library may hold path's videos under: as given (``absolute``), with its
    symlinks resolved, and through each indexed root (``roots``) that leads to the same place
    by a link: ``cd ~/videos/2023 && vmr search --in .`` names the folder by its real path
    (the shell's cwd), where ~/videos, a link, was indexed; or that is the same folder by its
    device and inode (another mount point, another case: _same_place), looked for only where
    the library ``holds`` (a name -> bool) nothing under the names before: a few stats a root,
    0.2 s for 5,000 roots (files indexed one by one) on every search with --in."""
    given, real = absolute(path), os.path.realpath(absolute(path))
    names = [given, real]
    for root in roots:
        target = os.path.realpath(root)
        if under(real, target):
            names.append(os.path.join(root, os.path.relpath(real, target)) if real != target else root)
        elif under(target, real):  # a folder above where a linked root leads: all of that root
            names.append(root)
    names = list(dict.fromkeys(names))
    if holds is not None and any(holds(name) for name in names):
        return names
    return list(dict.fromkeys(names + [name for root in roots for name in _same_place(real, root)]))


def _same_place(real: str, root: str) -> list[str]:
    """root's name for ``real`` (a resolved path) where the bytes differ but the folder is one:
    another mount point of it (a bind mount, a share mounted twice), or a letter's other case on
    a disk that ignores case (a camera card's FAT or exFAT, macOS), told by the folders' device
    and inode; below root, spelled as the disk lists it.  [] where neither is at or above the
    other (``--in`` compared bytes only: 'the library holds no video at or under it')."""
    try:
        wanted, top = os.stat(real), os.stat(root)
    except OSError:
        return []
    at, below = real, []
    while True:  # real at or under root
        try:
            if os.path.samestat(os.stat(at), top):
                return [_as_listed(root, below)]
        except OSError:
            return []
        parent = os.path.dirname(at)
        if parent == at:
            break
        below.insert(0, os.path.basename(at))
        at = parent
    at = os.path.realpath(root)
    while os.path.dirname(at) != at:  # root under real
        at = os.path.dirname(at)
        try:
            if os.path.samestat(os.stat(at), wanted):
                return [root]
        except OSError:
            return []
    return []


def _as_listed(folder: str, parts: list[str]) -> str:
    """folder/parts with each part spelled as its folder lists it (a disk that ignores case opens
    'dcim' as 'DCIM', and the library holds the name the walk listed)."""
    for part in parts:
        try:
            listed = os.listdir(folder)
            if part not in listed:
                st = os.stat(os.path.join(folder, part))
                part = next((name for name in listed if name.casefold() == part.casefold()
                             and os.path.samestat(os.stat(os.path.join(folder, name)), st)), part)
        except OSError:
            pass
        folder = os.path.join(folder, part)
    return folder


def user_file_target(path, option: str = "the output", ours=None) -> str:
    """The regular file to replace when writing ``path`` for the user, atomically.

    ``ours(head)``, given the first 4 KB of an existing non-empty file, says whether vmr
    wrote it (an earlier page, earlier predictions): only such a file is replaced; any other
    (the annotations being scored, an indexed video) is refused, never overwritten.

    ``atomic_write`` renames a temp file over its target, which would turn a
    device or FIFO into a plain file (as root, ``/dev/null``) and replace a
    symlink with a file.  So: a new name in an existing folder, or an existing
    regular file, is written; a symlink is followed to the regular file it
    names (that file is replaced, in its own folder, keeping its mode);
    anything else (folder, FIFO, device, socket, dangling or looping link) is
    refused with a one-line VmrError naming ``option``.
    """
    import errno
    import stat

    from .errors import VmrError

    target = absolute(path)
    try:
        own = os.lstat(target)
    except FileNotFoundError:
        parent = os.path.dirname(target)
        if not os.path.isdir(parent):
            raise VmrError(f"folder for {option} does not exist: {printable(parent)}") from None
        return target
    except OSError as exc:
        raise VmrError(f"cannot write {option} {printable(target)}: {exc.strerror}") from None
    if stat.S_ISLNK(own.st_mode):
        try:  # stat first: /dev/stdout's link names "pipe:[N]", which only stat can follow
            info = os.stat(target)
            resolved = os.path.realpath(target, strict=True) if stat.S_ISREG(info.st_mode) else target
        except FileNotFoundError:
            raise VmrError(f"{option} {printable(target)} is a symbolic link to nothing "
                           f"({printable(os.readlink(target))}); remove it or name another file") from None
        except OSError as exc:
            raise VmrError(f"cannot write {option} {printable(target)}: "
                           f"{'symbolic link loop' if exc.errno == errno.ELOOP else exc.strerror}") from None
    else:
        resolved, info = target, own
    if stat.S_ISDIR(info.st_mode):
        raise VmrError(f"{option} needs a file name, not a folder: {printable(target)}")
    if not stat.S_ISREG(info.st_mode):
        raise VmrError(f"{option} {printable(target)} is {_kind(info.st_mode)}, not a regular file; "
                       "vmr writes only regular files (name a new or existing file)")
    if ours is not None and info.st_size > 0:
        try:
            with open(resolved, "rb") as existing:
                head = existing.read(4096)
        except OSError as exc:
            raise VmrError(f"cannot write {option} {printable(target)}: {exc.strerror}") from None
        if not ours(head):
            raise VmrError(f"{option} {printable(target)} exists and is not a file vmr wrote; it is left "
                           "as it is: name a new file, or remove that one first")
    return resolved


def _kind(mode: int) -> str:
    import stat

    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


USER_TEMPORARY = ".vmr-tmp-"  # a page or predictions being written in the user's folder
STALE_AFTER = 3600  # seconds untouched after which such a temporary file is a killed writer's


def write_user_file(target: str, write) -> None:
    """atomic_write into a user's folder (user_file_target's answer), under a temporary name vmr
    recognises: a page write killed midway left a '.tmp-...' beside the user's files for good;
    such leftovers are removed by the next write there once an hour old."""
    from vmr_models.atomic import atomic_write

    remove_stale(os.path.dirname(os.path.abspath(target)), USER_TEMPORARY)
    atomic_write(target, write, prefix=USER_TEMPORARY)


def remove_stale(folder: str, prefix: str) -> None:
    """Remove the files named ``prefix``... in folder that no one touched for STALE_AFTER: a
    killed writer's; one running beside this one writes its own all the time.  Only names as
    mkstemp makes them (eight of its letters after prefix, an extension at most): a file of the
    user's that merely begins so stays."""
    now = time.time()
    ours = re.compile(re.escape(prefix) + r"[a-z0-9_]{8}(\.[A-Za-z0-9]{1,10})?")
    try:
        names = [n for n in os.listdir(folder) if ours.fullmatch(n)]
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        try:
            if os.path.isfile(path) and not os.path.islink(path) and now - os.stat(path).st_mtime > STALE_AFTER:
                os.unlink(path)
        except OSError:
            pass
