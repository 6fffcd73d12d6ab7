"""Errors the user can fix: the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

import errno
import os
import signal

# Signals vmr's parent had it ignore: a script's background job (`vmr index ~/videos &`) is not
# stopped by a Ctrl-C meant for the terminal's foreground, nor a command under `nohup`-like
# wrappers; vmr keeps them ignored (recorded at import, before vmr sets any handler).
INHERITED_IGNORED = frozenset(s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is signal.SIG_IGN)


def on_signal(signum: int, handler) -> None:
    """signal.signal, except for a signal vmr's parent had it ignore (INHERITED_IGNORED)."""
    if signum not in INHERITED_IGNORED:
        signal.signal(signum, handler)


class VmrError(Exception):
    """A problem with input, library or environment, explained in one sentence."""


class Interrupted(VmrError):
    """Ctrl-C, with what was kept said in one sentence: exit status 130, as for any interrupt
    (143 for SIGTERM: ``terminated``)."""

    def __init__(self, message: str, terminated: bool = False):
        super().__init__(message)
        self.status = 143 if terminated else 130


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, timeout, a logout), raised where Ctrl-C's KeyboardInterrupt is: the command
    stops the way it does for Ctrl-C, cleanly.  Killed outright instead, an export left its cuts
    unlogged (the next index took them for the user's videos) and its temporary file behind."""


IMPORT_MACHINERY = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")
_deferred: list = []  # the interrupt that came while a module was being imported
received: list = []  # every interrupt raise_interrupt was given (see interrupt_received)


def _importing(frame) -> bool:
    """Whether frame (the main thread's, where a signal handler runs) is inside an import."""
    while frame is not None:
        if frame.f_code.co_filename in IMPORT_MACHINERY:
            return True
        frame = frame.f_back
    return False


def raise_interrupt(signum, frame):
    """Ctrl-C (KeyboardInterrupt) or SIGTERM (Terminated) raised where the command is, except in the
    middle of an import: raised there, torch, numpy or torchcodec was left half-loaded (a C++
    'terminate called ... KeyboardInterrupt' core dump, "numpy has no attribute 'void'", or
    the interrupt swallowed and the whole index run), so it is raised as soon as the import is done."""
    received.append(signum)
    if _importing(frame) and hasattr(signal, "setitimer"):
        _deferred.append(signum)
        if signum == signal.SIGTERM:  # a second one ends the process at once, as when raised now
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGALRM, _raise_deferred)
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        return
    _raise(signum)


def interrupt_received() -> int | None:
    """The signal raise_interrupt was given, if any: an exception other than KeyboardInterrupt can
    be its doing, where native code called back into Python took it (safetensors' load_file
    turned one into "ValueError: could not determine the shape of ... UntypedStorage")."""
    return received[0] if received else None


def stop_if_interrupted() -> None:
    """Raise the interrupt received, if any, where a loop over files or videos goes on to the next:
    native code may have made it another error there, one the loop takes for that file's."""
    if received:
        _raise(received[0])


def deferred() -> int | None:
    """The interrupt deferred until an import ended and not raised yet, if any."""
    return _deferred[0] if _deferred else None


def cancel_deferred() -> None:
    """The command's outcome is decided (done, failed, or stopped by the interrupt another way: the
    indexer's check, an error native code made of it): a deferred interrupt's timer, still set,
    raised KeyboardInterrupt later, where nothing catches it (click's 'Aborted!', exit 1 after the
    command's output; a traceback from an atexit callback)."""
    if _deferred and hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0)
    _deferred.clear()


def _raise_deferred(_signum, frame):
    if not _deferred:
        return
    if _importing(frame):
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        return
    signum = _deferred[0]
    _deferred.clear()
    _raise(signum)


def _raise(signum):
    if signum == signal.SIGTERM:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one ends the process at once
        raise Terminated()
    raise KeyboardInterrupt


def exit_at_once(signum, frame):
    """Ctrl-C or SIGTERM outside a command's work (vmr loading, its options being read): nothing is
    open or half-written there, so the process ends now, with the line a command's interrupt gives,
    where Python printed a traceback, click 'Aborted!', and SIGTERM killed it without a word."""
    os.write(2, b"Error: interrupted\n")
    os._exit(128 + signum)  # 130, 143: as a shell reports a process ended by the signal


class DecodeError(VmrError):
    """A video file could not be read; the index run records it and goes on."""


class TransientError(VmrError):
    """Reading a file failed for a reason outside the file (a timeout, an I/O error, permission):
    the run reports it, records nothing against the file, and the next run tries again."""


