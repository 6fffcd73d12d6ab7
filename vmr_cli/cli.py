"""The click layer: parse options, call the library API, print results.

Results go to stdout (a table, or ``--json``), progress and messages to
stderr.  Errors the user can fix are one line and a non-zero exit;
``VMR_DEBUG=1`` shows the traceback.  Heavy libraries load inside commands,
so ``vmr --help`` and ``vmr status`` answer at once.
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import sys
import time
from contextlib import contextmanager

import click

from . import __version__
from .decode import BACKENDS
from .errors import Terminated, exit_at_once, on_signal, raise_interrupt  # Terminated: raised on SIGTERM
from .paths import printable


def say(message: str) -> None:
    """One message line on stderr.  Messages name files, and a file name can hold terminal
    escapes or newlines: everything that reaches stderr is escaped here, in one place."""
    click.echo(printable(message, name=False), err=True)


def _fail(message: str, code: int = 1):
    _ignore_signals()  # the outcome is decided: a second Ctrl-C must not replace it
    say(f"Error: {message}")
    sys.exit(code)


def _ignore_signals() -> None:
    if _AS_PROCESS:
        from .errors import cancel_deferred

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cancel_deferred()  # one deferred until an import ended must not be raised after the outcome


# What Ctrl-C leaves, by command: only these have work a second run goes on from.
INTERRUPTED = {
    "index": "interrupted; what was committed is kept, run the command again to resume",
    "export": "interrupted; the clips cut so far are kept, run the command again (without --force) to cut "
              "the rest",
    "eval": "interrupted; the videos indexed so far are kept (run the command again: indexing resumes, "
            "the searches run again)",
}


def handle_errors(func):
    """Turn the library's exceptions into one-line errors, and failures of its files (disk full,
    a damaged catalog: SQLite, safetensors and faiss errors) into lines that name the way out."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from .errors import Interrupted, VmrError, deferred, interrupt_received, received, storage_error

        received.clear()
        try:
            if _AS_PROCESS:  # the command stops cleanly: Ctrl-C and SIGTERM raise where it is
                on_signal(signal.SIGINT, raise_interrupt)
                on_signal(signal.SIGTERM, raise_interrupt)
            done = func(*args, **kwargs)
            if (signum := deferred()) is not None:  # came in an import, the command ended before its
                _interrupted(signum)  # timer fired: it was lost (exit 0) or raised in click ('Aborted!')
            _ignore_signals()  # the work is done and said: a Ctrl-C now made click say 'Aborted!', exit 1
            return done
        except VmrError as exc:
            if os.environ.get("VMR_DEBUG"):
                raise
            if not isinstance(exc, Interrupted) and (signum := interrupt_received()) is not None:
                _interrupted(signum)  # its doing (a model 'cannot be read')
            _fail(str(exc), exc.status if isinstance(exc, Interrupted) else 1)
        except KeyboardInterrupt as exc:
            _interrupted(signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
        except BrokenPipeError:  # `vmr status | head`: the reader has what it wanted; end as quietly as cat
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
            sys.exit(141)  # 128 + SIGPIPE, what a shell reports for a writer the pipe closed on
        except Exception as exc:
            if (signum := interrupt_received()) is not None and not os.environ.get("VMR_DEBUG"):
                _interrupted(signum)  # its doing, where native code took the KeyboardInterrupt
            if isinstance(exc, OSError) and _writing_output(exc):  # '> /dev/full', a full disk under a
                _fail(f"cannot write the output: {exc.strerror or exc}")  # redirect: not the library's
            known = storage_error(exc, _library_directory())
            if os.environ.get("VMR_DEBUG") or (known is None and not isinstance(exc, OSError)):
                raise
            if known is not None:
                _fail(str(known))
            names = [os.fsdecode(n) if isinstance(n, (str, bytes, os.PathLike)) else str(n)
                     for n in (exc.filename, exc.filename2) if n is not None]
            where = f": {' -> '.join(names)}" if names and exc.strerror else ""
            _fail(f"{exc.strerror or exc}{where}")

    return wrapper


def _interrupted(signum: int):
    """The command's interrupted line, and 128 + the signal as a shell reports it (130, 143)."""
    _fail(INTERRUPTED.get(click.get_current_context().info_name, "interrupted"), 128 + signum)


def _writing_output(exc: OSError) -> bool:
    """Whether the error came from writing the command's output (click.echo to a redirected
    stdout): it was told as the library's disk being full, 'what was committed is kept'."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "echo" and code.co_filename == click.utils.__file__:
            return exc.filename is None
        tb = tb.tb_next
    return False


_GIVEN_ARGS: list[str] = []  # the command line, for a hint when a file name was read as options


@contextmanager
def _escaped_click_errors():
    try:
        yield
    except click.ClickException as exc:
        if isinstance(exc, click.NoSuchOption):  # 'vmr index -clip.mp4': a file, read as options '-c'...
            given = _GIVEN_ARGS[:_GIVEN_ARGS.index("--")] if "--" in _GIVEN_ARGS else _GIVEN_ARGS
            named = [a for a in given if a.startswith("-") and os.path.lexists(a)]
            if named:
                command = exc.ctx.command_path if exc.ctx else "vmr COMMAND"
                exc.message += f" ({named[0]} is a file here: file names go after '--': {command} -- NAME)"
        # Line by line: click's own messages span lines (bare 'vmr' prints the help as one).
        exc.message = "\n".join(printable(line, name=False) for line in exc.message.split("\n"))
        raise


class _Group(click.Group):
    """Click's own errors quote what was passed (a glob can pass a file name holding terminal
    escapes): escaped like vmr's messages."""

    def make_context(self, info_name, args, *rest, **kwargs):
        _GIVEN_ARGS[:] = [a for a in args if isinstance(a, str)]
        with _escaped_click_errors():
            return super().make_context(info_name, args, *rest, **kwargs)

    def invoke(self, ctx):
        with _escaped_click_errors():
            return super().invoke(ctx)


PLAYERS = ["auto", "mpv", "vlc", "system"]
OPEN_NEEDS_HTML = "--open opens the --html page: give --html FILE too"
EXHAUSTIVE_TRIMMER = ("--exhaustive verifies every clip, so a --trimmer has nothing to choose: "
                      "give one or the other")


