"""``vmr eval``: standard moment-retrieval evaluation on an annotation file.

Reads Charades-STA text (``vid start end##sentence``) or QVHighlights JSONL
(``qid``, ``query``, ``vid``, ``relevant_windows``), indexes the videos if
needed, and runs every query twice: against its own video (moment retrieval)
and against the whole library (corpus moment retrieval: a hit needs the right
video and the IoU).  A uniform-random baseline is computed beside the results.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import random
import time
import unicodedata

from .errors import VmrError
from .metrics import summarise
from .paths import absolute, is_video_name, printable, user_file_target, write_user_file
from .search import Searcher, SearchOptions

WRONG_VIDEO = (-2.0, -1.0)  # a window that overlaps nothing: a moment in another video


def read_annotations(path: str) -> list[dict]:
    """[{qid, query, vid, windows: [(start, end)]}] from either format.

    Every line is checked here, before any indexing or search: a bad window or query found an
    hour into a run would cost the hour.  A bad line is named as FILE:LINE."""
    text = _read_text(path)
    if "\r" in text and "\n" not in text:  # old Mac line ends: else the whole file is one line
        text = text.replace("\r", "\n")
    # lines end at "\n" alone, since str.splitlines() also splits at U+2028, U+0085, \x0c..., which
    # are text in a query ("\r\n" loses its "\r" here; a lone "\r" is text)
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    out, kinds, qids = [], {}, {}
    comment = None  # the first "#" line: a comment in Charades-STA text, an error in JSONL
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{printable(path)}:{number}"
        if line.lstrip().startswith("#"):
            comment = comment or number
            if "QVHighlights" in kinds:
                raise _jsonl_comment(path, number)
            continue
        if line.lstrip().startswith("[") and "##" not in line:  # records saved with json.dump
            raise VmrError(f"{where}: a JSON array; QVHighlights JSONL is {ONE_A_LINE} (jq -c '.[]' FILE "
                           "writes its objects so)")
        kind = "QVHighlights" if line.lstrip().startswith("{") else "Charades-STA"
        if kind == "QVHighlights" and comment:
            raise _jsonl_comment(path, comment)
        kinds.setdefault(kind, number)
        if len(kinds) > 1:  # line numbers and qids would collide
            first = min(kinds, key=kinds.get)
            raise VmrError(f"{where}: a {kind} line in a file of {first} lines (from line {kinds[first]}); "
                           "one format per file")
        numbered = False  # a QVHighlights line without a qid is numbered by its line, as Charades-STA's are
        try:
            if kind == "QVHighlights":
                item = json.loads(line)
                numbered = isinstance(item, dict) and "qid" not in item
                qid, query, vid, windows = item.get("qid", number), item["query"], item["vid"], item["relevant_windows"]
            else:
                vid, windows, query = _charades_line(line, where)
                qid = number
        except json.JSONDecodeError as exc:
            if exc.pos >= len(line.rstrip()) and kinds["QVHighlights"] < number:  # records one a line
                # before it: this one is cut short (a download, an edit), not an indented file's
                raise VmrError(f"{where}: a JSON object that does not end on its line (cut short: {exc.msg})") from None
            if exc.pos >= len(line.rstrip()):  # json.dump(record, indent=2): '{' alone on line 1
                raise VmrError(f"{where}: a JSON object that does not end on its line; QVHighlights JSONL is "
                               f"{ONE_A_LINE} (jq -c . FILE writes an indented file so)") from None
            raise VmrError(f"{where}: not Charades-STA or QVHighlights ({exc})") from None
        except KeyError as exc:
            raise VmrError(f"{where}: not Charades-STA or QVHighlights (no {exc})") from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise VmrError(f"{where}: not Charades-STA or QVHighlights ({exc})") from None
        except RecursionError:  # json's parser recurses: a damaged line of thousands of "["
            raise VmrError(f"{where}: not Charades-STA or QVHighlights (nested too deeply)") from None
        if not isinstance(vid, (str, int)) or isinstance(vid, bool) or not str(vid).strip():
            raise VmrError(f"{where}: the video id must be a file's name, not {json.dumps(vid)}")
        try:  # the qid is written back into --predictions, which must be standard JSON
            key = json.dumps(qid, allow_nan=False)
        except ValueError:
            raise VmrError(f"{where}: qid {json.dumps(qid)} holds a number that is not finite") from None
        if key in qids:
            first, first_numbered = qids[key]
            if numbered or first_numbered:  # vmr's number met the user's: neither line is wrong alone
                without, other = (number, first) if numbered else (first, number)
                raise VmrError(f"{where}: line {without} has no qid, and vmr numbers such lines by their line, "
                               f"{key}, which line {other} gives as its qid; give every line a qid or none")
            raise VmrError(f"{where}: qid {key} again (first on line {first}); each query needs its own")
        qids[key] = (number, numbered)
        out.append({"qid": qid, "query": _checked_query(query, where), "vid": str(vid).strip(),
                    "windows": _checked_windows(windows, where), "where": where})
    if not out:
        raise VmrError(f"annotations {printable(path)} are empty")
    return out


def _read_text(path: str, block: int = 1 << 20) -> str:
    """The file as UTF-8 text (a byte-order mark is not part of the first line), read a block at a
    time so that a file that is not text stops at its first block: read whole, a 1.5 GB video
    given as the annotations took 3.3 GB and 8-16 s to be told apart."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    parts = []
    try:
        with open(path, "rb") as handle:
            for data in iter(lambda: handle.read(block), b""):
                # UTF-32's little-endian mark (FF FE 00 00) begins with UTF-16's (FF FE): asked first
                if not parts and data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
                    raise VmrError(f"annotations {printable(path)} are UTF-32 text, not UTF-8: save them as UTF-8")
                if not parts and data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                    raise VmrError(f"annotations {printable(path)} are UTF-16 text (as Windows PowerShell's '>' "
                                   "writes them), not UTF-8: save them as UTF-8")
                parts.append(decoder.decode(data))
                if b"\0" in data:  # valid UTF-8, never text: UTF-16 without its mark, a sparse or binary file
                    raise VmrError(f"annotations {printable(path)} are not UTF-8 text (they hold NUL bytes, as "
                                   "UTF-16 text or a binary file does)")
            parts.append(decoder.decode(b"", final=True))
    except OSError as exc:
        raise VmrError(f"cannot read annotations {printable(path)}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise VmrError(f"annotations {printable(path)} are not UTF-8 text") from None
    return "".join(parts)


ONE_A_LINE = "one JSON object a line"
CHARADES = "a Charades-STA line is 'VID START END##query'"


def _charades_line(line: str, where: str):
    """(vid, [[start, end]], query) of a Charades-STA line, or an error that says what the line
    holds instead: hand-written lines get an id with a space or an extra column."""
    if "##" not in line:
        raise VmrError(f"{where}: {CHARADES}, and this one has no '##'")
    head, query = line.split("##", 1)
    fields = head.split()
    if len(fields) != 3:
        count = f"{len(fields)} field{'s' if len(fields) != 1 else ''}"
        extra = (": a video id cannot hold spaces in this format (QVHighlights JSONL can), and there are "
                 "no other columns" if len(fields) > 3 else "")
        raise VmrError(f"{where}: {CHARADES}, and this one has {count} before '##'{extra}")
    vid, start, end = fields
    times = []
    for name, text in (("START", start), ("END", end)):
        try:
            times.append(float(text))
        except ValueError:
            raise VmrError(f"{where}: {CHARADES}, and its {name} '{printable(text)}' is not a number "
                           "of seconds") from None
    return vid, [times], query


def _jsonl_comment(path: str, number: int) -> VmrError:
    return VmrError(f"{printable(path)}:{number}: a '#' comment in a QVHighlights JSONL file; JSONL has no "
                    "comments (only Charades-STA text files may hold them): delete the line")


def _checked_query(query, where: str) -> str:
    if not isinstance(query, str) or not "".join(ch for ch in query if ch.isprintable()).strip():
        raise VmrError(f"{where}: the query is empty or not text")
    return query.strip()


def _checked_windows(windows, where: str) -> list[tuple[float, float]]:
    """Each window a [start, end] pair of finite seconds with 0 <= start < end."""
    if not isinstance(windows, list) or not windows:
        raise VmrError(f"{where}: relevant_windows must be a list of [start, end] pairs in seconds")
    out = []
    for window in windows:
        text = json.dumps(window)
        if (not isinstance(window, list) or len(window) != 2
                or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in window)):
            raise VmrError(f"{where}: window {text} is not [start, end] in seconds")
        start, end = float(window[0]), float(window[1])
        if not (math.isfinite(start) and math.isfinite(end)):
            raise VmrError(f"{where}: window {text} holds a time that is not a finite number")
        if start < 0 or end <= start:
            raise VmrError(f"{where}: window {text} must have 0 <= start < end")
        out.append((start, end))
    return out


