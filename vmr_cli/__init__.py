"""vmr: find moments in a personal video library from a sentence."""

__version__ = "0.2.0"

import os as _os
import time as _time

# torch's OpenMP threads spin while they wait; on a CPU shared with anything else that made
# ViT-B/32 2x slower per frame and one query encode 12-40x slower (measured on 2 cores).
# libgomp reads this when torch loads, so it is set before anything imports torch.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

STARTED = _time.perf_counter()  # when vmr was imported: the start-up a search reports
