"""How a vmr process ends once torch is loaded: without the interpreter's 0.4 s teardown, but
with its exit status, its atexit handlers, its output flushed, and any running thread finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import ROOT

PRELUDE = """
import atexit, sys, threading, time
import torch
from vmr_cli import cli

class Finalized:  # its __del__ runs only in the interpreter's teardown
    def __del__(self):
        sys.stdout.write("teardown ran\\n")

kept = Finalized()
atexit.register(lambda: sys.stdout.write("atexit ran\\n"))
sys.stdout.write("x" * 100000 + "\\n")  # buffered output that must still arrive
"""


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE + code], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"))


def test_a_torch_process_skips_teardown_but_keeps_status_handlers_and_output():
    done = run("cli.exit_process(3)")
    assert done.returncode == 3
    assert "x" * 100000 in done.stdout and "atexit ran" in done.stdout
    assert "teardown ran" not in done.stdout  # the 0.4 s of freeing torch's modules is skipped


def test_a_message_exit_prints_it_and_returns_1():
    done = run("cli.exit_process('Error: something')")
    assert done.returncode == 1 and "Error: something" in done.stderr


def test_a_running_thread_gets_the_ordinary_exit_and_finishes():
    done = run("threading.Thread(target=lambda: (time.sleep(0.3), sys.stdout.write('thread done\\n'))).start()\n"
               "cli.exit_process(0)")
    assert done.returncode == 0 and "thread done" in done.stdout and "teardown ran" in done.stdout


def test_vmr_main_ends_with_the_commands_status():
    done = subprocess.run([sys.executable, "-m", "vmr_cli", "--library", os.devnull, "search", "x"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1 and done.stderr.startswith("Error:")


def test_a_command_started_with_stdout_closed_ends_without_a_traceback(tiny_model, tmp_path):
    """`vmr status >&-` (a cron line, a launcher): Python sets sys.stdout to None; the exit
    flushed it and printed a traceback (after --html --open, too, before the browser)."""
    from conftest import make_video

    make_video(tmp_path / "v" / "a.mp4", [("red", 2.0)])
    env = dict(os.environ, HF_HUB_OFFLINE="1", VMR_LIBRARY=str(tmp_path / "lib"), BROWSER="true")
    base = [sys.executable, "-m", "vmr_cli"]
    subprocess.run(base + ["index", str(tmp_path / "v"), "--model", tiny_model], env=env, cwd=ROOT, check=True,
                   capture_output=True)
    for args in (["status"], ["search", "red", "--html", str(tmp_path / "p.html"), "--open"]):
        done = subprocess.run(base + args, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: os.close(1))
        assert done.returncode == 0 and "Traceback" not in done.stderr, (args, done.stderr)


LATE_CTRL_C = """
import os, signal, sys
import click
from vmr_cli import cli

close = click.Context.close

def ctrl_c_then_close(self):  # Ctrl-C once the command is done, as click tidies up
    if self.parent is None:
        os.kill(os.getpid(), signal.SIGINT)
    close(self)

