"""``vmr export``: cut results of a logged search with ffmpeg.

Exact by default (re-encode from the requested frame); ``copy`` is a fast
stream copy that starts at the key frame before the requested start.  Every
target is checked before anything is cut, the cut goes to a temporary file in
the output folder, and it is linked into place only under a name that is
still free: a name taken by an existing file or by another result of the same
batch gets ``_2``, ``_3``... (``force`` replaces existing files instead), so
one file never stands for two results.  A failed cut leaves no partial file.

Cuts go to a folder of vmr's own by default (the user's videos folder, where
people look for videos, under ``vmr``), never to the current folder: run from
inside an indexed folder, that put the cuts into the next ``vmr index``.
vmr never indexes its own outputs: ``without_own_outputs`` recognises them by the
marker file vmr leaves in its own export folder (it travels with the folder)
and by the size and fingerprint of every file an export wrote (the export log
in the catalog), wherever the file is moved.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
import time

from vmr_models.atomic import usual_mode
from .catalog import MISREAD_BY_OLDER_VMR, catalog_in, misread_by_older_vmr
from .cut import CutError, DiskFull
from .errors import VmrError
from .lock import folder_lock
from .paths import VIDEO_EXTENSIONS, printable, remove_stale
from .probe import require_tool
from .timecodes import file_stamp, timecode

MARKER = ".vmr-exports"
TEMPORARY = ".vmr-export-"  # a cut being written; never indexed, removed by a later export when stale
MARKER_TEXT = ("This folder holds clips cut by 'vmr export'. 'vmr index' skips every folder that holds\n"
               "this file, so that vmr never finds its own cuts; delete the file to have them indexed.\n")
MAX_STEM_BYTES = 120


# -- where cuts go --------------------------------------------------------------------------
def videos_folder() -> str:
    """The user's videos folder: $XDG_VIDEOS_DIR, else its entry in user-dirs.dirs (what
    xdg-user-dir VIDEOS reads), else ~/Videos."""
    home = os.path.expanduser("~")
    folder = os.environ.get("XDG_VIDEOS_DIR", "").strip() or _user_dirs_entry("XDG_VIDEOS_DIR", home)
    if not folder or os.path.abspath(folder) == os.path.abspath(home):  # "$HOME" means disabled
        folder = os.path.join(home, "Videos")
    return os.path.abspath(os.path.expanduser(folder))


def _user_dirs_entry(key: str, home: str) -> str | None:
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    try:
        with open(os.path.join(config, "user-dirs.dirs"), encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        name, _, value = line.strip().partition("=")
        if name == key and value:
            value = value.strip().strip('"')
            return home + value[len("$HOME"):] if value.startswith("$HOME") else value
    return None


def default_export_directory() -> str:
    """vmr's own folder for cuts: 'vmr' in the user's videos folder."""
    return os.path.join(videos_folder(), "vmr")


def output_folder(out_dir: str | None) -> str:
    """The folder cuts go to, created when missing: vmr's own (with its marker, when vmr
    creates it) by default; ``out_dir`` when given, created only when its parent exists."""
    own = default_export_directory()
    if out_dir is None or os.path.abspath(out_dir) == own:
        folder = own
        if not os.path.isdir(folder):
            try:
                os.makedirs(folder)
            except OSError as exc:
                raise VmrError(f"cannot create the export folder {printable(folder)}: "
                               f"{exc.strerror or exc}; name another with --out DIR") from None
            try:
                with open(os.path.join(folder, MARKER), "x", encoding="utf-8") as handle:
                    handle.write(MARKER_TEXT)
            except OSError as exc:  # never an export folder without its marker
                shutil.rmtree(folder, ignore_errors=True)
                raise VmrError(f"cannot write {printable(os.path.join(folder, MARKER))}: "
                               f"{exc.strerror or exc}") from None
    else:
        folder = os.path.abspath(out_dir)
        if not os.path.isdir(folder):
            if os.path.lexists(folder):
                raise VmrError(f"--out {printable(folder)} is not a folder")
            parent = os.path.dirname(folder)
            if os.path.lexists(parent) and not os.path.isdir(parent):
                raise VmrError(f"cannot create output folder {printable(folder)}: {printable(parent)} is a file, "
                               "not a folder")
            if not os.path.isdir(parent):
                raise VmrError(f"output folder does not exist, nor its parent: {printable(folder)}")
            try:
                os.mkdir(folder)
            except OSError as exc:
                raise VmrError(f"cannot create output folder {printable(folder)}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK):
        raise VmrError(f"output folder is not writable: {printable(folder)}")
    return folder


# -- recognising vmr's own outputs (called by the index scan) -----------------------------------
def without_own_outputs(catalog, found: list) -> list:
    """``found`` (scan.Found items) less vmr's own outputs, which are never indexed: the library's
    previews (MP4s in its previews/ folder, and in any other vmr library's), files under a folder
    holding vmr's marker, and files whose size and fingerprint are those of a file an export wrote
    (so a cut moved anywhere, or a --out folder under an indexed root, stays out)."""
    from .paths import under
    from .preview import FOLDER

    previews = os.path.join(os.path.dirname(os.path.abspath(catalog.path)), FOLDER)
    own = _OwnOutputs(catalog)
    libraries: dict[str, bool] = {}

    def in_any_library_previews(path: str) -> bool:
        """Another vmr library's previews (a library kept inside an indexed folder)."""
        folder = os.path.dirname(path)
        if os.path.basename(folder) != FOLDER:
            return False
        if folder not in libraries:
            libraries[folder] = os.path.isfile(catalog_in(os.path.dirname(folder)))
        return libraries[folder]

    return [item for item in found if not under(item.path, previews) and not own.holds(item)
            and not in_any_library_previews(item.path) and not os.path.basename(item.path).startswith(TEMPORARY)]


class _OwnOutputs:
    def __init__(self, catalog):
        self.prints: dict[int, set] = {}
        self.paths: set[str] = set()  # cuts logged by vmr before their prints were: by path
        self.printed_since = None  # when the first export logged with its cuts' prints began
        for operation in catalog.operations("export"):
            summary = operation["summary"]
            for cut in summary.get("files", []):
                self.prints.setdefault(cut["size"], set()).add(cut["fingerprint"])
            if "files" not in summary:  # an older vmr's log: an upgrade indexed its cuts as videos
                self.paths.update(item["path"] for item in summary.get("exported", []) if "path" in item)
            elif self.printed_since is None:
                self.printed_since = operation["started_at"]
        self.marked: dict[str, bool] = {}
        self.catalog, self.cut_stems = catalog, None

    def holds(self, item) -> bool:
        if item.path in self.paths or self._in_marked_folder(os.path.dirname(item.path)):
            return True
        # by its print first: a cut logged with it (every cut since 2026-11-30) needs no search read
        return self._printed(item) or self._named_as_a_logged_cut(os.path.basename(item.path))

    def _printed(self, item) -> bool:
        if item.size not in self.prints:  # a fingerprint only where the size matches a cut's
            return False
        from .scan import fingerprint

        try:
            item.fingerprint = item.fingerprint or fingerprint(item.path, item.size)
        except OSError:
            return False  # the scan records what it cannot read
        return item.fingerprint in self.prints[item.size]

    def _named_as_a_logged_cut(self, name: str) -> bool:
        """A cut the first vmr made (it logged no export, and cut into the current folder): named
        as export names the cut of a logged search result.  The results are read only once a
        name has a cut's form (``_0h00m04.75s-0h00m15.00s``), and only those of the searches
        logged before the first export logged with its cuts' prints: a cut of a later search
        was logged with its print as it landed (``_printed``).  Every result of a year of
        searches was read and named, by every 'vmr index', a cron job's too, while any file in
        its folders was named as a cut is (a cut moved there, an --out folder under an indexed
        one): 3.1 s a run at 50,000 searches, 0.8 s now (bench/aged_library.py)."""
        stem = _cut_stem(name)
        if stem is None:
            return False
        if self.cut_stems is None:
            up_to = None if self.printed_since is None else self.catalog.last_search_by(self.printed_since)
            self.cut_stems = {_cut_stem(target_name(path, start, end, False))
                              for path, start, end in self.catalog.logged_moments(up_to)}
        return stem in self.cut_stems

    def _in_marked_folder(self, folder: str) -> bool:
        if folder not in self.marked:
            parent = os.path.dirname(folder)
            self.marked[folder] = (os.path.isfile(os.path.join(folder, MARKER))
                                   or (parent != folder and self._in_marked_folder(parent)))
        return self.marked[folder]


CUT_NAME = re.compile(r"(.*_\d+h\d\dm\d\d\.\d\ds-\d+h\d\dm\d\d\.\d\ds)(?:_copy)?(?:_\d+)?\.[^./]+", re.DOTALL)


def _cut_stem(name: str) -> str | None:
    """What a cut's name says of its source and times (target_name less its _copy, _N and
    extension), or None for a name that is not a cut's."""
    found = CUT_NAME.fullmatch(name)
    return found.group(1) if found else None


# -- cutting ----------------------------------------------------------------------------------
def target_name(source: str, start: float, end: float, copy: bool, number: int = 1) -> str:
    """The cut's file name; ``number`` > 1 tells apart cuts that would share it."""
    stem, ext = os.path.splitext(os.path.basename(source))
    stem = "".join(ch if ch.isprintable() and ch not in "/\\" else "_" for ch in stem) or "clip"
    stem = os.fsencode(stem)[:MAX_STEM_BYTES].decode("utf-8", "ignore")  # whole characters only
    if stem[0] in "-.":  # no option-like or hidden names for the user's shell later
        stem = "_" + stem[1:]
    suffix = f"_{number}" if number > 1 else ""
    if copy:  # same container as the source; named apart from the exact cut
        ext = ext.lower() if ext.lower() in VIDEO_EXTENSIONS else ".mkv"  # never odd bytes
        return f"{stem}_{file_stamp(start)}-{file_stamp(end)}_copy{suffix}{ext}"
    return f"{stem}_{file_stamp(start)}-{file_stamp(end)}{suffix}.mp4"


def choose_search(catalog, search_id: int | None) -> dict:
    """The logged search an export or ``vmr show`` refers to: ``search_id``, else the last one.

    A read-only library cannot log a search, so there "the last search" is an older one than
    the user just saw: refused, the user names the search instead."""
    if search_id is None and catalog.readonly:
        raise VmrError("this library is read-only, so the searches made on it are not logged and "
                       "the last logged search is not the one just shown; name one with --search ID "
                       "('vmr searches' lists them), or use a writable --library")
    search = catalog.search(search_id)
    if search is None:
        raise VmrError("no search logged yet; run 'vmr search QUERY' first" if search_id is None
                       else f"no search with id {search_id} ('vmr searches' lists them)")
    return search


def export_results(catalog, ranks=None, search_id: int | None = None, out_dir: str | None = None,
                   copy: bool = False, force: bool = False, search: dict | None = None,
                   announce=None, on_cut=None, waiting=None) -> dict:
    """Cut the results ``ranks`` (every result when empty) of a logged search into files.

    ``out_dir`` None: vmr's own export folder.  ``announce(search, ranks, folder, before)`` is called
    once everything is checked, before the first cut (``before``: how many of the ranks an earlier
    run cut there); ``on_cut(item)`` after each result, cut now or before; ``waiting()`` when another
    export into the folder runs (this one waits for it).  A cut that fails
    (the file, or ffmpeg) is skipped with its reason and the others are cut; a full disk skips
    the rest.  Returns {search_id, query, folder, exported, skipped}: with no ``ranks``, a
    result whose file is gone is skipped (the others are cut); a rank named whose file is gone
    is an error before anything is cut."""
    search = search or choose_search(catalog, search_id)
    by_rank = {r["rank"]: r for r in search["results"]}
    if not by_rank:
        raise VmrError(f"search {search['id']} has no results to export")
    chosen = list(dict.fromkeys(ranks)) if ranks else sorted(by_rank)  # a rank named twice is one cut
    missing = [r for r in chosen if r not in by_rank]
    if missing:
        raise VmrError(f"search {search['id']} has no result {missing[0]} (it has 1 to {max(by_rank)})")
    ffmpeg = require_tool("ffmpeg")
    planned = default_export_directory() if out_dir is None else os.path.abspath(out_dir)
    done_before = {} if force else _cut_before(catalog, search["id"], planned, copy)
    skipped = []  # each file is checked now, before anything is cut, and again just before its cut
    for rank in (r for r in chosen if r not in done_before):
        try:
            result_source(catalog, by_rank[rank], f"result {rank}")
        except VmrError as exc:
            if ranks:  # named on purpose: nothing is cut without it
                raise
            skipped.append({"rank": rank, "error": str(exc)})  # every result: the others are cut
    gone = {item["rank"] for item in skipped}
    chosen = [rank for rank in chosen if rank not in gone]
    if not chosen:
        raise NothingCut({"search_id": search["id"], "query": search["query"], "folder": planned,
                          "exported": [], "skipped": skipped})
    folder = output_folder(out_dir)
    with folder_lock(folder, waiting):
        if not force:  # what another export into this folder cut meanwhile is not cut again
            done_before.update(_cut_before(catalog, search["id"], folder, copy))
        return _export_into(catalog, search, by_rank, chosen, skipped, done_before, folder, copy, force,
                            announce, on_cut, ffmpeg)


def _export_into(catalog, search, by_rank, chosen, skipped, done_before, folder, copy, force, announce,
                 on_cut, ffmpeg) -> dict:
    """export_results' cuts, into ``folder`` (held)."""
    if announce is not None:
        announce(search, chosen, folder, sum(rank in done_before for rank in chosen))
    started = time.time()
    written, files, taken, full = [], [], set(), None
    done = {"search_id": search["id"], "query": search["query"], "folder": folder, "exported": written,
            "skipped": skipped}  # filled in as the cuts land
    logged = None  # the operation's id, once a cut is logged

    def log():
        """The cuts so far, logged as each lands (a kill -9 between cuts used to leave them
        unlogged: the next index took them for the user's videos, export cut them again)."""
        nonlocal logged
        if written or logged is not None:  # (a cut logged as it landed, then taken back: emptied)
            logged = catalog.log_operation("export", {"search_id": search["id"], "ranks": chosen, "out": folder,
                                                      "copy": copy, "force": force}, dict(done, files=files),
                                           started, logged)

    remove_stale(folder, TEMPORARY)  # killed exports' (kill -9, a power cut)
    try:
        for rank in chosen:
            if rank in done_before:  # an earlier run (one that was stopped, say) cut it: not again
                item, file_print = done_before[rank]
                written.append(dict(item, video=item["source"], existing=True))  # (logged before "video")
                files.append(file_print)
                if on_cut is not None:
                    on_cut(written[-1])
                continue
            if full is not None:
                skipped.append({"rank": rank, "error": f"result {rank}: not cut: {full}"})
                continue
            result = by_rank[rank]
            try:  # again: the file may have changed while the results before it were cut
                source, warning = result_source(catalog, result, f"result {rank}")
            except VmrError as exc:
                skipped.append({"rank": rank, "error": str(exc)})
                continue
            names = (os.path.join(folder, target_name(source, result["start"], result["end"], copy, n))
                     for n in range(1, 100000))
            names = (name for name in names if name not in taken)  # never one file for two results
            item = {}

            def landing(target: str, file_print: dict) -> None:
                """Logged before the cut lands under its name: killed once it had landed, an export
                left it unlogged (the next index took it for the user's video, a rerun cut it
                again as _2).  Killed before, the log names a file that is not there: cut again."""
                if not item:
                    # "video": the result's video, named as in search and show ("source" as well,
                    # as vmr 0.2.0 documented it)
                    item.update(rank=rank, path=target, video=source, source=source, start=result["start"],
                                end=result["end"], exact=not copy)
                    written.append(item)
                    files.append(file_print)
                item["path"] = target  # (the name was taken meanwhile: the next one)
                log()

            try:
                target, cut_warning = _cut(ffmpeg, source, result["start"], result["end"], names, folder, copy,
                                           force, landing)
            except CutError as exc:  # this file's (or ffmpeg's) trouble: the other results are cut
                # A file changed since the search may end before the moment: that is the likely why.
                changed = "changed" if warning and "changed since" in warning else "may have changed"
                why = f"; the file {changed} since this search, so the moment may lie beyond its end now" \
                    if warning and MISREAD_BY_OLDER_VMR not in warning and COPY_INSTEAD not in warning \
                    else ""  # (unchanged, only misread; or a copy as it was)
                skipped.append({"rank": rank, "error": f"result {rank}: ffmpeg could not cut "
                                                       f"{printable(source)}: {exc}{why}"})
                continue
            except SourceChanged:
                skipped.append({"rank": rank, "error": f"result {rank}: {printable(source)} changed while it "
                                                       "was being cut (replaced or written to); search again"})
                continue
            except DiskFull as exc:  # no other cut can succeed: the rest are not tried
                full = exc
                skipped.append({"rank": rank, "error": f"result {rank}: not cut: {full}"})
                continue
            except BaseException:
                if item and not os.path.lexists(item["path"]):  # logged as landing, then it did not
                    at = next(i for i, other in enumerate(written) if other is item)
                    del written[at], files[at]
                raise
            taken.add(target)
            if cut_warning:  # printed among other results' lines: it names its own
                cut_warning = f"result {rank}: {printable(source)}: {cut_warning}"
            warning = "; ".join(w for w in (warning, cut_warning) if w) or None
            if warning:
                item["warning"] = warning
                log()
            if on_cut is not None:
                on_cut(item)
    finally:
        log()  # what was written is logged even when a later cut fails: the index skips it
    if not written:  # nothing cut at all: one error, as when every source is gone
        raise NothingCut(done)
    return done


class NothingCut(VmrError):
    """The one error of an export that cut nothing: the first reason, and how many more.  ``done``
    is the summary all the same (nothing exported, why each was skipped), for --json."""

    def __init__(self, done: dict):
        skipped = done["skipped"]
        super().__init__(skipped[0]["error"] + (f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""))
        self.done = done


def _cut_before(catalog, search_id: int, folder: str, copy: bool) -> dict[int, tuple[dict, dict]]:
    """rank -> (exported item, file print) of the cuts earlier exports of this search made into
    this folder the same way (exact or copy) whose files are still there unchanged."""
    found: dict[int, tuple[dict, dict]] = {}
    for operation in catalog.operations("export", search_id=search_id):
        summary = operation["summary"]
        if summary.get("search_id") != search_id or summary.get("folder") != folder:
            continue
        for item, file_print in zip(summary.get("exported", []), summary.get("files", [])):
            if item.get("exact") != (not copy) or item.get("existing"):
                continue
            try:
                same = _file_print(item["path"]) == file_print
            except OSError:
                continue
            if same:
                found[item["rank"]] = (item, file_print)
    return found


def result_source(catalog, result: dict, what: str) -> tuple[str, str | None]:
    """(the file a logged result is in now, a warning or None): the path it was found at, or
    where 'vmr index' recorded it moved since (the same row); a warning when the file there is
    not the content the search saw (re-indexed since, or modified since it was indexed), or
    when 'vmr forget' dropped its record (nothing left to compare it with), as its times may
    then show something else.  VmrError when the file is gone, or was re-indexed shorter
    than where the moment starts.

    Where it would warn or fail so, a copy the search listed with the result that is still as
    it was then (the same size and time) is used instead, with a warning naming both: the
    user deleted the duplicate the search showed, the other copy kept."""
    from .scan import as_recorded

    try:
        path, warning = _logged_file(catalog, result, what)
    except VmrError as exc:
        path, warning, failed = result["video"], None, exc
    else:
        failed = None
    if failed is None and (warning is None or MISREAD_BY_OLDER_VMR in warning):  # (a copy is misread too)
        return path, warning
    for copy, size, mtime_ns, *row_id in result.get("logged_copies", ()):
        if not as_recorded(copy, size, mtime_ns) and row_id:  # moved since, as 'vmr index' recorded
            row = catalog.video(row_id[0])
            copy = row["path"] if row is not None and row["status"] == "ok" else copy
        if as_recorded(copy, size, mtime_ns):
            state = "is not as this search saw it" if os.path.isfile(path) else "no longer exists"
            return copy, f"{what}: {printable(path)} {state}; its copy {printable(copy)}, {COPY_INSTEAD}"
    if failed is not None:
        raise failed
    return path, warning


COPY_INSTEAD = "unchanged since this search, is used instead"


def _logged_file(catalog, result: dict, what: str) -> tuple[str, str | None]:
    """result_source's file without its copies."""
    path = result["video"]
    row = catalog.video(result["video_id"]) if result.get("video_id") is not None else None
    if not os.path.isfile(path):
        if row is None or row["status"] != "ok" or not os.path.isfile(row["path"]):
            raise VmrError(f"{what}: source no longer exists: {printable(path)} "
                           "(moved or deleted since this search? run 'vmr index' and search again)")
        path = row["path"]  # moved, and the index followed it
    if result.get("video_id") is None:  # logged before results named their video's row
        return path, None
    now = catalog.video_by_path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise VmrError(f"{what}: cannot read {printable(path)}: {exc.strerror}") from None
    if now is None:  # 'vmr forget' since: vmr has no record to compare the file with
        return path, (f"{what}: {printable(path)} is no longer in the library (forgotten since this search?), "
                      "so vmr cannot tell whether it changed; its times may not show the moment")
    if row is not None and now["id"] == row["id"] and (now["size"], now["mtime_ns"]) == (st.st_size, st.st_mtime_ns):
        return path, None
    if row is not None and now["id"] == row["id"] and misread_by_older_vmr(now, st.st_size):
        return path, f"{what}: {printable(path)} was {MISREAD_BY_OLDER_VMR}"  # unchanged, but read at wrong times
    if (row is None or now["id"] != row["id"]) and now["duration"] is not None and \
            float(result["start"]) >= float(now["duration"]):  # re-indexed shorter: nothing there to cut
        raise VmrError(f"{what}: the moment ({timecode(result['start'])} – {timecode(result['end'])}) now lies "
                       f"beyond the end of {printable(path)} ({timecode(now['duration'])} long): the file "
                       "changed since this search; search again")
    return path, (f"{what}: {printable(path)} changed since this search (modified or re-indexed); "
                  "its times may not show the moment: search again")


def _file_print(path: str) -> dict:
    from .scan import fingerprint

    size = os.path.getsize(path)
    return {"size": size, "fingerprint": fingerprint(path, size)}


def _cut(ffmpeg: str, source: str, start: float, end: float, names, folder: str, copy: bool,
         force: bool, landing) -> tuple[str, str | None]:
    """Cut into a temp file in ``folder`` (checked: see cut.py), then place it under the first
    usable name, calling ``landing(name, its file print)`` just before; returns it and a warning
    (cut without its sound) or None."""
    from .cut import cut

    ext = os.path.splitext(target_name(source, start, end, copy))[1]
    fd, tmp = tempfile.mkstemp(prefix=TEMPORARY, suffix=ext, dir=folder)
    os.close(fd)
    codec, codec_warning = (["-c", "copy", "-avoid_negative_ts", "make_zero"], None) if copy \
        else exact_codec(ffmpeg, source)
    try:
        before = _identity(source)
        warning = "; ".join(filter(None, [cut(ffmpeg, source, start, max(0.001, end - start), tmp, codec),
                                          codec_warning])) or None
        if _identity(source) != before:  # replaced meanwhile: the cut may hold the other file's footage
            raise SourceChanged(source)
        usual_mode(tmp)  # the cut is the user's file, not a private temp file
        file_print = _file_print(tmp)
        return _place(tmp, names, force, lambda target: landing(target, file_print)), warning
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


EXACT = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]
# HDR as phones record it: HEVC in 10 bits, the source's colour tags kept (ffmpeg passes them on),
# tagged hvc1 for Apple's players.  About twice x264's time (1080p on 2 cores: 15.4 s against 7.1
# for 5 s of video); 8 bits would band a 10-bit HDR picture's gradients.
EXACT_HDR = ["-c:v", "libx265", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p10le", "-tag:v", "hvc1",
             "-x265-params", "log-level=error"]
