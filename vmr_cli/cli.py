"""The click layer: parse options, call the library API, print results.

Results go to stdout (a table, or ``--json``), progress and messages to
stderr.  Errors the user can fix are one line and a non-zero exit;
``VMR_DEBUG=1`` shows the traceback.  Heavy libraries load inside commands,
so ``vmr --help`` and ``vmr status`` answer at once.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time

import click

from . import __version__
from .decode import BACKENDS


def _fail(message: str, code: int = 1):
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def handle_errors(func):
    """Turn the library's exceptions into one-line errors."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from .errors import VmrError

        try:
            return func(*args, **kwargs)
        except VmrError as exc:
            if os.environ.get("VMR_DEBUG"):
                raise
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted; what was committed is kept, run the command again to resume", 130)
        except OSError as exc:
            if os.environ.get("VMR_DEBUG"):
                raise
            where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
            _fail(f"{exc.strerror or exc}{where}")

    return wrapper


def json_option(func):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")(func)


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def open_library(ctx, create: bool = False):
    from .library import Library
    from .paths import printable

    lib = Library(ctx.obj["library"], create=create)
    if lib.readonly:
        click.echo(f"note: library {printable(lib.directory)} is read-only: nothing is written "
                   "and searches are not logged", err=True)
    return lib


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vmr")
@click.option("--library", "library", type=click.Path(file_okay=False), envvar="VMR_LIBRARY",
              help="Library folder (catalog and vectors). Default: $VMR_LIBRARY or ~/.local/share/vmr.")
@click.pass_context
def cli(ctx, library):
    """vmr: find moments in your videos from a sentence.

    \b
      vmr index ~/videos                    # incremental
      vmr search "person opens the door"    # ranked moments
      vmr export --clip 1 3                 # cut results with ffmpeg
    """
    ctx.ensure_object(dict)
    ctx.obj["library"] = library


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option("--model", help="CLIP-family model: hub id or local folder. Default: the library's "
              "encoder, or openai/clip-vit-base-patch32 for a new library.")
@click.option("--clip-seconds", type=float, help="Clip length of a new library (default 2).")
@click.option("--backend", type=click.Choice(list(BACKENDS)), default="torchcodec",
              show_default=True, help="Video decoder.")
@click.option("--prune", is_flag=True, help="Also remove the entries of a folder whose files are all "
              "missing at once (kept by default: an unmounted drive looks like that).")
@json_option
@click.pass_context
@handle_errors
def index(ctx, paths, model, clip_seconds, backend, prune, as_json):
    """Index video files and folders: new, changed, moved and deleted files.

    With no PATH, the files and folders already in the library are updated
    (and videos whose vectors went missing are re-embedded). Unchanged files
    are skipped; a moved file keeps its vectors; a file that cannot be read is
    reported with its reason and the run goes on (the exit code is then 1).
    Entries under a folder that cannot be read, or that lost all its files at
    once, are kept until --prune or 'vmr forget'.
    """
    from .indexer import index_paths, skipped_words
    from .paths import printable

    lib = open_library(ctx, create=True)
    try:
        summary = index_paths(lib, list(paths), model=model, clip_seconds=clip_seconds, backend=backend,
                              prune=prune)
    finally:
        discarded = lib.discard_if_empty()  # a failed first run leaves no empty library behind
    if as_json:
        emit_json(summary)
    else:
        click.echo(f"added {summary['added']}, updated {summary['updated']}, moved {summary['moved']}, "
                   f"unchanged {summary['unchanged']}, removed {summary['removed']}, "
                   f"failed {len(summary['failed'])}; {summary['clips']} clips in the library")
        kept = {k["path"] for k in summary["kept"]}
        for failure in summary["failed"]:
            if failure["path"] not in kept:  # an unreadable folder: its kept: line says it all
                click.echo(f"failed: {printable(failure['path'])}: {failure['error']}", err=True)
        for note in summary["kept"]:
            click.echo(f"kept: {printable(note['path'])}: {note['reason']}", err=True)
        for note in summary["fallbacks"]:
            click.echo(f"note: {printable(note['path'])}: {note['reason']}", err=True)
        for note in summary["damaged"]:
            n = note["bad_frames"]
            click.echo(f"note: {printable(note['path'])}: {n} frame{'s' if n != 1 else ''} could not be "
                       "decoded (damaged stream); indexed with the frames around them", err=True)
        if summary["skipped"]["files"]:
            click.echo(skipped_words(summary["skipped"]["extensions"]).lstrip("; "), err=True)
    if discarded:
        click.echo(f"note: nothing was indexed, so no library was left at {printable(lib.directory)}", err=True)
    if summary["failed"]:
        sys.exit(1)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@json_option