def video_files(videos_dir: str, wanted=()) -> dict[str, str]:
    """Annotated id -> absolute path of the video it names under videos_dir, for every id in
    ``wanted``.  An id is a video's file name with or without its extension (``clip.mp4``,
    ``clip``) or, when it holds a '/', its path relative to videos_dir, with or without it
    (``trip1/clip``, ``./clip`` at the top), compared after Unicode NFC normalisation (a Mac
    names a file ``e`` + combining accent where the annotation has ``é``); a name with its
    extension goes before a stem.  An id no video answers to is an error, and so is one that two
    files answer to (a/x.mp4 and b/x.mp4, or x.mp4 and b/x.mp4, for ``x``): taking either would score
    against a video the annotations may not mean; the message gives the paths that name each."""
    names = _VideoNames(videos_dir)
    out, missing = {}, []
    for vid in sorted(set(wanted)):
        paths = names.find(vid)
        if len(paths) > 1:
            raise VmrError(names.ambiguous(vid, paths))
        if paths:
            out[vid] = paths[0]
        else:
            missing.append(vid)
    if missing:
        raise VmrError(f"{len(missing)} annotated video{'s' if len(missing) != 1 else ''} not found under "
                       f"{printable(videos_dir)}, e.g. '{printable(missing[0])}' (an id is a video's file name "
                       "under --videos, with or without its extension, or its path relative to --videos, "
                       "such as trip1/clip or trip1/clip.mp4)")
    return out


