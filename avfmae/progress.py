"""Progress bars that suit where their output goes.

A terminal gets a bar redrawn in place twice a second. A log file (a SLURM job's output,
`dvc queue logs`, a redirected stage) cannot redraw, so every refresh becomes a line; there the
bar prints at most once every :data:`LOG_INTERVAL_S` seconds, plus its final state.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["LOG_INTERVAL_S", "progress"]

LOG_INTERVAL_S = 60.0


def progress(total: int, desc: str, *, file: TextIO | None = None, **kwargs: Any) -> tqdm:
    """A ``tqdm`` bar over ``total`` items writing to ``file`` (default stderr); other keyword
    arguments (``unit``, ``disable``, ``leave``, ``initial``, …) go to ``tqdm``."""
    stream = file or sys.stderr
    interactive = hasattr(stream, "isatty") and stream.isatty()
    interval = 0.5 if interactive else LOG_INTERVAL_S
    return tqdm(total=total, desc=desc, file=stream, mininterval=interval,
                maxinterval=max(10.0, interval), dynamic_ncols=interactive, **kwargs)