EXACT_AUDIO = ["-c:a", "aac", "-movflags", "+faststart"]
# Interlaced video (a camcorder's 1080i, DV, TV) stays interlaced, each frame's field order kept:
# encoded as progressive, its two fields woven into one picture showed combs on everything that
# moves, in every player (they deinterlace only what is flagged interlaced, as the source is).
# Its colours converted field by field (4:2:2 to 4:2:0), not across the two fields' lines.
INTERLACED = ["-flags", "+ildct+ilme", "-vf", "scale=interl=1"]


def exact_codec(ffmpeg: str, source: str) -> tuple[list[str], str | None]:
    """An exact cut's encoding, and a warning where it falls short: H.264 in 8 bits, which every
    player plays, interlaced where the source is; HDR video (PQ, HLG) stays HDR, in 10-bit HEVC
    where this ffmpeg has libx265."""
    from .preview import media_info

    info = media_info(source)
    if not (info and info["hdr"]):
        return EXACT + (INTERLACED if info and info["interlaced"] else []) + EXACT_AUDIO, None
    if has_encoder(ffmpeg, "libx265"):
        return EXACT_HDR + EXACT_AUDIO, None
    return EXACT + EXACT_AUDIO, ("cut in 8-bit H.264, still HDR: this ffmpeg has no libx265 for a 10-bit HEVC cut, "
                                 "so smooth gradients may show bands")