class _VideoNames:
    """The videos under a folder by each form of id that names them, most exact form first: those
    vmr index takes from it, so not the copies a NAS's snapshots or a drive's trash hold (with
    them, every id of a share with a '#snapshot' was ambiguous)."""

    def __init__(self, videos_dir: str):
        from .scan import is_system_folder

        self.root = videos_dir
        self.forms: list[dict[str, list[str]]] = [{}, {}, {}, {}]  # path, path less extension, name, stem
        for base, dirs, files in os.walk(videos_dir):
            dirs[:] = sorted(name for name in dirs if not is_system_folder(os.path.join(base, name)))
            for name in sorted(files):
                if is_video_name(name):  # what vmr index takes from a folder
                    path = os.path.join(base, name)
                    relative = os.path.relpath(path, videos_dir).replace(os.sep, "/")
                    keys = (relative, os.path.splitext(relative)[0], name, os.path.splitext(name)[0])
                    for form, key in zip(self.forms, keys):
                        form.setdefault(_nfc(key), []).append(path)

    def find(self, vid: str) -> list[str]:
        """An id with a '/' is a path relative to the folder (``./clip`` for one at its top), one
        without is a name: so ``clip`` for clip.mp4 and trip1/clip.mp4 names both (a path taken
        first gave the top one, and the other's queries were scored against it)."""
        key = _nfc(vid)
        if "/" in key:
            key, forms = key.removeprefix("./"), self.forms[:2]
        else:
            forms = self.forms[2:]
        for form in forms:
            if key in form:
                return form[key]
        return []

    def ambiguous(self, vid: str, paths: list[str]) -> str:
        first, second = paths[:2]
        named = [self.naming(path) for path in (first, second)]
        if None in named:  # a/été.mp4 twice, composed and decomposed: no id tells them apart
            advice = ("their names differ only in how accented letters are stored (Unicode normalisation): "
                      "rename one")
        else:
            advice = "write the one meant as its path relative to --videos: " + " or ".join(
                f"'{printable(n)}'" for n in named)
        more = f" (and {len(paths) - 2} more)" if len(paths) > 2 else ""
        return (f"annotated video '{printable(vid)}' is ambiguous under {printable(self.root)}: "
                f"{printable(first)} and {printable(second)}{more} both answer to it; {advice}")

    def naming(self, path: str) -> str | None:
        """The shortest path relative to the folder that names this file alone, or None."""
        relative = os.path.relpath(path, self.root).replace(os.sep, "/")
        for form in (os.path.splitext(relative)[0], relative):
            written = form if "/" in form else f"./{form}"
            if self.find(written) == [path]:
                return written
        return None


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def evaluate(library, annotations_path: str, videos_dir: str, exhaustive: bool = False,
             predictions_path: str | None = None, model: str | None = None, top_k: int = 10,
             progress: bool | None = None, options: SearchOptions | None = None,
             trimmer: str | None = None, backend: str = "torchcodec", warn=None) -> dict:
    from .indexer import indexed_for_reading
    from .progress import progress as bar_for
    from .trained import TrainedTrimmer

    items = read_annotations(annotations_path)
    # The predictions file and the trimmer are checked now, not after a run of minutes (the
    # trimmer's encoder only where the library has one already).
    target = user_file_target(predictions_path, "--predictions", ours=are_predictions) if predictions_path else None
    checked = TrainedTrimmer(trimmer, library if library.encoder() else None) if trimmer else None
    videos_dir = absolute(videos_dir)
    if not os.path.isdir(videos_dir):
        raise VmrError(f"no such folder: {videos_dir}")
    files = video_files(videos_dir, wanted=[it["vid"] for it in items])
    indexed_for_reading(library, videos_dir, model=model, backend=backend, progress=progress)
    require_indexed(library, [it["vid"] for it in items], files)
    warnings = [checked.unfinished] if checked and checked.unfinished else []
    warnings += windows_past_end(library, items, files)
    if warn is not None and warnings:  # before the queries run (minutes with a large encoder), not after
        warn(warnings)
    # Without the frame cache: each query's cost is what a first search of it costs.
    searcher = Searcher(library, frame_cache=False, trimmer=trimmer, backend=backend)
    base = options or SearchOptions()
    base.top_k, base.exhaustive = top_k, exhaustive
    single_preds, corpus_preds, truth, cost = [], [], [], []
    rows = []
    bar = bar_for(len(items), "eval", "query", enabled=progress)
    for item in items:
        path = files[item["vid"]]
        started = time.time()
        own = searcher.search(item["query"], _with(base, only_video=path), log=False)
        single_cost = dict(own["stats"], seconds=time.time() - started)
        corpus = searcher.search(item["query"], _with(base, only_video=None), log=False)
        single = [(r["start"], r["end"], r["score"]) for r in own["results"]]
        single_preds.append(single)
        # a result shown under a copy of the annotated video is a moment of it (a search shows the
        # moments of copies once, under one of them: scored as another video, they were misses)
        corpus_preds.append([(r["start"], r["end"], r["score"]) if r["video"] == path or path in r.get("copies", ())
                             else WRONG_VIDEO + (r["score"],) for r in corpus["results"]])
        truth.append(item["windows"])
        cost.append(single_cost)
        # Times as search gives them (3 decimals: rounded to 2, the official evaluator disagreed with
        # the printed numbers near a threshold); a query with no result gets one window that scores
        # zero, since Moment-DETR's evaluator reads every query's first window (IndexError).
        rows.append({"qid": item["qid"], "query": item["query"], "vid": item["vid"],
                     "pred_relevant_windows": [[s, e, c] for s, e, c in single] or [[0.0, 0.0, 0.0]]})
        bar.update(1)
    bar.close()
    if target:
        _write_jsonl(target, rows)
    n = len(items)
    keys = ("clips_verified", "frames_stored", "frames_decoded", "frames_encoded", "seconds")
    return {
        "n_queries": n,
        "exhaustive": exhaustive,
        "trimmer": checked.where if checked else None,  # which search was scored, as the table's first line says
        "single": summarise(single_preds, truth),
        "corpus": summarise(corpus_preds, truth),
        "cost": {k: round(sum(c[k] for c in cost) / n, 4) for k in keys},
        "random": random_baseline(library, items, files, truth, [len(p) for p in single_preds],
                                  [len(p) for p in corpus_preds]),
        "warnings": warnings,
    }