class _Path(click.Path):
    """click.Path that refuses an empty string: an unset shell variable ('vmr forget "$DIR"')
    must not mean the current folder."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value == "":
            self.fail("empty path (an unset shell variable?)", param, ctx)
        return super().convert(value, param, ctx)


class _Model(click.ParamType):
    """A hub id or a folder; an empty one (``--model "$MODEL"`` with MODEL unset) meant no --model:
    a new library went for the default model, a download of 600 MB."""
    name = "model"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("empty model name (an unset shell variable?)", param, ctx)
        return value


class _Finite(click.ParamType):
    name = "number"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"must be a finite number, not {value}", param, ctx)
        return number


class _LibraryPath(_Path):
    """A library folder; a '~' the shell left alone (quoted, or from a config file) is the home
    folder, not a folder named '~' made in the current one."""

    def convert(self, value, param, ctx):
        from .errors import VmrError
        from .library import home_library

        if isinstance(value, str):
            try:
                value = home_library(value)
            except VmrError as exc:
                self.fail(str(exc), param, ctx)
        return super().convert(value, param, ctx)


def _set_library(ctx, _param, value):
    if value is not None:  # after the command name it wins over one given before it
        ctx.ensure_object(dict)["library"] = value


def library_option(func):
    """--library after the command name too (vmr search Q --library DIR), like before it."""
    return click.option("--library", type=_LibraryPath(file_okay=False), expose_value=False,
                        callback=_set_library, help="Library folder (also accepted before the "
                        "command). Default: $VMR_LIBRARY, else $XDG_DATA_HOME/vmr, else ~/.local/share/vmr.")(func)


def backend_option(text: str, default: str | None = "torchcodec"):
    """--backend: the video decoder (index, eval, train: torchcodec unless told; search: None)."""
    return click.option("--backend", type=click.Choice(list(BACKENDS)), default=default,
                        show_default=default is not None, help=text)


def trimmer_option(func):
    return click.option("--trimmer", type=_Path(file_okay=False, exists=True),
                        help="A trimmer trained by vmr train: its network chooses the windows.")(func)


def _library_directory() -> str:
    from .library import default_directory

    ctx = click.get_current_context(silent=True)
    chosen = ctx.find_root().obj.get("library") if ctx is not None and ctx.find_root().obj else None
    return os.path.abspath(chosen or default_directory())


def json_option(func):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")(func)


def emit_json(data) -> None:
    """The one writer of ``--json``: one document on stdout, strict JSON that any parser reads.
    A number that is not finite is null (Python writes a bare NaN or Infinity, which is not
    JSON); numpy numbers are numbers (they were written as strings: a count as "3")."""
    click.echo(json.dumps(json_value(data), indent=2, allow_nan=False))


def json_value(value):
    """``value`` in the types JSON writes: a path as its string, a numpy scalar as its number,
    a float that is not finite as None; anything else (a bug) as its string."""
    if isinstance(value, float):  # numpy's float64 too
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int)):  # bool is an int
        return value
    if isinstance(value, dict):
        return {key: json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fsdecode(value)
    if getattr(value, "shape", None) == () and callable(getattr(value, "item", None)):  # a numpy scalar
        return json_value(value.item())
    return str(value)  # a bug, but the command's work is done: its output still parses


def open_library(ctx, create: bool = False, writes: bool = False):
    """``writes``: the command only writes (forget): on a read-only library its own error says
    so, without the note that searches are not logged."""
    from .library import Library

    lib = Library(ctx.obj["library"], create=create)
    ctx.call_on_close(lib.close)
    if lib.readonly and not writes:
        say(f"note: library {lib.directory} is read-only: nothing is written and searches are not logged")
    return lib


def _library_exists(ctx) -> bool:
    """Whether the library already has a catalog: eval and train then open it as it is, read-only
    too (a lab's shared library), and index only what needs it (indexer.indexed_for_reading)."""
    from .catalog import catalog_in
    from .library import library_directory

    return os.path.exists(catalog_in(library_directory(ctx.obj["library"])))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vmr")
@click.option("--library", "library", type=_LibraryPath(file_okay=False),
              help="Library folder (catalog and vectors). Default: $VMR_LIBRARY, else $XDG_DATA_HOME/vmr, else "
              "~/.local/share/vmr.")
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
@click.argument("paths", nargs=-1, type=_Path(path_type=str))
@click.option("--model", type=_Model(), help="CLIP-family model: hub id or local folder. Default: the library's "
              "encoder, or openai/clip-vit-base-patch32 for a new library. The library's model moved? "
              "Give its new place: accepted when its weights hash as recorded.")
@click.option("--clip-seconds", type=float, help="Clip length of a new library, 0.25 to 60 seconds (default 2).")
@backend_option("Video decoder.")
@click.option("--prune", is_flag=True, help="Also remove the entries of a folder whose files are all "
              "missing at once (kept by default: an unmounted drive looks like that).")
@json_option
@library_option
@click.pass_context
@handle_errors
def index(ctx, paths, model, clip_seconds, backend, prune, as_json):
    """Index video files and folders: new, changed, moved and deleted files.

    With no PATH, the files and folders already in the library are updated
    (and videos whose vectors went missing are re-embedded). Unchanged files
    are skipped; a moved file keeps its vectors; a file that cannot be read is
    reported with its reason and the run goes on (the exit code is then 1).
    A run stopped in a long video (Ctrl-C, a kill) keeps its progress on it, saved
    every 30 s of work: the next run resumes the video there.
    Entries under a folder that cannot be read, or that lost all its files at
    once, are kept until --prune or 'vmr forget'. A trash, a NAS's previews
    and snapshot folders are not entered unless named. With --model and no PATH,
    only points the library at its model's new place (same weights, checked
    by their sha256). A PATH that starts with '-' goes after '--':
    vmr index -- -clip.mp4
    """
    from .indexer import index_paths, skipped_words

    if not paths and model:
        _only_model(ctx, prune=prune, clip_seconds=clip_seconds, backend=backend)
        if _repoint(ctx, model, as_json):
            return
    lib = open_library(ctx, create=True)
    before = lib.encoder()
    try:
        summary = index_paths(lib, list(paths), model=model, clip_seconds=clip_seconds, backend=backend,
                              prune=prune)
        after = lib.encoder()
    finally:
        discarded = lib.discard_if_empty()  # a failed first run leaves no empty library behind
    if before and after and after["name"] != before["name"]:
        say(f"note: the library's model is now {after['name']} (the same weights as {before['name']})")
    if discarded:  # the library that recorded the failures is gone with them
        summary["failed"] = [dict(failure, recorded=False) for failure in summary["failed"]]
    if as_json:
        emit_json(summary)
    else:
        before = summary["failed_before"]
        click.echo(f"added {summary['added']}, updated {summary['updated']}, moved {summary['moved']}, "
                   f"unchanged {summary['unchanged']}"
                   + (f" ({summary['touched']} with a new time only)" if summary.get("touched") else "")
                   + f", removed {summary['removed']}, "
                   f"failed {len(summary['failed'])}; {summary['clips']} clips in the library"
                   + (f" ({before} file{'s' if before != 1 else ''} that failed before, unchanged: "
                      "vmr status --failed)" if before else ""))
    # The notes and failures on stderr with --json too (as search, show and export warn): a script
    # that keeps the document still tells the user why the exit code is 1.
    again = summary["embedded_again"]
    if again["hdr"]:
        n = again["hdr"]
        say(f"note: {n} HDR video{'s' if n != 1 else ''} (PQ or HLG) indexed before vmr tone-mapped HDR "
            f"{'were' if n != 1 else 'was'} embedded again (the old vectors were of a grey, washed-out picture)")
    if again["no_stored_frames"]:
        n = again["no_stored_frames"]
        say(f"note: {n} video{'s' if n != 1 else ''} indexed before vmr stored each clip's frames "
            f"{'were' if n != 1 else 'was'} embedded again (search placed their moments from the middle of "
            "each clip only)")
    kept = {k["path"] for k in summary["kept"]}
    _say_some([f"failed: {failure['path']}: {failure['error']}" for failure in summary["failed"]
               if failure["path"] not in kept],  # an unreadable folder: its kept: line says it all
              "failed (--json lists every one; vmr status --failed those recorded)")
    for note in summary["kept"]:
        say(f"kept: {note['path']}: {note['reason']}")
    _say_some([f"note: {note['path']}: the same file as {note['indexed_as']} (a link or another name "
               "for it), indexed once under that name" for note in summary["same_file"]],
              "files indexed under another name (--json lists them)")
    _say_some([f"note: {note['path']}: the same content as {note['copy_of']} (a copy): its vectors "
               "were copied, not computed, and a search shows their moments once"
               for note in summary["copies"]], "copies (--json lists them)")
    _say_some([f"note: {note['path']}: resumed at clip {note['from_clip']} of {note['clips']}, from the progress "
               "an interrupted index saved" for note in summary["resumed"]], "resumed videos (--json lists them)")
    _say_some([f"note: {note['path']}: {note['reason']}" for note in summary["fallbacks"]],
              "such notes (--json lists them)")
    if summary.get("own_outputs"):
        n = summary["own_outputs"]
        say(f"note: passed over {n} file{'s' if n != 1 else ''} vmr made itself (cuts of vmr export, "
            "previews): vmr never indexes its own outputs")
    _say_some([_damage_note(note) for note in summary["damaged"]], "damaged files (--json lists them)")
    if summary["skipped"]["files"]:
        say(skipped_words(summary["skipped"]["extensions"]).lstrip("; "))
    if summary.get("system_folders"):
        folders = summary["system_folders"]
        say(f"note: passed over {len(folders)} system folder{'s' if len(folders) != 1 else ''} holding videos "
            f"(a trash, a NAS's previews or snapshots), e.g. {printable(folders[0])}: name one to index it"
            + (" (--json lists them)" if len(folders) > 1 else ""))
    if discarded:
        say(f"note: nothing was indexed, so no library was left at {lib.directory}")
    if summary["failed"]:
        sys.exit(1)


def _only_model(ctx, **given) -> None:
    """``vmr index --model DIR`` with no PATH only re-points the library: another option beside it
    was silently ignored (a --prune that pruned nothing, exit 0)."""
    from click.core import ParameterSource

    from .errors import VmrError

    extra = [name for name in given if ctx.get_parameter_source(name) != ParameterSource.DEFAULT]
    if extra:
        option = "--" + extra[0].replace("_", "-")
        raise VmrError(f"{option} cannot go with --model and no PATH, which only points the library at its "
                       "model's new place; run the two apart")


def _damage_note(note: dict) -> str:
    from .timecodes import timecode

    if note.get("claimed") is not None:
        return (f"note: {note['path']}: its video stream ends at {timecode(note['ends_at'])} of the "
                f"{timecode(note['claimed'])} it claims (cut short: a copy or download that stopped?); indexed "
                "up to there")
    n = note["bad_frames"]
    return (f"note: {note['path']}: {n} frame{'s' if n != 1 else ''} could not be decoded (damaged "
            "stream); indexed with the frames around them")


def _repoint(ctx, model: str, as_json: bool) -> bool:
    """``vmr index --model DIR``: the library's model, found at another place, with the same weights.
    False where the library lost its record of the model: every video is then embedded again with
    this one, as the message that says so advises."""
    from .errors import VmrError

    lib = open_library(ctx, writes=True)
    before = lib.encoder()
    if before is None and lib.lost_encoder():
        lib.close()
        return False
    if before is None:
        raise VmrError(f"library {lib.directory} is empty; index with vmr index PATH --model {model}")
    with lib.writer_lock("vmr index --model"):
        files = lib.verify_model(model)
    info = lib.encoder()
    if as_json:
        emit_json({"encoder": info["name"], "previous": before["name"], "sha256": info["weights"]["sha256"],
                   "folder": files.folder})
        return True
    click.echo(f"encoder   {printable(info['name'])} (weights sha256 {info['weights']['sha256'][:12]}, as recorded)")
    if info["name"] != before["name"]:
        say(f"note: the library's model is now {info['name']}, was {before['name']}")
    return True


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=_Path(path_type=str))
@json_option
@library_option
@click.pass_context
@handle_errors
def forget(ctx, paths, as_json):
    """Drop the library's entries for files and folders, on purpose.

    Everything at or under each PATH goes (its vectors with it, and the
    progress an index saved on a long video there), whether or not PATH
    exists now: the way out for a drive or share that is gone for
    good. No entry outside PATH is touched (vectors a killed forget left
    behind are cleared first), and no file of yours on disk. A PATH that
    starts with '-' goes after '--': vmr forget -- -clip.mp4
    """
    from . import partial
    from .errors import VmrError
    from .paths import absolute, quoted_tilde, under

    lib = open_library(ctx, writes=True)
    named = {absolute(p): p for p in reversed(paths)}  # (the first PATH naming each place)
    given = list(dict.fromkeys(absolute(p) for p in paths))
    roots = [r for r in given if not any(o != r and under(r, o) for o in given)]  # 'dir dir/x': dir
    with lib.writer_lock("vmr forget"):
        # What a forget killed after its commit left (shards, FAISS entries of rows gone) goes
        # first: the same command run again found no rows and left it all.
        lib.drop_leftovers()
        # the progress an index saved on a video there (a long one it was stopped in) goes too
        saved = {r: partial.states_under(lib.directory, r) for r in roots}
        empty = [r for r in roots if not lib.catalog.videos_under(r) and not saved[r]]
        if empty:
            raise VmrError(f"the library holds nothing at or under {printable(empty[0])}"
                           f"{quoted_tilde(named[empty[0]])}; nothing was forgotten")
        started = time.time()
        forgotten = [{"path": r, "videos": len(lib.forget(r)), "saved_progress": len(saved[r])} for r in roots]
        partial.drop(lib.directory, [state for r in roots for state in saved[r]])
        lib.save()
        result = {"forgotten": forgotten, "videos": sum(f["videos"] for f in forgotten)}
        lib.catalog.log_operation("forget", {"paths": roots}, result, started)
    if as_json:
        emit_json(result)
        return
    for item in forgotten:
        n = item["saved_progress"]
        click.echo(f"forgot {item['videos']} entr{'y' if item['videos'] == 1 else 'ies'} under "
                   f"{printable(item['path'])}" + (f", and the progress an index saved on {n} video{'s' if n != 1 else ''} "
                                                   "there" if n else ""))