@click.pass_context
@handle_errors
def forget(ctx, paths, as_json):
    """Drop the library's entries for files and folders, on purpose.

    Everything at or under each PATH goes (its vectors with it), whether or
    not PATH exists now: the way out for a drive or share that is gone for
    good. Nothing outside PATH is touched, and no file on disk.
    """
    from .errors import VmrError
    from .paths import absolute, printable

    lib = open_library(ctx)
    roots = [absolute(p) for p in paths]
    with lib.writer_lock("vmr forget"):
        empty = [r for r in roots if not lib.catalog.videos_under(r)]
        if empty:
            raise VmrError(f"the library holds nothing at or under {printable(empty[0])}; "
                           "nothing was forgotten")
        started = time.time()
        forgotten = [{"path": r, "videos": len(lib.forget(r))} for r in roots]
        lib.save()
        result = {"forgotten": forgotten, "videos": sum(f["videos"] for f in forgotten)}
        lib.catalog.log_operation("forget", {"paths": roots}, result, started)
    if as_json:
        emit_json(result)
        return
    for item in forgotten:
        click.echo(f"forgot {item['videos']} entr{'y' if item['videos'] == 1 else 'ies'} under "
                   f"{printable(item['path'])}")


def results_table(results) -> str:
    from .paths import printable
    from .timecodes import timecode

    if not results:
        return "no moments matched"
    lines = [f"{'rank':>4}  {'start':>9} – {'end':<9}  {'score':>6}  path"]
    for r in results:
        lines.append(f"{r['rank']:>4}  {timecode(r['start']):>9} – {timecode(r['end']):<9}  {r['score']:>6.3f}  "
                     f"{printable(r['video'])}")
    return "\n".join(lines)


@cli.command()
@click.argument("query")
@click.option("--top-k", type=click.IntRange(1, 1000), default=10, show_default=True, help="Moments to return.")
@click.option("--exhaustive", is_flag=True,
              help="Decode and encode the fine grid over every clip of every candidate video (the baseline).")
@click.option("--refine", type=click.IntRange(0, 100), default=3, show_default=True,
              help="Best moments whose edges are refined with a few decoded frames (0: none, fastest).")
@click.option("--min-score", type=float, default=None, help="Drop moments scoring below this (-1 keeps all).")
@click.option("--max-videos", type=click.IntRange(1, 10000), default=10, show_default=True,
              help="Candidate videos searched in depth.")