def require_indexed(library, vids, files) -> None:
    """An error naming an annotated video that could not be indexed, and why, before any query
    runs: its queries could only fail ("video not in the library") or score as misses.  A file
    the library holds under another name (``--videos`` through a symbolic link to a folder
    indexed before) is the same video: ``files`` is pointed at that name."""
    for vid in sorted(set(vids)):
        row = library.catalog.video_by_path(files[vid]) or _same_file_row(library, files[vid])
        if row is None or row["status"] != "ok":
            reason = row["error"] if row and row["error"] else "not indexed"
            raise VmrError(f"annotated video {vid} could not be indexed: {printable(reason, name=False)} "
                           f"({printable(files[vid])}); fix or remove it and its annotations")
        files[vid] = row["path"]


def _same_file_row(library, path: str) -> dict | None:
    """The catalog row of the same file under another name, or None."""
    from .scan import same_file_row

    try:
        return same_file_row(os.stat(path), library.catalog.videos())
    except OSError:
        return None


def windows_past_end(library, items, files) -> list[str]:
    """A line for each annotated window that starts after its video ends (a wrong id or
    times): no search can find it, so the scores are lower than the search deserves."""
    durations = {v["path"]: v["duration"] for v in library.catalog.videos("ok")}
    out = []
    for item in items:
        duration = durations.get(files.get(item["vid"]))
        for start, end in item["windows"]:
            if duration is not None and start >= duration:
                out.append(f"{item['where']}: window [{start:g}, {end:g}] starts after video '{item['vid']}' "
                           f"ends ({duration:.1f} s); no search can find it")
    return out


