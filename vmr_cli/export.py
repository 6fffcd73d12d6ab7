"""``vmr export``: cut results of a logged search with ffmpeg.

Exact by default (re-encode from the requested frame); ``copy`` is a fast
stream copy that starts at the key frame before the requested start.  Every
target is checked before anything is cut, the cut goes to a temporary file in
the output folder, and it is linked into place only if the name is still free
(``force`` replaces).  A failed cut leaves no partial file.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

from vmr_models.atomic import usual_mode
from .errors import VmrError
from .paths import VIDEO_EXTENSIONS, printable
from .probe import require_tool
from .timecodes import file_stamp

MAX_STEM_BYTES = 120


def target_name(source: str, start: float, end: float, copy: bool) -> str:
    stem, ext = os.path.splitext(os.path.basename(source))
    stem = "".join(ch if ch.isprintable() and ch not in "/\\" else "_" for ch in stem) or "clip"
    stem = os.fsencode(stem)[:MAX_STEM_BYTES].decode("utf-8", "ignore")  # whole characters only
    if stem[0] in "-.":  # no option-like or hidden names for the user's shell later
        stem = "_" + stem[1:]
    if copy:  # same container as the source; named apart from the exact cut
        ext = ext.lower() if ext.lower() in VIDEO_EXTENSIONS else ".mkv"  # never odd bytes
        return f"{stem}_{file_stamp(start)}-{file_stamp(end)}_copy{ext}"
    return f"{stem}_{file_stamp(start)}-{file_stamp(end)}.mp4"


def export_results(catalog, ranks=None, search_id: int | None = None, out_dir: str = ".",
                   copy: bool = False, force: bool = False) -> dict:
    search = catalog.search(search_id)
    if search is None:
        raise VmrError("no search logged yet; run 'vmr search QUERY' first" if search_id is None
                       else f"no search with id {search_id}")
    by_rank = {r["rank"]: r for r in search["results"]}
    if not by_rank:
        raise VmrError(f"search {search['id']} has no results to export")
    chosen = list(ranks) if ranks else sorted(by_rank)
    missing = [r for r in chosen if r not in by_rank]
    if missing:
        raise VmrError(f"search {search['id']} has no result {missing[0]} (it has 1 to {max(by_rank)})")
    ffmpeg = require_tool("ffmpeg")
    out_dir = os.path.abspath(out_dir)
    if not os.path.isdir(out_dir):
        raise VmrError(f"output folder does not exist: {printable(out_dir)}")
    if not os.access(out_dir, os.W_OK):
        raise VmrError(f"output folder is not writable: {printable(out_dir)}")
    jobs = []
    for rank in chosen:
        result = by_rank[rank]
        source = result["video"]
        if not os.path.isfile(source):
            raise VmrError(f"result {rank}: source no longer exists: {printable(source)} "
                           "(moved since indexing? run 'vmr index' and search again)")
        target = os.path.join(out_dir, target_name(source, result["start"], result["end"], copy))
        if os.path.lexists(target) and not force:
            raise VmrError(f"{printable(target)} exists; use --force to overwrite")
        jobs.append((rank, result, target))
    started = time.time()
    written = []
    for rank, result, target in jobs:
        _cut(ffmpeg, result["video"], result["start"], result["end"], target, copy, force)
        written.append({"rank": rank, "path": target, "source": result["video"],
                        "start": result["start"], "end": result["end"], "exact": not copy})
    done = {"search_id": search["id"], "query": search["query"], "exported": written}
    catalog.log_operation("export", {"search_id": search["id"], "ranks": chosen, "out": out_dir,
                                     "copy": copy, "force": force}, done, started)
    return done


def _cut(ffmpeg: str, source: str, start: float, end: float, target: str, copy: bool, force: bool) -> None:
    ext = os.path.splitext(target)[1]
    fd, tmp = tempfile.mkstemp(prefix=".vmr-export-", suffix=ext, dir=os.path.dirname(target))
    os.close(fd)
    duration = max(0.001, end - start)
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-y", "-ss", f"{start:.3f}",
           "-i", "file:" + source, "-t", f"{duration:.3f}", "-map", "0:v:0", "-map", "0:a:0?"]
    if copy:
        cmd += ["-c", "copy", "-avoid_negative_ts", "make_zero"]
    else:
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-movflags", "+faststart"]
    cmd.append("file:" + tmp)
    try:
        done = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise VmrError(f"ffmpeg could not cut {printable(source)}: {lines[-1] if lines else 'failed'}")
        usual_mode(tmp)  # the cut is the user's file, not a private temp file
        _place(tmp, target, force)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _place(tmp: str, target: str, force: bool) -> None:
    """Move tmp to target without replacing an existing file unless force."""
    if force:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # fails if target appeared meanwhile: never overwrite
    except FileExistsError:
        raise VmrError(f"{printable(target)} exists; use --force to overwrite") from None
    except OSError:
        if os.path.lexists(target):
            raise VmrError(f"{printable(target)} exists; use --force to overwrite") from None
        os.rename(tmp, target)  # filesystems without hard links