def results_table(results) -> str:
    from .timecodes import timecode

    lines = [f"{'rank':>4}  {'start':>9} – {'end':<9}  {'score':>6}  path"]
    for r in results:
        lines.append(f"{r['rank']:>4}  {timecode(r['start']):>9} – {timecode(r['end']):<9}  {r['score']:>6.3f}  "
                     f"{printable(r['video'])}" + (f"  (+{len(r['copies'])} {'copy' if len(r['copies']) == 1 else 'copies'}"
                                                  ": --json lists them)" if r.get("copies") else ""))
    return "\n".join(lines)


@cli.command()
@click.argument("query")
@click.option("--top-k", type=click.IntRange(1, 1000), default=10, show_default=True, help="Moments to return.")
@click.option("--exhaustive", is_flag=True,
              help="Decode and encode the fine grid over every clip of every candidate video (the baseline).")
@click.option("--refine", type=click.IntRange(0, 100), default=3, show_default=True,
              help="Best moments whose edges are refined with a few decoded frames (0: none, fastest).")
@click.option("--min-score", type=_Finite(), default=None, help="Drop moments scoring below this (-1 keeps all).")
@click.option("--max-videos", type=click.IntRange(1, 10000), default=10, show_default=True,
              help="Candidate videos searched in depth.")