@functools.cache
def has_encoder(ffmpeg: str, name: str) -> bool:
    """Whether this ffmpeg was built with the encoder ``name`` (ffmpeg -encoders)."""
    try:
        listed = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, timeout=60,
                                stdin=subprocess.DEVNULL).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.SubprocessError):
        return False
    return any(line.split()[1:2] == [name] for line in listed.splitlines())


class SourceChanged(VmrError):
    """The source file changed while it was being cut: the cut is not kept."""


def _identity(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _place(tmp: str, names, force: bool, landing) -> str:
    """Give tmp the first of ``names`` that is free (``force``: the first, replacing a file),
    calling ``landing(name)`` just before."""
    for target in names:
        if force:
            if os.path.isdir(target) and not os.path.islink(target):
                continue  # never a folder, not even with --force
            landing(target)
            os.replace(tmp, target)
            return target
        if os.path.lexists(target):
            continue
        landing(target)
        try:
            os.link(tmp, target)  # fails if target appeared meanwhile: never overwrite
            return target
        except FileExistsError:
            continue
        except OSError:
            if os.path.lexists(target):
                continue
            os.rename(tmp, target)  # filesystems without hard links (a race here is not caught)
            return target
    raise VmrError(f"no free file name for the cut in {printable(os.path.dirname(tmp))}")
