"""How times are written: one place, so the table, the page and file names agree."""

from __future__ import annotations


def timecode(seconds: float) -> str:
    """12.04 -> '0:00:12.0': the results table and the page."""
    tenths = int(round(max(0.0, seconds) * 10))
    h, rest = divmod(tenths, 36000)
    m, rest = divmod(rest, 600)
    return f"{h}:{m:02d}:{rest // 10:02d}.{rest % 10}"


def file_stamp(seconds: float) -> str:
    """12.25 -> '0h00m12.25s': sorts well and is safe in file names."""
    hundredths = int(max(0.0, seconds) * 100 + 0.5)
    h, rest = divmod(hundredths, 360000)
    m, rest = divmod(rest, 6000)
    return f"{h}h{m:02d}m{rest // 100:02d}.{rest % 100:02d}s"
