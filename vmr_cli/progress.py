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


def by_size(sizes: list[int], desc: str, unit: str = "it", enabled: bool | None = None):
    """Progress over items of known sizes (files: bytes) that one at a time take time in
    proportion to them: the share of the whole done and the time left, also inside an item.
    ``update(n)``: n more items done; ``within(done, total)``: the item under way is done/total
    through; ``set_postfix_str(text)``: what it is.  Counted in items alone, a run indexing one
    3-hour video showed '0/1 video' and no time left for as long as it ran (half an hour at
    ViT-B/32 size on a laptop's CPU); in a library of one long video and many short ones, the
    time left counted the long one as one short one."""
    if enabled is False:
        return _Quiet()
    return _BySize(sizes, desc, unit)


class _Quiet:
    def update(self, n: int = 1) -> None:
        pass

    def within(self, done: int, total: int) -> None:
        pass

    def resumed(self, done: int, total: int) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class _Lines(_Quiet):
    """For pipes and logs: 'indexing: 3/10 video (note)' at most every LINE_EVERY_SECONDS;
    ``share`` (by_size's): 'indexing: 37 % (1/3 video, note), 130 s, about 3 min left'."""

    def __init__(self, total, desc: str, unit: str, share: bool = False):
        self.total, self.desc, self.unit, self.share = total, desc, unit, share
        self.n, self.note = 0, ""
        self.initial = 0  # of n, what took no time in this run (a video's progress resumed): not in the rate
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
            note = f" ({self.note})" if self.note else ""
            spent = now - self.started
            if self.share:
                done, worked = self.n / self.total, (self.n - self.initial) / self.total
                left = spent * (1 - done) / worked if worked > 0 else 0.0
                left = f", about {_duration(left)} left" if left >= 1 else ""
                print(f"{self.desc}: {100 * done:.0f} %{note}, {spent:.0f} s{left}", file=sys.stderr, flush=True)
                return
            of = f"/{self.total}" if self.total else ""
            print(f"{self.desc}: {self.n}{of} {self.unit}{note}, {spent:.0f} s",
                  file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    """A time left, as people say it: '40 s', '12 min', '2 h 05 min'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class _BySize:
    """by_size's bar: a tqdm bar of per mille on a terminal, else _Lines, both told the share."""

    def __init__(self, sizes: list[int], desc: str, unit: str):
        self.ends, total = [], 0
        for size in sizes:  # where each item ends, as a share of the whole (an empty file counts one byte)
            total += max(1, int(size or 0))
            self.ends.append(total)
        self.whole, self.items, self.unit, self.note = max(1, total), 0, unit, ""
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=SHARE, desc=desc, leave=False, delay=SHOW_AFTER_SECONDS, file=sys.stderr,
                            dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar}| "
                                                           "[{elapsed}<{remaining}{postfix}]")
        else:
            self.bar = _Lines(SHARE, desc, "", share=True)

    def _to(self, share: float) -> None:
        """Moves the bar without showing it (shown with its note, by _show: a line printed here
        paired the new share with the note of the step before)."""
        self.bar.n = max(self.bar.n, min(SHARE, int(share * SHARE)))

    def update(self, n: int = 1) -> None:
        self.items = min(len(self.ends), self.items + n)
        self._to(self.ends[self.items - 1] / self.whole if self.items else 0.0)
        self._show()

    def within(self, done: int, total: int) -> None:
        """The item under way is done/total through (shown by the next set_postfix_str or update)."""
        if self.items < len(self.ends) and total > 0:
            start = self.ends[self.items - 1] if self.items else 0
            self._to((start + (self.ends[self.items] - start) * min(1.0, done / total)) / self.whole)

    def resumed(self, done: int, total: int) -> None:
        """The item under way starts done/total through (its progress saved by an earlier run):
        that share is done but took no time, so the time left is not reckoned from it (tqdm,
        as _Lines, leaves ``initial`` out of its rate)."""
        before = self.bar.n
        self.within(done, total)
        self.bar.initial += self.bar.n - before

    def set_postfix_str(self, text: str) -> None:
        self.note = text
        self._show()

    def _show(self) -> None:
        counted = f"{self.items}/{len(self.ends)} {self.unit}"
        self.bar.set_postfix_str(f"{counted}, {self.note}" if self.note else counted)

    def close(self) -> None:
        self.bar.close()


SHARE = 1000  # steps of a by_size bar
