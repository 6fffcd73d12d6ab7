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
    """Turn the library's exceptions into one-line errors, and failures of its files (disk full,
    a damaged catalog: SQLite, safetensors and faiss errors) into lines that name the way out."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from .errors import VmrError, storage_error

        try:
            return func(*args, **kwargs)
        except VmrError as exc:
            if os.environ.get("VMR_DEBUG"):
                raise
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted; what was committed is kept, run the command again to resume", 130)
        except Exception as exc:
            known = storage_error(exc, _library_directory())
            if os.environ.get("VMR_DEBUG") or (known is None and not isinstance(exc, OSError)):
                raise
            if known is not None:
                _fail(str(known))
            where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
            _fail(f"{exc.strerror or exc}{where}")

    return wrapper


def _library_directory() -> str:
    from .library import default_directory

    ctx = click.get_current_context(silent=True)
    chosen = ctx.find_root().obj.get("library") if ctx is not None and ctx.find_root().obj else None
    return os.path.abspath(chosen or default_directory())


def json_option(func):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")(func)


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def open_library(ctx, create: bool = False):
    from .library import Library
    from .paths import printable

    lib = Library(ctx.obj["library"], create=create)
    ctx.call_on_close(lib.close)
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
              "encoder, or openai/clip-vit-base-patch32 for a new library. The library's model moved? "
              "Give its new place: accepted when its weights hash as recorded.")
@click.option("--clip-seconds", type=float, help="Clip length of a new library (default 2).")
@click.option("--backend", type=click.Choice(list(BACKENDS)), default="torchcodec",
              show_default=True, help="Video decoder.")
@json_option
@click.pass_context
@handle_errors
def index(ctx, paths, model, clip_seconds, backend, as_json):
    """Index video files and folders: new, changed, moved and deleted files.

    Unchanged files are skipped; a moved file keeps its vectors; a file that
    cannot be read is recorded with its reason and the run goes on (the exit
    code is then 1). With --model and no PATH, only points the library at its
    model's new place (same weights, checked by their sha256).
    """
    from .indexer import index_paths
    from .paths import printable

    if not paths:
        if not model:
            raise click.UsageError("give a PATH to index (or only --model DIR, to point the library at "
                                   "its model's new place)")
        return _repoint(ctx, model, as_json)
    lib = open_library(ctx, create=True)
    before = lib.encoder()
    summary = index_paths(lib, list(paths), model=model, clip_seconds=clip_seconds, backend=backend)
    after = lib.encoder()
    if before and after["name"] != before["name"]:
        click.echo(f"note: the library's model is now {printable(after['name'])} (the same weights as "
                   f"{printable(before['name'])})", err=True)
    if as_json:
        emit_json(summary)
    else:
        click.echo(f"added {summary['added']}, updated {summary['updated']}, moved {summary['moved']}, "
                   f"unchanged {summary['unchanged']}, removed {summary['removed']}, "
                   f"failed {len(summary['failed'])}; {summary['clips']} clips in the library")
        for failure in summary["failed"]:
            click.echo(f"failed: {printable(failure['path'])}: {failure['error']}", err=True)
        for note in summary["fallbacks"]:
            click.echo(f"note: {printable(note['path'])}: {note['reason']}", err=True)
    if summary["failed"]:
        sys.exit(1)


def _repoint(ctx, model: str, as_json: bool) -> None:
    """``vmr index --model DIR``: the library's model, found at another place, with the same weights."""
    from .errors import VmrError
    from .paths import printable

    lib = open_library(ctx)
    before = lib.encoder()
    if before is None:
        raise VmrError(f"library {lib.directory} is empty; index with vmr index PATH --model {model}")
    with lib.writer_lock("vmr index --model"):
        files = lib.verify_model(model)
    info = lib.encoder()
    if as_json:
        emit_json({"encoder": info["name"], "previous": before["name"], "sha256": info["weights"]["sha256"],
                   "folder": files.folder})
        return
    click.echo(f"encoder   {printable(info['name'])} (weights sha256 {info['weights']['sha256'][:12]}, as recorded)")
    if info["name"] != before["name"]:
        click.echo(f"note: the library's model is now {printable(info['name'])}, was {printable(before['name'])}",
                   err=True)


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
    if found["stats"].get("not_logged"):
        click.echo(f"warning: {found['stats']['not_logged']}", err=True)
    if html_path and found["search_id"] is None:
        click.echo("warning: no page written: the page shows a logged search", err=True)
    elif html_path:
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
                 else "search (not logged)" if found["stats"].get("not_logged")
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
@click.option("--check", is_flag=True,
              help="Run SQLite's integrity check (salvaging a damaged catalog), verify every vector shard "
                   "against the catalog and the model's weights against their recorded sha256, and repair.")