class SkipVideo(VmrError):
    """One video cannot take part in a search (its file or vectors are gone); the search goes on."""


class VectorsUnreadable(SkipVideo):
    """A shard is there but cannot be read (permission denied, an I/O error): not damage, so
    nothing is deleted or re-embedded over it.  A search skips its video; index, status and
    train stop with this one line."""


class NotLogged(VmrError):
    """A search ran but could not be written to the catalog (disk full, catalog busy): its results
    are still shown."""


def first_line(exc: BaseException) -> str:
    """An exception as one line for a message: its first line, or its type when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


NO_SPACE_CODES = (errno.ENOSPC, errno.EDQUOT)
NO_SPACE_TEXT = ("no space left on device", "database or disk is full", "os error 28", "disk quota exceeded")


def is_no_space(exc: BaseException) -> bool:
    """Disk full (or over quota), however the library's writers say it: an OSError, SQLite's
    'database or disk is full', safetensors' 'os error 28', faiss' '(No space left on device)'."""
    if isinstance(exc, OSError) and exc.errno in NO_SPACE_CODES:
        return True
    text = str(exc).lower()
    return any(words in text for words in NO_SPACE_TEXT)


def no_space_at(exc: BaseException, folder: str) -> bool:
    """is_no_space, or SQLite's bare 'disk I/O error' where the folder's file system is full (it says
    no more when it cannot create the WAL index of a catalog on a full disk)."""
    if is_no_space(exc):
        return True
    if "disk i/o error" not in str(exc).lower():
        return False
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def storage_error(exc: BaseException, library: str) -> VmrError | None:
    """A low-level failure of the library's own files as one line that names the way out, or None
    when ``exc`` is not one (then it is a bug, and the traceback is worth seeing)."""
    import sqlite3

    if no_space_at(exc, library):
        filename = getattr(exc, "filename", None) if isinstance(exc, OSError) else library
        if filename is None:
            return VmrError("no space left on device; free some space and run the command again "
                            "(what was committed is kept)")
        if _inside(filename, library):
            return VmrError(no_space_message(library))
        return None  # an output file elsewhere: the usual 'No space left on device: FILE'
    if isinstance(exc, sqlite3.Error):
        from .catalog import catalog_in

        return catalog_error(exc, catalog_in(library))
    return None


def no_space_message(library: str) -> str:
    from .paths import printable

    return (f"no space left on the device of library {printable(library)}; free some space and run the "
            "command again (what was committed is kept)")


def catalog_error(exc: BaseException, path: str) -> VmrError:
    """A SQLite error of the catalog at path as one line that names the way out."""
    from .paths import printable

    text, catalog = first_line(exc), printable(path)
    library = os.path.dirname(os.path.abspath(path))
    low = text.lower()
    if no_space_at(exc, library):
        return VmrError(no_space_message(library))
    if "not a database" in low:
        return VmrError(f"the catalog {catalog} is damaged beyond salvage ({text}); restore it from a backup, "
                        f"or start a new library (another --library DIR, or delete {printable(library)})")
    if "malformed" in low:
        return VmrError(f"the catalog {catalog} is damaged ({text}); run 'vmr status --check' to check it and "
                        "salvage what can be read")
    if "locked" in low or "busy" in low:
        return VmrError(f"the catalog {catalog} is busy ({text}): another vmr process holds it; try again")
    if "readonly" in low or "read-only" in low:
        return VmrError(f"the catalog {catalog} cannot be written ({text}); check the permissions of "
                        f"{printable(library)}")
    why = open_problem(path, (os.O_RDONLY, os.O_RDWR)) if "unable to open" in low else None
    if why:  # SQLite does not say why: a file of another user
        return VmrError(f"the catalog {catalog} cannot be read ({why}); {ANOTHER_USER} check the "
                        f"permissions of {printable(library)}")
    return VmrError(f"the catalog {catalog} cannot be used ({text}); check the disk holding {printable(library)}")


ANOTHER_USER = "are the library's files another user's (after 'sudo vmr ...')?"


def open_problem(path: str, flags=(os.O_RDONLY,)) -> str | None:
    """Why path cannot be opened with each of ``flags``, or None (it opens, or is not there).
    SQLite and safetensors say 'unable to open' or 'No such file' for a file this user may
    not read; a file taken for missing would be replaced."""
    for flag in flags:
        try:
            os.close(os.open(path, flag))
        except FileNotFoundError:
            return None
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _inside(path, folder: str) -> bool:
    """True when path lies in folder."""
    path = os.path.abspath(os.fsdecode(path))
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