click.Context.close = ctrl_c_then_close
sys.argv = ["vmr", "--library", sys.argv[1], "status"]
cli.main()
"""


def test_a_ctrl_c_after_the_command_finished_does_not_fail_it(tmp_path):
    """A Ctrl-C landing after an index had committed and printed its summary made click say
    'Aborted!' and exit 1."""
    done = subprocess.run([sys.executable, "-c", LATE_CTRL_C, str(tmp_path / "lib")], capture_output=True,
                          text=True, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert (done.returncode, done.stderr) == (0, ""), done
    assert "none yet (no such folder); 'vmr index PATH' makes it" in done.stdout


def test_an_index_with_nothing_to_do_does_not_load_torch(tiny_model, tmp_path):
    """A no-op 'vmr index' (a cron job's usual run) loaded torch and torchcodec first: about 3 s
    of its 3.5 s."""
    from conftest import make_video, vmr

    make_video(tmp_path / "v" / "a.mp4", [("red", 2.0)])
    library = tmp_path / "lib"
    vmr("--library", library, "index", tmp_path / "v", "--model", tiny_model)
    code = ("import sys; from click.testing import CliRunner; from vmr_cli.cli import cli; "
            f"r = CliRunner().invoke(cli, ['--library', {str(library)!r}, 'index', '--json']); "
            "print(r.exit_code, '\"unchanged\": 1' in r.stdout, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.stdout.split() == ["0", "True", "False"], done


TERM_MID_INDEX = """
import os, signal, sys
from vmr_cli import cli
from vmr_cli.library import Library

put = Library.put_video
calls = []

def put_then_term(self, *args, **kwargs):  # kill PID (or timeout, or a logout) after the first video
    calls.append(1)
    done = put(self, *args, **kwargs)
    if len(calls) == 1:
        os.kill(os.getpid(), signal.SIGTERM)
    return done

Library.put_video = put_then_term
sys.argv = ["vmr", "--library", sys.argv[1], "index", sys.argv[2], "--model", sys.argv[3]]
cli.main()
"""


def test_sigterm_stops_a_command_as_ctrl_c_does(tiny_model, tmp_path):
    """SIGTERM ended vmr at once, without the clean stop of Ctrl-C: an export killed so left its
    cuts unlogged (the next index took them for the user's videos) and its temporary file."""
    from conftest import make_video, vmr_json

    for k in range(3):
        make_video(tmp_path / "v" / f"{k}.mp4", [("red", 2.0)])
    library = tmp_path / "lib"
    done = subprocess.run([sys.executable, "-c", TERM_MID_INDEX, str(library), str(tmp_path / "v"), tiny_model],
                          capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.returncode == 143, done
    assert done.stderr.strip().endswith("interrupted; what was committed is kept, run the command again to resume")
    status = vmr_json("--library", library, "status", "--check")
    assert status["videos"] == 1 and status["consistent"]
    assert vmr_json("--library", library, "index", tmp_path / "v")["added"] == 2


SIGNAL_WHILE_LOADING = """
import builtins, os, runpy, signal, sys

SIGNAL, real_import = getattr(signal, sys.argv[1]), builtins.__import__

def import_then_signal(name, *args, **kwargs):  # the signal lands while vmr's modules load
    if name == "click":
        os.kill(os.getpid(), SIGNAL)
    return real_import(name, *args, **kwargs)

builtins.__import__ = import_then_signal
sys.argv = ["vmr", "--library", sys.argv[2], "status"]
runpy.run_module("vmr_cli", run_name="__main__")
"""

SIGNAL_IN_GROUP_CALLBACK = """
import os, signal, sys
import click
from vmr_cli import cli

SIGNAL, ensure_object = getattr(signal, sys.argv[1]), click.Context.ensure_object

def signal_then_ensure(self, object_type):  # in vmr's own callback, before the command runs
    os.kill(os.getpid(), SIGNAL)
    return ensure_object(self, object_type)

click.Context.ensure_object = signal_then_ensure
sys.argv = ["vmr", "--library", sys.argv[2], "status"]
cli.main()
"""


@pytest.mark.parametrize("code", [SIGNAL_WHILE_LOADING, SIGNAL_IN_GROUP_CALLBACK], ids=["loading", "callback"])
@pytest.mark.parametrize("name,status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_before_the_command_runs_says_interrupted(code, name, status, tmp_path):
    """Ctrl-C in vmr's first fraction of a second printed a traceback (while it loaded) or click's
    'Aborted!' with status 1 (options, the group's callback); SIGTERM before main() killed it
    without a word (status -15)."""
    done = subprocess.run([sys.executable, "-c", code, name, str(tmp_path / "lib")], capture_output=True,
                          text=True, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert (done.returncode, done.stderr) == (status, "Error: interrupted\n"), done


CTRL_C_IN_EXEC = """
import os, signal, sys
from vmr_cli import cli

emit_json = cli.emit_json

def ctrl_c_in_exec(data):  # as in namedtuple's or dataclasses' exec while torch loads
    exec("os.kill(os.getpid(), signal.SIGINT)\\nfor _ in range(1000): pass", {"os": os, "signal": signal})
    emit_json(data)

cli.emit_json = ctrl_c_in_exec
sys.argv = ["vmr", "--library", sys.argv[1], "status", "--json"]
cli.main()
"""


def test_a_ctrl_c_inside_code_run_from_a_string_still_exits_130(tmp_path):
    """'vmr eval' stopped by one Ctrl-C sometimes printed its line and then died of SIGINT
    (status -2): CPython's exit of 'python -m' takes a KeyboardInterrupt that left an exec'd
    string for one nobody caught."""
    (tmp_path / "ctrl_c_in_exec.py").write_text(CTRL_C_IN_EXEC)
    path = os.pathsep.join(p for p in [str(tmp_path), os.environ.get("PYTHONPATH")] if p)
    done = subprocess.run([sys.executable, "-m", "ctrl_c_in_exec", str(tmp_path / "lib")], capture_output=True,
                          text=True, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=path))
    assert (done.returncode, done.stderr) == (130, "Error: interrupted\n"), done


IGNORED_BY_THE_PARENT = """
import builtins, os, runpy, signal, sys

signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell script's background job ('vmr index DIR &') gets it
real_import = builtins.__import__

def import_then_signal(name, *args, **kwargs):  # Ctrl-C in the terminal while vmr loads and runs
    if name in ("click", "json"):
        os.kill(os.getpid(), signal.SIGINT)
    return real_import(name, *args, **kwargs)

builtins.__import__ = import_then_signal
sys.argv = ["vmr", "--library", sys.argv[1], "status", "--json"]
runpy.run_module("vmr_cli", run_name="__main__")
"""


def test_a_signal_the_parent_ignores_stays_ignored(tmp_path):
    """Started with SIGINT ignored (a script's background job), vmr set its own handler and a Ctrl-C
    meant for the terminal's foreground stopped it ('Error: interrupted', 130)."""
    done = subprocess.run([sys.executable, "-c", IGNORED_BY_THE_PARENT, str(tmp_path / "lib")], capture_output=True,
                          text=True, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.returncode == 0 and done.stderr == "" and '"videos": 0' in done.stdout, done


HALF_LOADED = """
import os, signal, sys
os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while a module loads (torch, numpy, torchcodec)
for _ in range(200000): pass  # the rest of its module code, which must run
open(os.environ["LOADED_MARK"], "w").close()
"""

CTRL_C_IN_AN_IMPORT = """
import sys
from vmr_cli import cli, indexer

index_paths = indexer.index_paths

def import_then_index(*args, **kwargs):  # as the index's first 'import torch'
    import half_loaded
    return index_paths(*args, **kwargs)

indexer.index_paths = import_then_index
sys.argv = ["vmr", "--library", sys.argv[1], "index", sys.argv[2], "--model", sys.argv[3]]
cli.main()
"""


def test_a_ctrl_c_while_a_module_loads_waits_for_it_and_then_stops(tiny_model, tmp_path):
    """A Ctrl-C about a second into 'vmr index' landed inside 'import torch': a C++ 'terminate
    called ... KeyboardInterrupt' core dump (exit 134, a library with no videos left behind),
    "numpy has no attribute 'void'", or the interrupt swallowed and the whole run done."""
    from conftest import make_video

    make_video(tmp_path / "v" / "a.mp4", [("red", 2.0)])
    (tmp_path / "half_loaded.py").write_text(HALF_LOADED)
    path = os.pathsep.join(p for p in [str(tmp_path), os.environ.get("PYTHONPATH")] if p)
    mark = tmp_path / "loaded"
    done = subprocess.run([sys.executable, "-c", CTRL_C_IN_AN_IMPORT, str(tmp_path / "lib"), str(tmp_path / "v"),
                           tiny_model], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=path, LOADED_MARK=str(mark)))
    assert done.returncode == 130 and done.stderr.startswith("Error: interrupted"), done
    assert mark.exists()  # the module loaded whole, then the command stopped


CTRL_C_TURNED_INTO_ANOTHER_ERROR = """
import os, signal, sys
from vmr_cli import cli, indexer

def load_file(*args, **kwargs):  # as safetensors' load_file: native code calling back into Python
    try:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(200000): pass
    except KeyboardInterrupt:
        raise ValueError("could not determine the shape of object type 'torch.storage.UntypedStorage'")

indexer.index_paths = load_file
sys.argv = ["vmr", "--library", sys.argv[1], "index", sys.argv[2]]
cli.main()
"""


def test_a_ctrl_c_that_native_code_turned_into_another_error_is_still_an_interrupt(tmp_path):
    """Ctrl-C while safetensors loaded the model gave a traceback of "ValueError: could not
    determine the shape of object type 'torch.storage.UntypedStorage'" and exit 1."""
    (tmp_path / "v").mkdir()
    done = subprocess.run([sys.executable, "-c", CTRL_C_TURNED_INTO_ANOTHER_ERROR, str(tmp_path / "lib"),
                           str(tmp_path / "v")], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert (done.returncode, done.stderr) == \
        (130, "Error: interrupted; what was committed is kept, run the command again to resume\n"), done


def test_a_file_whose_decoding_an_interrupt_broke_is_not_recorded_as_failed(tiny_model, tmp_path, monkeypatch):
    """Native code that takes a Ctrl-C can make it another error: where that is a file's decode
    error, the file was recorded as failed (not tried again until it changes) and the run went on."""
    import signal

    from conftest import make_video, vmr

    from vmr_cli import errors, indexer
    from vmr_cli.errors import DecodeError

    make_video(tmp_path / "v" / "a.mp4", [("red", 2.0)])
    make_video(tmp_path / "v" / "b.mp4", [("green", 2.0)])
    encoded = indexer._encoded

    def interrupted_in_the_first(work, *args, **kwargs):
        for n, (item, row, result) in enumerate(encoded(work, *args, **kwargs)):
            if n == 0:
                errors.received.append(signal.SIGINT)  # as raise_interrupt records it
                result = DecodeError("cannot decode: could not determine the shape of object type ...")
            yield item, row, result

    monkeypatch.setattr(indexer, "_encoded", interrupted_in_the_first)
    monkeypatch.setattr(errors, "received", [])  # (the module's own list stays empty for other tests)
    code, out, err = vmr("--library", tmp_path / "lib", "index", tmp_path / "v", "--model", tiny_model, expect=130)
    assert err.startswith("Error: interrupted"), err
    monkeypatch.undo()
    assert vmr("--library", tmp_path / "lib", "status", "--failed")[1].count("a.mp4") == 0


CTRL_C_IN_A_LAST_IMPORT = """
import atexit, os, sys, time
from vmr_cli import cli

open_library = cli.open_library

def import_then_open(*args, **kwargs):  # a lazy import in the command's last steps
    import half_loaded
    t = time.perf_counter()
    while time.perf_counter() - t < float(sys.argv[2]) / 1000:  # what is left of the command
        pass
    return open_library(*args, **kwargs)

cli.open_library = import_then_open
atexit.register(time.sleep, 0.1)  # as torch's and logging's atexit callbacks: the process lingers
sys.argv = ["vmr", "--library", sys.argv[1], "searches"]
cli.main()
"""


def test_an_interrupt_deferred_past_the_commands_end_is_not_raised_after_it(tmp_path):
    """A Ctrl-C in an import less than the retry's 20 ms before the command ended (or before the
    interrupt was raised another way) was raised by the timer afterwards: 'Aborted!' and exit 1
    after the command's output, or a traceback from an atexit callback."""
    (tmp_path / "half_loaded.py").write_text(HALF_LOADED.replace("LOADED_MARK", "LOADED_MARK_"))
    path = os.pathsep.join(p for p in [str(tmp_path), os.environ.get("PYTHONPATH")] if p)
    for spin in (0, 5, 10, 40):
        done = subprocess.run([sys.executable, "-c", CTRL_C_IN_A_LAST_IMPORT, str(tmp_path / "lib"), str(spin)],
                              capture_output=True, text=True, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=path, LOADED_MARK_=str(tmp_path / "mark")))
        assert (done.returncode, done.stderr) in [
            (1, f"Error: no vmr library at {tmp_path / 'lib'}; run 'vmr index PATH' first\n"),
            (130, "Error: interrupted\n")], (spin, done)


SIGTERM_TAKEN_BY_NATIVE_CODE = """
import os, signal, sys
from vmr_cli import cli, indexer

encode_distinct = indexer.encode_distinct

def taken(*args, **kwargs):  # native code that takes the SIGTERM's exception and goes on
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(200000): pass
    except KeyboardInterrupt:
        pass
    return encode_distinct(*args, **kwargs)

indexer.encode_distinct = taken
sys.argv = ["vmr", "--library", sys.argv[1], "index", sys.argv[2], "--model", sys.argv[3]]
cli.main()
"""


def test_a_sigterm_native_code_took_still_ends_the_index_as_terminated(tiny_model, tmp_path):
    """The indexer's check for an interrupt native code took raised KeyboardInterrupt for SIGTERM
    too: exit 130, not 143."""
    from conftest import make_video

    make_video(tmp_path / "v" / "a.mp4", [("red", 2.0)])
    done = subprocess.run([sys.executable, "-c", SIGTERM_TAKEN_BY_NATIVE_CODE, str(tmp_path / "lib"),
                           str(tmp_path / "v"), tiny_model], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.returncode == 143 and done.stderr.startswith("Error: "), done


SIGTERM_IN_A_LONG_IMPORT = """
import os, signal, sys, time
os.kill(os.getpid(), signal.SIGTERM)
if os.environ.get("TWICE"):
    time.sleep(0.1)
    os.kill(os.getpid(), signal.SIGTERM)
t = time.time()
while time.time() - t < 1: pass
"""

LONG_IMPORT_THEN_SEARCHES = """
import sys
from vmr_cli import cli

open_library = cli.open_library

def import_then_open(*args, **kwargs):
    import long_import
    return open_library(*args, **kwargs)

cli.open_library = import_then_open
sys.argv = ["vmr", "--library", sys.argv[1], "searches"]
cli.main()
"""


def test_a_sigterm_in_an_import_stops_the_command_and_a_second_one_ends_it_at_once(tiny_model, tmp_path):
    """The command went on to its end (exit 0) when it ended less than the timer's 20 ms after the
    import; a second SIGTERM in the import was deferred too, not the end at once it is elsewhere."""
    from conftest import make_video

    make_video(tmp_path / "v" / "a.mp4", [("red", 2.0)])
    lib = tmp_path / "lib"
    assert subprocess.run([sys.executable, "-m", "vmr_cli", "--library", str(lib), "index", str(tmp_path / "v"),
                           "--model", tiny_model], capture_output=True, cwd=ROOT,
                          env=dict(os.environ, HF_HUB_OFFLINE="1")).returncode == 0
    (tmp_path / "long_import.py").write_text(SIGTERM_IN_A_LONG_IMPORT)
    path = os.pathsep.join(p for p in [str(tmp_path), os.environ.get("PYTHONPATH")] if p)
    done = subprocess.run([sys.executable, "-c", LONG_IMPORT_THEN_SEARCHES, str(lib)], capture_output=True,
                          text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=path))
    assert done.returncode == 143 and done.stderr.splitlines()[-1:] == ["Error: interrupted"] \
        and "Traceback" not in done.stderr, done  # (where the timer lands decides what came before)
    done = subprocess.run([sys.executable, "-c", LONG_IMPORT_THEN_SEARCHES, str(lib)], capture_output=True,
                          text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=path, TWICE="1"))
    assert done.returncode == -signal.SIGTERM and done.stdout == "", done


@pytest.mark.parametrize("mode", ["trimmed", "exhaustive"])
def test_a_search_whose_decoding_an_interrupt_broke_stops_as_interrupted(mode, tiny_model, tmp_path, monkeypatch):
    """A Ctrl-C that native code made a video's decode error was taken for that video's: the
    search went on (the video 'skipped' or its edges unrefined), the interrupt lost."""
    import signal

    from conftest import make_video, vmr

    from vmr_cli import errors, search
    from vmr_cli.errors import DecodeError

    make_video(tmp_path / "v" / "a.mp4", [("red", 2.0), ("blue", 2.0)])
    vmr("--library", tmp_path / "lib", "index", tmp_path / "v", "--model", tiny_model)

    def interrupted(self, times):
        errors.received.append(signal.SIGINT)  # as raise_interrupt records it
        raise DecodeError("cannot decode: could not determine the shape of object type ...")

    monkeypatch.setattr(errors, "received", [])
    monkeypatch.setattr(search._FrameSource, "similarities", interrupted)
    args = ["--library", tmp_path / "lib", "search", "a red screen"] + \
        (["--exhaustive"] if mode == "exhaustive" else [])
    code, out, err = vmr(*args, expect=130)
    assert (out, err) == ("", "Error: interrupted\n")