@click.option("--paths", "paths_only", is_flag=True, help="Print only the paths of matching videos.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Also write a page with thumbnails and players for the results.")
@click.option("--open", "open_page", is_flag=True, help="Open the --html page in the browser.")
@json_option
@click.pass_context
@handle_errors
def search(ctx, query, top_k, exhaustive, refine, min_score, max_videos, paths_only, html_path, open_page,
           as_json):
    """Find the moments that match QUERY, best first."""
    from . import STARTED
    from .errors import VmrError
    from .paths import printable
    from .search import Searcher, SearchOptions, clean_query

    clean_query(query)  # an empty query fails before any model loads
    lib = open_library(ctx)
    options = SearchOptions(top_k=top_k, exhaustive=exhaustive, refine=refine, min_score=min_score,
                            max_videos=max_videos)
    if html_path and lib.readonly:
        raise VmrError(f"--html needs a logged search, and library {lib.directory} is read-only")
    startup = time.perf_counter() - STARTED
    searcher = Searcher(lib)
    found = searcher.search(query, options, progress=None)
    found["stats"]["time"] = {"startup": round(startup, 3), "model_load": round(searcher.load_seconds, 3),
                              **found["stats"]["time"]}
    if html_path:
        _write_page(lib.catalog.search(found["search_id"]), html_path, open_page)
    for skipped in found["stats"].get("skipped", []):
        click.echo(f"warning: skipped {printable(skipped['video'])}: {skipped['error']}", err=True)
    for note in found["stats"].get("fallbacks", []):
        click.echo(f"note: {printable(note['video'])}: {note['reason']}", err=True)
    if as_json:
        emit_json(found)
    elif paths_only:
        for path in dict.fromkeys(r["video"] for r in found["results"]):
            click.echo(printable(path))
    else:
        click.echo(results_table(found["results"]))
        label = (f"search {found['search_id']}" if found["search_id"] is not None
                 else "search (not logged: read-only library)")
        stats = found["stats"]
        cached = f", {stats['frames_cached']} from the cache" if stats["frames_cached"] else ""
        click.echo(f"{label}: {stats['videos_considered']} videos, {stats['frames_encoded']} frames "
                   f"encoded{cached}, {time.perf_counter() - STARTED:.2f} s in all", err=True)