@click.option("--per-video", type=click.IntRange(1, 1000), default=None,
              help="Moments at most from one video (none lies inside another).  [default: 3; --top-k where "
                   "a single video is searched]")
@click.option("--in", "within", multiple=True, metavar="PATH",
              help="Search only the videos at or under PATH, a folder or file (repeat for more).")
@trimmer_option
@backend_option("Video decoder for the frames a search looks at. Default: torchcodec, "
                "or PyAV where torchcodec cannot load (with a note).", default=None)
@click.option("--paths", "paths_only", is_flag=True, help="Print only the paths of matching videos.")
@click.option("-0", "--null", "null_paths", is_flag=True,
              help="With --paths: each path exactly as it is on disk, ended by a NUL byte (for xargs -0).")
@click.option("--html", "html_path", type=_Path(dir_okay=False),
              help="Also write a page with thumbnails and players for the results (a new file, or a page vmr wrote).")
@click.option("--open", "open_page", is_flag=True, help="Open the --html page in the browser.")
@json_option
@library_option
@click.pass_context
@handle_errors
def search(ctx, query, top_k, exhaustive, refine, min_score, max_videos, per_video, within, trimmer, backend,
           paths_only, null_paths, html_path, open_page, as_json):
    """Find the moments that match QUERY, best first.

    A QUERY that starts with '-' goes after '--', else it is read as an
    option: vmr search -- "-1 point for the home team"
    """
    from . import STARTED
    from .errors import VmrError
    from .paths import absolute, library_names, quoted_tilde, user_file_target
    from .search import Searcher, SearchOptions, clean_query

    clean_query(query)  # an empty query fails before any model loads
    if open_page and not html_path:  # as vmr show says
        raise VmrError(OPEN_NEEDS_HTML)
    if null_paths and not paths_only:
        raise VmrError("-0/--null ends the paths of --paths with NUL bytes: give --paths too")
    if paths_only and as_json:
        raise VmrError("--paths prints only paths, --json the whole result: give one or the other")
    if trimmer and exhaustive:
        raise VmrError(EXHAUSTIVE_TRIMMER)
    lib = open_library(ctx)
    options = SearchOptions(top_k=top_k, exhaustive=exhaustive, refine=refine, min_score=min_score,
                            max_videos=max_videos, per_video=per_video,
                            within=tuple(absolute(p) for p in within))  # logged: "." named nothing later
    roots = lib.catalog.roots() if within else []
    for path in within:  # a typo finds nothing: said, as vmr forget says it
        held = {row["id"]: row for name in library_names(path, roots, lib.catalog.holds_under)
                for row in lib.catalog.videos_under(name)}
        if not held:
            raise VmrError(f"--in {printable(path)}: the library holds no video at or under it"
                           + (quoted_tilde(path) or " (vmr status lists what it holds; index it first: "
                              "vmr index PATH)"))
        if not any(row["status"] == "ok" for row in held.values()):  # each failed: a search found nothing, exit 0
            raise VmrError(f"--in {printable(path)}: none of the {len(held)} video{'s' if len(held) != 1 else ''} "
                           "the library holds at or under it is indexed (they failed, or wait to be indexed "
                           "again: vmr status lists them; vmr index PATH)")
    if html_path and lib.readonly:
        raise VmrError(f"--html needs a logged search, and library {lib.directory} is read-only")
    if html_path:
        from .page import is_page

        user_file_target(html_path, "--html", ours=is_page)  # refused before the search, not after it
    startup = time.perf_counter() - STARTED
    searcher = Searcher(lib, trimmer=trimmer, backend=backend)
    if searcher.trimmer is not None and searcher.trimmer.unfinished:
        say(f"warning: {searcher.trimmer.unfinished}")
    found = searcher.search(query, options, progress=None)
    found["stats"]["time"] = {"startup": round(startup, 3), "model_load": round(searcher.load_seconds, 3),
                              **found["stats"]["time"]}
    if found["stats"].get("not_logged"):
        say(f"warning: {found['stats']['not_logged']}")
    if html_path and found["search_id"] is None:
        say("warning: no page written: the page shows a logged search")
    elif html_path:
        _write_page(lib, where_now(lib, lib.catalog.search(found["search_id"])), html_path, open_page)
    _say_search_notes(found["stats"])
    if as_json:
        emit_json(found)
    elif paths_only and null_paths:  # exact bytes: a name may hold a newline or a backslash
        out = click.get_binary_stream("stdout")
        for path in dict.fromkeys(r["video"] for r in found["results"]):
            out.write(os.fsencode(path) + b"\0")
        out.flush()
    elif paths_only:
        for path in dict.fromkeys(r["video"] for r in found["results"]):
            click.echo(printable(path))
    else:
        if found["results"]:
            click.echo(results_table(found["results"]))
        else:  # stdout holds results only: a script reading lines gets none
            say("no moments matched")
        label = (f"search {found['search_id']}" if found["search_id"] is not None
                 else "search (not logged)" if found["stats"].get("not_logged")
                 else "search (not logged: read-only library; vmr export cannot refer to it)")
        stats = found["stats"]
        cached = f", {stats['frames_cached']} from the cache" if stats["frames_cached"] else ""
        say(f"{label}: {stats['videos_considered']} video{'s' if stats['videos_considered'] != 1 else ''}, {stats['frames_encoded']} frames "
            f"encoded{cached}, {time.perf_counter() - STARTED:.2f} s in all")