@json_option
@click.pass_context
@handle_errors
def status(ctx, check, as_json):
    """What the library holds: videos, clips, vectors, encoder, size."""
    from .library import Library, check_library, default_directory, lost_catalog
    from .paths import printable

    directory = os.path.abspath(ctx.obj["library"] or default_directory())
    if not check and not os.path.exists(os.path.join(directory, "catalog.db")) and not lost_catalog(directory):
        data = Library.empty_status(directory)
        if as_json:
            emit_json(data)
        else:
            click.echo(f"library   {printable(directory)}: empty; run 'vmr index PATH' to fill it")
        return
    report = None
    if check:
        lib, report = check_library(directory)
        ctx.call_on_close(lib.close)
    else:
        lib = open_library(ctx)
    data = lib.status()
    if report is not None:
        data["check"] = report
    model_failed = report is not None and report["model"] is not None and not report["model"]["ok"]
    if as_json:
        emit_json(data)
    else:
        _print_status(data, report)
    if model_failed:
        _fail(report["model"]["error"])


def _print_status(data: dict, report: dict | None) -> None:
    from .paths import printable

    hours = data["duration"] / 3600
    click.echo(f"library   {printable(data['library'])}")
    click.echo(f"encoder   {printable(data['encoder'] or '-')}")
    click.echo(f"videos    {data['videos']} ({hours:.2f} h), failed {data['failed']}, stale {data['stale']}")
    if data["consistent"]:
        agreement = "consistent"
    elif data["vectors"] == data["clips"]:
        agreement = f"{data['stale']} stale videos: the next vmr index re-embeds them"
    else:
        agreement = "NOT consistent: run vmr status --check"
    click.echo(f"clips     {data['clips']}, vectors {data['vectors']} ({agreement})")
    click.echo(f"size      {data['size_bytes'] / 1e6:.1f} MB, of which frame cache "
               f"{data['frame_cache_bytes'] / 1e6:.1f} MB (safe to delete: frames.db)")
    if report is None:
        return
    catalog = report["catalog"]
    if catalog["ok"]:
        click.echo("catalog   integrity ok")
    else:
        kept = catalog["salvaged"]["tables"]
        click.echo(f"catalog   damaged ({catalog['problems'][0]}); salvaged {kept.get('videos', 0)} videos, "
                   f"{kept.get('clips', 0)} clips, {kept.get('searches', 0)} searches (rows on damaged pages "
                   f"are lost); the damaged file is kept as {printable(catalog['salvaged']['kept_as'])}")
    click.echo(f"shards    {report['shards_checked']} checked: stale {len(report['stale_videos'])} (re-embedded "
               f"by the next vmr index), orphan shards removed {report['orphan_shards']}, index "
               f"+{report['index_added']} -{report['index_removed']}")
    model = report["model"]
    if model is None:
        click.echo("model     -")
    elif model["ok"]:
        click.echo(f"model     weights sha256 {model['sha256']}, as recorded")
    else:
        click.echo("model     NOT the library's weights, or not found (below)")


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
    report = evaluate(lib, annotations, videos_dir, exhaustive=exhaustive,
                      predictions_path=predictions_path, model=model)
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