@cli.command()
@click.option("--clip", "clip_flag", is_flag=True, help="Cut clips (the default action; RANKS follow it).")
@click.argument("ranks", nargs=-1, type=click.IntRange(min=1))
@click.option("--search", "search_id", type=int, help="A logged search id (default: the last search).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder for the cut files.")
@click.option("--copy", is_flag=True, help="Stream copy: fast, but starts at the key frame before the moment.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@json_option
@click.pass_context
@handle_errors
def export(ctx, clip_flag, ranks, search_id, out_dir, copy, force, as_json):
    """Cut results of the last search (or --search ID) into files with ffmpeg.

    \b
      vmr export --clip 1 3           # results 1 and 3 of the last search
      vmr export --clip               # every result of the last search
      vmr export --search 7 --clip 2  # result 2 of logged search 7
    """
    from .export import export_results
    from .paths import printable
    from .timecodes import timecode

    lib = open_library(ctx)
    done = export_results(lib.catalog, list(ranks), search_id=search_id,
                          out_dir=out_dir, copy=copy, force=force)
    if as_json:
        emit_json(done)
        return
    for item in done["exported"]:
        click.echo(f"{item['rank']:>4}  {timecode(item['start'])} – {timecode(item['end'])}  {printable(item['path'])}")
    if copy:
        click.echo("stream copy: each file starts at the key frame at or before its start", err=True)


@cli.command()
@click.option("--check", is_flag=True, help="Verify every vector shard against the catalog and repair.")
@click.option("--failed", "list_failed", is_flag=True,
              help="Also list the files that could not be indexed, and why.")
@json_option
@click.pass_context
@handle_errors
def status(ctx, check, list_failed, as_json):
    """What the library holds: videos, clips, vectors, encoder, size."""
    from .library import Library, default_directory
    from .paths import printable

    directory = os.path.abspath(ctx.obj["library"] or default_directory())
    if not check and not os.path.exists(os.path.join(directory, "catalog.db")):
        data = Library.empty_status(directory)
        if list_failed:
            data["failed_files"] = []
        if as_json:
            emit_json(data)
        else:
            click.echo(f"library   {printable(directory)}: empty; run 'vmr index PATH' to fill it")
        return
    lib = open_library(ctx)
    report = None
    if check:
        with lib.writer_lock("vmr status --check"):
            report = lib.check(repair=True, deep=True)
    data = lib.status()
    if report is not None:
        data["check"] = report
    if list_failed:
        data["failed_files"] = lib.failed_files()
    if as_json:
        emit_json(data)
        return
    hours = data["duration"] / 3600
    click.echo(f"library   {printable(data['library'])}")
    click.echo(f"encoder   {data['encoder'] or '-'}")
    click.echo(f"videos    {data['videos']} ({hours:.2f} h), failed {data['failed']}, stale {data['stale']}")
    click.echo(f"clips     {data['clips']}, vectors {data['vectors']} "
               f"({'consistent' if data['consistent'] else 'NOT consistent: run vmr status --check'})")
    click.echo(f"size      {data['size_bytes'] / 1e6:.1f} MB, of which frame cache "
               f"{data['frame_cache_bytes'] / 1e6:.1f} MB (safe to delete: frames.db)")
    if report is not None:
        click.echo(f"check     stale {len(report['stale_videos'])} (re-embedded by the next vmr index), "
                   f"orphan shards removed {report['orphan_shards']}, index +{report['index_added']} "
                   f"-{report['index_removed']}")
    for failed in data.get("failed_files", []):
        click.echo(f"failed    {printable(failed['path'])}: {failed['error']}")
    if data.get("failed_files"):
        click.echo("each is tried again when it changes, or when vmr, its decoder or ffmpeg does", err=True)


def _write_page(search: dict, html_path: str, open_page: bool) -> None:
    from .page import open_in_browser, write_page
    from .paths import printable

    written = write_page(search, html_path)
    click.echo(f"page: {printable(written)}", err=True)
    if open_page:
        open_in_browser(written)


@cli.command()
@click.argument("search_id", type=int)
@click.option("--html", "html_path", type=click.Path(dir_okay=False), required=True,
              help="Write the page here.")
@click.option("--open", "open_page", is_flag=True, help="Open the page in the browser.")
@json_option
@click.pass_context
@handle_errors
def show(ctx, search_id, html_path, open_page, as_json):
    """Show a logged search again, as a page with thumbnails and players."""
    from .errors import VmrError

    lib = open_library(ctx)
    logged = lib.catalog.search(search_id)
    if logged is None:
        raise VmrError(f"no search with id {search_id}")
    _write_page(logged, html_path, open_page)
    if as_json:
        emit_json({"search_id": search_id, "query": logged["query"], "results": logged["results"]})


@cli.command(name="eval")
@click.argument("annotations", type=click.Path(dir_okay=False))
@click.option("--videos", "videos_dir", required=True, type=click.Path(file_okay=False),
              help="Folder holding the annotated videos (file stem = video id).")
@click.option("--model", help="Encoder for a new library (as for vmr index).")
@click.option("--exhaustive", is_flag=True, help="Verify every clip (the baseline trimming is measured against).")
@click.option("--predictions", "predictions_path", type=click.Path(dir_okay=False),
              help="Write QVHighlights-style predictions (JSONL) for the moment retrieval setting.")
@json_option
@click.pass_context
@handle_errors
def eval_command(ctx, annotations, videos_dir, model, exhaustive, predictions_path, as_json):
    """Score search on an annotation file (Charades-STA or QVHighlights).

    Reports R1@0.3/0.5/0.7, mIoU, R5@0.5 and mAP for moment retrieval (query
    against its own video) and corpus moment retrieval (against the whole
    library), the cost per query, and a uniform-random baseline.
    """
    from .evaluate import evaluate

    lib = open_library(ctx, create=True)
    try:
        report = evaluate(lib, annotations, videos_dir, exhaustive=exhaustive,
                          predictions_path=predictions_path, model=model)
    except BaseException:
        lib.discard_if_empty()  # a failed first run leaves no empty library behind
        raise
    if as_json:
        emit_json(report)
        return
    keys = ["R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "R5@0.5", "mAP"]
    click.echo(f"{report['n_queries']} queries, {'exhaustive' if exhaustive else 'trimmed'} search")
    click.echo(f"{'setting':<22}" + "".join(f"{k:>8}" for k in keys))
    for name, values in [("moment retrieval", report["single"]), ("corpus", report["corpus"]),
                         ("random (moment)", report["random"]["single"]),
                         ("random (corpus)", report["random"]["corpus"])]:
        click.echo(f"{name:<22}" + "".join(f"{100 * values[k]:>8.1f}" for k in keys))
    c = report["cost"]
    click.echo(f"per query: {c['clips_verified']:.1f} clips verified, {c['frames_decoded']:.0f} frames "
               f"decoded, {c['frames_encoded']:.0f} encoded, {c['seconds']:.2f} s")


def main():
    cli(prog_name="vmr")


if __name__ == "__main__":
    main()