@cli.command()
@click.option("--clip", "clip_flag", is_flag=True, help="Cut clips (the default action; RANKS follow it).")
@click.argument("ranks", nargs=-1, type=click.IntRange(min=1))
@click.option("--search", "search_id", type=click.IntRange(min=1),
              help="A logged search id ('vmr searches' lists them). Default: the last search.")
@click.option("--out", "out_dir", type=_Path(file_okay=False),
              help="Folder for the cut files, created when its parent exists. Default: vmr's own, "
              "'vmr' in your videos folder ($XDG_VIDEOS_DIR or ~/Videos).")
@click.option("--copy", is_flag=True, help="Stream copy: fast, but starts at the key frame before the moment.")
@click.option("--force", is_flag=True,
              help="Replace existing files of the same name (else a cut gets the next free name: _2, _3...).")
@json_option
@library_option
@click.pass_context
@handle_errors
def export(ctx, clip_flag, ranks, search_id, out_dir, copy, force, as_json):
    """Cut results of the last search (or --search ID) into files with ffmpeg.

    Cuts go to ~/Videos/vmr by default (a folder 'vmr index' never indexes);
    the folder and every file are named in the output.

    \b
      vmr export --clip 1 3           # results 1 and 3 of the last search
      vmr export --clip               # every result of the last search
      vmr export --search 7 --clip 2  # result 2 of logged search 7
    """
    from .export import NothingCut, export_results
    from .timecodes import timecode

    def announce(logged, chosen, folder, before):
        total, label = len(logged["results"]), _search_label(logged)
        if before == len(chosen):
            which = f"the {before} results asked for were" if before > 1 else "the result asked for was"
            say(f"nothing to cut from {label}: {which} cut into {folder} before (--force cuts again)")
        else:
            say(f"cutting {len(chosen) - before} of {total} result{'s' if total != 1 else ''} of {label} "
                f"into {folder}" + (f" ({before} more cut there before)" if before else ""))

    def warn(item):  # a cut made before was warned of when it was made
        if item.get("warning") and not item.get("existing"):
            say(f"warning: {item['warning']}")

    def line(item):  # as each is cut: what a Ctrl-C or a later failure leaves is on screen
        click.echo(f"{item['rank']:>4}  {timecode(item['start'])} – {timecode(item['end'])}  "
                   f"{printable(item['path'])}{'  (cut before)' if item.get('existing') else ''}")
        warn(item)

    lib = open_library(ctx)
    try:
        done = export_results(lib.catalog, list(ranks), search_id=search_id, out_dir=out_dir, copy=copy,
                              force=force, announce=announce, on_cut=None if as_json else line,
                              waiting=lambda: say("waiting for another vmr export into that folder to finish"))
    except NothingCut as exc:
        if not as_json:
            raise
        done = exc.done  # a script gets the reasons as JSON too (and exit 1, below)
    if as_json:
        for item in done["exported"]:
            warn(item)
    for item in done["skipped"]:
        say(f"skipped: {item['error']}")
    if as_json:
        emit_json(done)
    if copy:
        say("stream copy: each file starts at the key frame at or before its start")
    if done["skipped"]:
        sys.exit(1)  # as vmr index does when a file failed: what could be cut was


def _when(created_at) -> str:
    """A search's time for a table: local, to the minute."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(created_at)) if created_at else "-"


def _iso(created_at) -> str | None:
    """A search's time for --json: ISO 8601, local time with its offset."""
    if not created_at:
        return None
    from datetime import datetime

    return datetime.fromtimestamp(created_at).astimezone().isoformat(timespec="seconds")


def _search_label(logged: dict) -> str:
    """'search 5 ("a red door", 2025-06-01 14:03)': which search, in every message about one."""
    return f"search {logged['id']} ({json.dumps(logged['query'], ensure_ascii=False)}, {_when(logged['created_at'])})"


@cli.command()
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True,
              help="Newest searches to list (0: all).")
@click.option("--keep", type=click.IntRange(min=0), default=None,
              help="First forget every search but the newest N, their queries and results (0: every one), "
                   "and give their space back. Cuts already made stay recognised.")
@json_option
@library_option
@click.pass_context
@handle_errors
def searches(ctx, limit, keep, as_json):
    """List logged searches, newest first: id, time, results, query.

    The id is what 'vmr show ID' and 'vmr export --search ID' take.
    Every search is logged (about 2 KB each); --keep N forgets older ones.
    """
    from .catalog import folder_size

    lib = open_library(ctx, writes=keep is not None)
    forgotten = None
    if keep is not None:
        with lib.writer_lock("vmr searches --keep"):
            started, before = time.time(), folder_size(lib.directory)
            forgotten = lib.catalog.forget_searches(keep)
            compacted = lib.catalog.compact() if forgotten else True
            freed = max(0, before - folder_size(lib.directory))
            lib.catalog.log_operation("searches", {"keep": keep}, {"forgotten": forgotten, "freed": freed},
                                      started)
        if not forgotten:
            say(f"nothing to forget: no more than {keep} search{'es' if keep != 1 else ''} logged")
        else:
            say(f"forgot {forgotten} search{'es' if forgotten != 1 else ''}, kept the newest {keep}"
                + (f"; {freed / 1e6:.1f} MB freed" if compacted else
                   "; their space is reused by later searches (the catalog could not be compacted now)"))
    rows = lib.catalog.searches(limit or None)
    total = lib.catalog.counts()["searches"]
    if as_json:  # "results" is a list in search and show: the count is n_results ("results" as well,
        # as vmr 0.2.0 documented it)
        data = {"total": total, "searches": [
            {"search_id": r["id"], "created_at": _iso(r["created_at"]), "query": r["query"],
             "n_results": r["n_results"], "results": r["n_results"], "within": r["within"]} for r in rows]}
        emit_json(data if forgotten is None else dict(data, forgotten=forgotten))
        return
    if not rows:
        say("no searches logged yet; run 'vmr search QUERY'")
        return
    click.echo(f"{'id':>5}  {'time':<16}  {'results':>7}  query")
    for r in rows:
        query = r["query"] if len(r["query"]) <= 70 else r["query"][:69] + "…"
        scope = f"  (in {', '.join(printable(p) for p in r['within'])})" if r["within"] else ""
        click.echo(printable(f"{r['id']:>5}  {_when(r['created_at']):<16}  {r['n_results']:>7}  {query}", name=False)
                   + scope)
    if len(rows) < total:
        say(f"{len(rows)} of {total} searches; --limit 0 lists all")


@cli.command()
@click.option("--check", is_flag=True,
              help="Run SQLite's integrity check (salvaging a damaged catalog), verify every vector shard "
                   "against the catalog and the model's weights against their recorded sha256, and repair.")
@click.option("--failed", "list_failed", is_flag=True,
              help="Also list the files that could not be indexed, and why.")
