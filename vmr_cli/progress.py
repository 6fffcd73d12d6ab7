"""Progress on stderr for anything that may take more than a second.

A terminal gets a tqdm bar that appears only after a second (short commands
stay quiet); a pipe or a log file gets a plain line now and then instead of
bar redraws.  Never stdout, so ``--json`` output stays clean.
"""

from __future__ import annotations

import sys
import time

LINE_EVERY_SECONDS = 10.0
SHOW_AFTER_SECONDS = 1.0


def progress(total: int | None, desc: str, unit: str = "it", enabled: bool | None = None):
    """A bar-like object with update(n), set_postfix_str(text) and close().

    ``enabled`` False shows nothing; None shows progress when it lasts long enough.
    """
    if enabled is False:
        return _Quiet()
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, leave=False, delay=SHOW_AFTER_SECONDS,
                    file=sys.stderr, dynamic_ncols=True)
    return _Lines(total, desc, unit)


class _Quiet:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class _Lines(_Quiet):
    """For pipes and logs: 'indexing: 3/10 video (note)' at most every LINE_EVERY_SECONDS."""

    def __init__(self, total, desc: str, unit: str):
        self.total, self.desc, self.unit = total, desc, unit
        self.n, self.note = 0, ""
        self.started = self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        self._maybe_print()

    def set_postfix_str(self, text: str) -> None:
        self.note = text
        self._maybe_print()

    def _maybe_print(self) -> None:
        now = time.monotonic()
        if now - self.last >= LINE_EVERY_SECONDS and now - self.started >= SHOW_AFTER_SECONDS:
            self.last = now
            of = f"/{self.total}" if self.total else ""
            note = f" ({self.note})" if self.note else ""
            print(f"{self.desc}: {self.n}{of} {self.unit}{note}, {now - self.started:.0f} s",
                  file=sys.stderr, flush=True)