def random_baseline(library, items, files, truth, single_counts: list[int], corpus_counts: list[int],
                    seed: int = 0) -> dict:
    """Uniform-random windows (own video; a random video for each in the corpus setting), for
    scale: for each query as many as search returned for it in that setting, since R5 and mAP
    read them all (with one, the random R5@0.5 was its R1@0.5: 19 where five guesses reach 69;
    with ten where search returned two, it read five guesses against search's two)."""
    rng = random.Random(seed)
    durations = {v["path"]: v["duration"] for v in library.catalog.videos("ok")}
    paths = sorted(durations)
    single, corpus = [], []
    for item, n_single, n_corpus in zip(items, single_counts, corpus_counts, strict=True):
        path = files[item["vid"]]
        single.append([_random_window(rng, durations[path]) for _ in range(n_single)])
        guesses = []
        for _ in range(n_corpus):
            other = rng.choice(paths)
            window = _random_window(rng, durations[other])
            guesses.append(window if other == path else WRONG_VIDEO + (window[2],))
        corpus.append(guesses)
    return {"single": summarise(single, truth), "corpus": summarise(corpus, truth)}


def _random_window(rng, duration: float):
    a, b = sorted((rng.uniform(0, duration), rng.uniform(0, duration)))
    return (a, b, 0.0)


def _with(options: SearchOptions, **changes) -> SearchOptions:
    from dataclasses import replace

    return replace(options, **changes)


PREDICTION_KEYS = {"qid", "query", "vid", "pred_relevant_windows"}  # exactly what evaluate writes per line


def are_predictions(head: bytes) -> bool:
    """Whether a file's first bytes are predictions ``evaluate`` wrote (only those are replaced;
    never the annotations being scored)."""
    try:
        first = json.loads(head.split(b"\n", 1)[0])
    except (ValueError, RecursionError):
        return False
    return isinstance(first, dict) and set(first) == PREDICTION_KEYS  # another tool's has more (saliency)


def _write_jsonl(target: str, rows: list[dict]) -> None:
    """Atomically, over what user_file_target allowed (a new name or a regular file)."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, allow_nan=False) + "\n")  # standard JSON: no NaN

    write_user_file(target, write)