@json_option
@library_option
@click.pass_context
@handle_errors
def status(ctx, check, list_failed, as_json):
    """What the library holds: videos, clips, vectors, encoder, size."""
    from .catalog import catalog_in
    from .library import Library, check_library, library_directory, lost_catalog

    directory = library_directory(ctx.obj["library"])
    if not check and not os.path.exists(catalog_in(directory)) and not lost_catalog(directory):
        data = Library.empty_status(directory)
        if list_failed:
            data["failed_files"] = []
        if as_json:
            emit_json(data)
        else:
            # not 'empty': a mistyped --library (or one of the user's own folders) must not read as
            # a library that lost its videos
            where = "no vmr library in this folder" if os.path.isdir(directory) else "no such folder"
            click.echo(f"library   {printable(directory)}: none yet ({where}); 'vmr index PATH' makes it")
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
    if list_failed:  # times as 'vmr searches --json' gives them (ISO 8601), not seconds since 1970
        data["failed_files"] = [dict(f, failed_at=_iso(f["failed_at"])) for f in lib.failed_files()]
    model_failed = report is not None and report["model"] is not None and not report["model"]["ok"]
    if as_json:
        emit_json(data)
    else:
        _print_status(data, report)
    if model_failed:
        _fail(report["model"]["error"])


def _print_status(data: dict, report: dict | None) -> None:
    hours = data["duration"] / 3600
    click.echo(f"library   {printable(data['library'])}")
    click.echo(f"encoder   {printable(data['encoder'] or '-')}")
    click.echo(f"videos    {data['videos']} ({hours:.2f} h), failed {data['failed']}, stale {data['stale']}")
    if data["consistent"] and data.get("vector_cache_lag"):
        agreement = (f"consistent: the FAISS cache lags the stored vectors by {data['vector_cache_lag']} "
                     "clips; searches rebuild it from them, the next vmr index saves it")
    elif data["consistent"]:
        agreement = "consistent"
    elif data.get("encoder_lost"):
        agreement = "NOT consistent: the record of the model was lost; vmr index --model NAME embeds them again"
    elif data.get("videos_without_vectors"):
        n = data["videos_without_vectors"]
        agreement = (f"NOT consistent: {n} video{'s have' if n != 1 else ' has'} no vector shard; "
                     f"the next vmr index re-embeds {'them' if n != 1 else 'it'}")
    elif data["vectors"] == data["clips"]:
        n = data["stale"]
        agreement = f"{n} stale video{'s' if n != 1 else ''}: the next vmr index re-embeds {'them' if n != 1 else 'it'}"
    else:
        agreement = "NOT consistent: run vmr status --check"
    click.echo(f"clips     {data['clips']}, vectors {data['vectors']} ({agreement})")
    if data.get("unchecked_since_upgrade"):
        n = data["unchecked_since_upgrade"]
        click.echo(f"upgrade   {n} video{'s' if n != 1 else ''} an older vmr indexed: the next vmr index looks at "
                   f"{'each' if n != 1 else 'it'} once, and embeds again what that vmr embedded worse")
    if data.get("index_running"):
        click.echo("index     a vmr index is running: these numbers are what it has committed so far")
    cache, resumable = data["frame_cache_bytes"] / 1e6, data.get("partial_bytes", 0) / 1e6
    click.echo(f"size      {data['size_bytes'] / 1e6:.1f} MB" + (  # no cache line for an empty one
        f", of which frame cache {cache:.1f} MB (at most {data['frame_cache_limit_bytes'] / 1e6:g} MB, "
        "$VMR_FRAME_CACHE_MB; safe to delete: frames.db)" if round(cache, 1) else "") + (
        f", {'and' if round(cache, 1) else 'of which'} the progress saved on videos an index was stopped in "
        f"{f'{resumable:.1f} MB' if resumable >= 0.05 else 'under 0.1 MB'} (the next vmr index of them "
        "resumes there)" if data.get("partial_bytes") else ""))
    for failed in data.get("failed_files", []):
        click.echo(f"failed    {printable(failed['path'])}: {failed['error']}")
    if data.get("failed_files"):
        say("each is tried again when it changes, or when vmr, its decoder or ffmpeg does")
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
    for path in report.get("stale_paths", []):
        click.echo(f"stale     {printable(path)}")
    model = report["model"]
    if model is None:
        click.echo("model     -")
    elif model["ok"]:
        click.echo(f"model     weights sha256 {model['sha256']}, as recorded")
    else:
        click.echo("model     NOT the library's weights, or not found (below)")


def where_now(lib, search: dict) -> dict:
    """The logged search with each result's video where it is now: a file vmr index recorded
    moving is shown there, as export cuts it and play plays it (a gone one as logged, and one
    whose copy export and play use instead, result_source's, as the search showed it), with the
    copies of its content there now (as search lists them).  A result
    gets the ``warning`` export would give it (changed since, gone, shorter now): show prints
    them, ``show --json`` and the page give them with their result."""
    from .copies import copies_of
    from .errors import VmrError
    from .export import result_source

    results = []
    for result in search["results"]:
        copy = None
        try:
            path, warning = result_source(lib.catalog, result, f"result {result['rank']}")
            if path in (c[0] for c in result.get("logged_copies", ())):  # shown as the search showed it
                copy = path
            else:
                result = dict(result, video=path)
        except VmrError as exc:
            warning = str(exc)
        row = lib.catalog.video(result["video_id"]) if result.get("video_id") is not None else None
        if copy is not None:  # the copy used instead, and its own (the shown file's row may be gone)
            row = lib.catalog.video_by_path(copy)
        copies = ([copy] if copy else []) + (copies_of(lib, row) if row and row["status"] == "ok" else [])
        result["copies"] = [p for p in dict.fromkeys(copies) if p != result["video"]]
        results.append(dict(result, warning=warning) if warning else result)
    return dict(search, results=results)


def _write_page(lib, search: dict, html_path: str, open_page: bool) -> None:
    """The page of a logged search, its results where they are now (where_now's)."""
    from .page import open_in_browser, write_page

    # Previews of moments browsers cannot play are cached in the library; a read-only one has none.
    written = write_page(search, html_path, previews_dir=None if lib.readonly else lib.directory,
                         library=_named_library(lib))
    say(f"page: {written}")
    if open_page and not open_in_browser(written):
        say("note: no browser could be opened here; open the page above yourself")


def _named_library(lib) -> str | None:
    """The library a page's commands must name (None: the default one, $VMR_LIBRARY included):
    pasted without it, they would act on another library."""
    from .library import default_directory

    return None if lib.directory == default_directory() else lib.directory


SHOWN_PER_KIND = 20  # lines of one kind an index prints; --json has them all


