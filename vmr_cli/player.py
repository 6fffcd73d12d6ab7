"""``vmr play``: open a moment of a logged search in the user's own player.

mpv and VLC are told the start and the end of the moment (they stop there);
otherwise the system opener (xdg-open, macOS ``open``) gets the file, which
cannot be told a time, so the start to seek to is printed.  The player runs
from an argument list, never a shell, with the absolute path after ``--``
for mpv and as a percent-encoded ``file://`` URL for VLC (which reads its
arguments as URLs): a name that starts with '-' or holds a newline is a file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from .errors import VmrError
from .paths import printable

PLAYERS = ("auto", "mpv", "vlc", "system")


def pick_result(catalog, rank: int, search_id: int | None = None, readonly: bool = False) -> tuple[dict, dict]:
    """(search, result) for rank of search_id, or of the last search."""
    if search_id is None and readonly:
        raise VmrError("the library is read-only, so searches are not logged and the last logged search "
                       "is not the one you saw; name one with --search ID")
    search = catalog.search(search_id)
    if search is None:
        raise VmrError(f"no search with id {search_id} ('vmr searches' lists them)" if search_id is not None
                       else "no search yet; run 'vmr search QUERY' first")
    for result in search["results"]:
        if int(result["rank"]) == rank:
            return search, result
    count = len(search["results"])
    raise VmrError(f"search {search['id']} has {count} result{'s' if count != 1 else ''}; there is no rank {rank}")


def system_opener() -> str | None:
    if sys.platform == "darwin":
        return shutil.which("open")
    return shutil.which("xdg-open")


def find_player(choice: str = "auto") -> tuple[str, str]:
    """(kind, executable): kind is 'mpv', 'vlc' or 'system'."""
    names = {"mpv": ["mpv"], "vlc": ["vlc", "/Applications/VLC.app/Contents/MacOS/VLC"]}
    for kind in (("mpv", "vlc") if choice == "auto" else (choice,)):
        if kind == "system":
            break
        for name in names[kind]:
            found = shutil.which(name)
            if found:
                return kind, found
        if choice != "auto":
            raise VmrError(f"{kind} not found on PATH; install it or use --player auto")
    opener = system_opener()
    if opener:
        return "system", opener
    raise VmrError("no player found: install mpv or VLC (or xdg-utils for the desktop's own player)")


def player_command(kind: str, executable: str, path: str, start: float, end: float) -> list[str]:
    """The argv that plays path from start to end (the system opener gets the file only)."""
    from .page import file_url

    path = os.path.abspath(path)
    if kind == "mpv":
        return [executable, f"--start={start:.3f}", f"--end={end:.3f}", "--", path]
    if kind == "vlc":
        return [executable, f"--start-time={start:.3f}", f"--stop-time={end:.3f}", "--play-and-exit",
                file_url(path)]
    return [executable, path]


def prepare(path: str, start: float, end: float, choice: str = "auto") -> tuple[str, list[str]]:
    """(kind, argv) that plays the moment; one-line errors for a missing file or player."""
    if not os.path.isfile(path):
        raise VmrError(f"the video no longer exists: {printable(path)}; run 'vmr index' and search again")
    kind, executable = find_player(choice)
    return kind, player_command(kind, executable, path, start, end)


def run(kind: str, argv: list[str]) -> None:
    """Run the player in the foreground (mpv and VLC keep the terminal until they close)."""
    try:
        done = subprocess.run(argv)
    except OSError as exc:
        raise VmrError(f"cannot run {printable(argv[0])}: {exc.strerror}") from None
    if done.returncode != 0:
        name = printable(os.path.basename(argv[0]))
        hint = "; install mpv or VLC" if kind == "system" else ""
        raise VmrError(f"{name} exited with status {done.returncode}{hint}")
