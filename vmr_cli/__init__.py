"""vmr: find moments in a personal video library from a sentence."""

__version__ = "0.1.0"

import time as _time

STARTED = _time.perf_counter()  # when vmr was imported: the start-up a search reports