def _say_some(lines: list[str], more: str, shown: int = SHOWN_PER_KIND, prefix: str = "") -> None:
    """At most ``shown`` of these lines, then how many more: a folder of 3,000 broken downloads
    printed 3,000 'failed:' lines (and again after every upgrade of vmr or ffmpeg, which retries
    them).  ``prefix`` begins every line, the count's too."""
    for line in lines[:shown]:
        say(prefix + line)
    if len(lines) > shown:
        say(f"{prefix}... and {len(lines) - shown} more {more}")


def _say_search_notes(stats: dict) -> None:
    """The warnings and notes of a search's stats, on stderr (search, and show of a logged one)."""
    for skipped in stats.get("skipped", []):
        say(f"warning: skipped {skipped['video']}: {skipped['error']}")
    for unrefined in stats.get("unrefined", []):
        say(f"warning: {unrefined['video']}: its moments' edges are as stored (1 frame a second), not "
            f"refined: {unrefined['error']}")
    for changed in stats.get("changed", []) + stats.get("read_again", []):
        say(f"warning: {changed['video']}: {changed['reason']}")
    if stats.get("query_note"):
        say(f"note: {stats['query_note']}")
    if stats.get("decoder_note"):
        say(f"note: {stats['decoder_note']}")
    for note in stats.get("fallbacks", []):
        say(f"note: {note['video']}: {note['reason']}")


def _warn_about(warnings: list[str]) -> None:
    _say_some(warnings, "such windows", shown=5, prefix="warning: ")


def logged_as_json(logged: dict) -> dict:
    """A logged search in the shape 'vmr search --json' prints (a result's ``warning``, from
    where_now, only where there is one)."""
    keys = ("rank", "video", "start", "end", "score", "copies", "warning")
    return {"query": logged["query"], "search_id": logged["id"],
            "results": [{k: r[k] for k in keys if k in r} for r in logged["results"]], "stats": logged["stats"]}


@cli.command()
@click.argument("search_id", type=click.IntRange(min=1), required=False)
@click.option("--html", "html_path", type=_Path(dir_okay=False),
              help="Also write a page with thumbnails and players here (a new file, or a page vmr wrote).")
@click.option("--open", "open_page", is_flag=True, help="Open the --html page in the browser.")
@json_option
@library_option
@click.pass_context
@handle_errors
def show(ctx, search_id, html_path, open_page, as_json):
    """Show a logged search again: a table, --json or an --html page.

    SEARCH_ID defaults to the last search ('vmr searches' lists them);
    --json prints the shape 'vmr search --json' prints (its stats.time
    without the process's startup and model_load), and a "warning" for a
    result whose file changed since. A file 'vmr index' saw move since is
    shown where it is now.
    """
    from .errors import VmrError

    lib = open_library(ctx)
    logged = lib.catalog.search(search_id)
    if logged is None:
        raise VmrError("no search logged yet; run 'vmr search QUERY' first" if search_id is None
                       else f"no search with id {search_id} ('vmr searches' lists them)")
    if open_page and not html_path:
        raise VmrError(OPEN_NEEDS_HTML)
    logged = where_now(lib, logged)
    if html_path:
        _write_page(lib, logged, html_path, open_page)
    # What the search said then, and what changed since (a file re-indexed shorter: export refuses
    # the moment), on stderr with --json too: show printed the table alone.
    _say_search_notes(logged["stats"])
    for result in logged["results"]:  # each warning names its result ("result N: ...")
        if result.get("warning"):
            say(f"warning: {result['warning']}")
    if as_json:
        emit_json(logged_as_json(logged))
        return
    if logged["results"]:
        click.echo(results_table(logged["results"]))
    else:
        say("no moments matched")
    say(_search_label(logged))


@cli.command()
@click.argument("rank", type=click.IntRange(min=1))
@click.option("--search", "search_id", type=click.IntRange(min=1),
              help="A logged search id (default: the last search).")
@click.option("--player", type=click.Choice(PLAYERS),
              help="auto: mpv, else VLC, else the system opener (xdg-open / open). Default: $VMR_PLAYER, "
              "else auto.")
@library_option
@click.pass_context
@handle_errors
def play(ctx, rank, search_id, player):
    """Play result RANK of the last search (or --search ID) in your video player.

    mpv and VLC start at the moment and stop at its end; the system opener
    (xdg-open, open) opens the file, and the start to seek to is printed.

    \b
      vmr play 1                # result 1 of the last search
      vmr play --search 7 3     # result 3 of logged search 7
    """
    from .errors import VmrError
    from .export import result_source
    from .player import pick_result, prepare, run
    from .timecodes import timecode

    if player is None:  # read here, not by click: a wrong value is the variable's, not an option's
        player = os.environ.get("VMR_PLAYER") or "auto"
        if player not in PLAYERS:
            raise VmrError(f"$VMR_PLAYER is {player!r}: not one of {', '.join(PLAYERS)}")
    lib = open_library(ctx)
    logged, result = pick_result(lib.catalog, rank, search_id, readonly=lib.readonly)
    start, end = float(result["start"]), float(result["end"])
    source, warning = result_source(lib.catalog, result, f"result {rank}")
    kind, argv = prepare(source, start, end, player)
    say(f"search {logged['id']} \"{logged['query']}\", rank {rank}: {source} "
        f"{timecode(start)} – {timecode(end)}")
    if warning:
        say(f"warning: {warning}")
    if kind == "system":
        say(f"{os.path.basename(argv[0])} cannot start at a time: seek to {timecode(start)} "
            f"(the moment ends at {timecode(end)}); mpv or VLC would start there")
    run(kind, argv)


@cli.command(name="eval")
@click.argument("annotations", type=_Path(dir_okay=False))
@click.option("--videos", "videos_dir", required=True, type=_Path(file_okay=False),
              help="Folder holding the annotated videos (a video id is a file name, with or without its "
                   "extension, or a path relative to it).")
@click.option("--model", type=_Model(), help="Encoder for a new library (as for vmr index).")
@click.option("--exhaustive", is_flag=True, help="Verify every clip (the baseline trimming is measured against).")
@click.option("--predictions", "predictions_path", type=_Path(dir_okay=False),
              help="Write QVHighlights-style predictions (JSONL) for the moment retrieval setting "
              "(a new file, or predictions vmr wrote).")
@trimmer_option
@backend_option("Video decoder, for indexing and search.")
@json_option
@library_option
@click.pass_context
@handle_errors
def eval_command(ctx, annotations, videos_dir, model, exhaustive, predictions_path, trimmer, backend, as_json):
    """Score search on an annotation file (Charades-STA or QVHighlights).

    Reports R1@0.3/0.5/0.7, mIoU, R5@0.5 and mAP for moment retrieval (query
    against its own video) and corpus moment retrieval (against the whole
    library), the cost per query, and a uniform-random baseline.
    """
    from .errors import VmrError
    from .evaluate import are_predictions, evaluate
    from .paths import user_file_target

    if trimmer and exhaustive:
        raise VmrError(EXHAUSTIVE_TRIMMER)

    if predictions_path:
        # before a library is created or filled
        user_file_target(predictions_path, "--predictions", ours=are_predictions)
    lib = open_library(ctx, create=not _library_exists(ctx))  # an existing one as it is: read-only too
    try:
        report = evaluate(lib, annotations, videos_dir, exhaustive=exhaustive,
                          predictions_path=predictions_path, model=model, trimmer=trimmer, backend=backend,
                          warn=_warn_about)
    except BaseException:
        lib.discard_if_empty()  # a failed first run leaves no empty library behind
        raise
    if as_json:
        emit_json(report)
        return
    keys = ["R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "R5@0.5", "mAP"]
    mode = "exhaustive" if exhaustive else ("trained trimmer" if trimmer else "trimmed")
    click.echo(f"{report['n_queries']} quer{'y' if report['n_queries'] == 1 else 'ies'}, {mode} search")
    click.echo(f"{'setting':<22}" + "".join(f"{k:>8}" for k in keys))
    for name, values in [("moment retrieval", report["single"]), ("corpus", report["corpus"]),
                         ("random (moment)", report["random"]["single"]),
                         ("random (corpus)", report["random"]["corpus"])]:
        click.echo(f"{name:<22}" + "".join(f"{100 * values[k]:>8.1f}" for k in keys))
    c = report["cost"]
    click.echo(f"per query: {c['clips_verified']:.1f} clips verified, {c['frames_decoded']:.0f} frames "
               f"decoded, {c['frames_encoded']:.0f} encoded, {c['seconds']:.2f} s")


@cli.command()
@click.argument("annotations", type=_Path(dir_okay=False))
@click.option("--videos", "videos_dir", required=True, type=_Path(file_okay=False),
              help="Folder holding the annotated videos (a video id is a file name, with or without its "
                   "extension, or a path relative to it); indexed if needed.")
@click.option("--out", "out_dir", required=True, type=_Path(file_okay=False),
              help="Folder for the trained trimmer (created; an unfinished run there resumes).")
@click.option("--val", "val_path", type=_Path(dir_okay=False),
              help="Annotations to report validation R1@0.5 on after every epoch (videos in --videos): "
              "the moment search ranks first in each query's video, as eval --trimmer scores it "
              "before edges are refined with decoded frames.")
@click.option("--epochs", type=click.IntRange(1, 10000), default=20, show_default=True,
              help="Epochs of the teacher, then as many of the student.")
@click.option("--seed", type=click.IntRange(-10**15, 10**15), default=0, show_default=True,  # train.SEED_LIMIT
              help="Same seed, same data: the same model.")
@click.option("--tokens/--no-tokens", default=False, show_default=True,
              help="Give the trimmer the query's token features besides its pooled embedding (a CLIP "
                   "encoder; others have none). Off by default: on the synthetic benchmark they did not help.")
@click.option("--model", type=_Model(), help="Encoder for a new library (as for vmr index).")
@backend_option("Video decoder, for indexing the videos (as for vmr index).")
@json_option
@library_option
@click.pass_context
@handle_errors
def train(ctx, annotations, videos_dir, out_dir, val_path, epochs, seed, tokens, model, backend, as_json):
    """Train the paper's clip trimmer on an annotation file (Charades-STA or QVHighlights).

    Its inputs are the features the library already holds, so no epoch decodes
    anything. After every epoch the state is saved in --out: Ctrl-C keeps the
    last finished one, and the same command again resumes from it. Use it with
    vmr search --trimmer DIR and vmr eval --trimmer DIR.
    """
    from .train import TrainOptions, train as train_trimmer

    lib = open_library(ctx, create=not _library_exists(ctx))  # an existing one as it is: read-only too

    def log(record):
        if not as_json:  # R1 in percent, as the summary line and vmr eval print it
            say(" ".join(f"{k} {100 * v:.1f}" if k == "val_R1@0.5" else f"{k} {v}" for k, v in record.items()))

    try:
        summary = train_trimmer(lib, annotations, videos_dir, out_dir, val=val_path,
                                options=TrainOptions(epochs=epochs, seed=seed, tokens=tokens), model=model, log=log,
                                backend=backend, warn=_warn_about)  # before the first epoch, not after the last
    except BaseException:
        lib.discard_if_empty()  # a failed first run leaves no empty library behind, as eval and index
        raise
    if as_json:
        emit_json(summary)
        return
    last = summary["history"][-1] if summary["history"] else {}
    val = f", validation R1@0.5 {100 * summary['val_R1@0.5']:.1f}" if summary["val_R1@0.5"] is not None else ""
    epochs = f"{summary['epochs']} epoch{'s' if summary['epochs'] != 1 else ''}"
    done = (f"{summary['n_queries']} quer{'y' if summary['n_queries'] == 1 else 'ies'}, {epochs} (teacher, then "
            f"student){', with query tokens' if summary['tokens'] else ''}, vmr loss {last.get('vmr', float('nan')):.3f}"
            f"{val}")
    if summary.get("already_trained"):  # the same command again: say so rather than a training of 0 s
        click.echo(f"trimmer in {summary['out']} was already trained: {done}; nothing trained now")
    else:
        click.echo(f"trimmer in {summary['out']}: {done}, {summary['seconds']:.0f} s")


_AS_PROCESS = False  # set by main(): not when tests call the CLI in their own process


def main():
    global _AS_PROCESS
    _AS_PROCESS = True
    # Outside the command's work (options, the group's callback) nothing is open: it ends at once,
    # where click said 'Aborted!'; handle_errors makes them raise for the command.
    on_signal(signal.SIGINT, exit_at_once)
    on_signal(signal.SIGTERM, exit_at_once)
    try:
        cli(prog_name="vmr")
    except SystemExit as exc:
        exit_process(exc.code)
    exit_process(0)


def exit_process(code) -> None:
    """End the process with ``code`` (a SystemExit code), without the interpreter's teardown:
    freeing torch's modules costs about 0.4 s at every exit (of a search that takes 2-3 s), and
    nothing needs it by then: the command has closed the library (its SQLite files checkpointed
    and closed), atexit handlers run here, and output is flushed.  Without torch too: after a
    Ctrl-C that landed in code run from a string (namedtuple's, dataclasses', while torch loads),
    CPython's ordinary exit of 'python -m' killed the process by SIGINT (status -2), though the
    command had said its line and chosen 130.  With a thread still running, the ordinary exit."""
    import threading

    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if others:
        sys.exit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        code = 1
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with it closed ('>&-'): nothing was written to it
            continue
        try:
            stream.flush()
        except BrokenPipeError:  # the reader left: as handle_errors reports it
            code = code or 141
        except (OSError, ValueError):  # a closed or failing stream: what Python's own exit reports
            code = code or 120
    os._exit(code)


if __name__ == "__main__":
    main()
