"""Progress on long work: a live bar on a terminal, one line per stage anywhere else.

A tqdm bar redraws itself with carriage returns many times a second: right in a terminal,
but in a log file or CI output every redraw stays (an 8-minute demo wrote 530 KB of bar
updates). So every long loop of hgpose opens its bar through `bar()`: on a terminal that
is tqdm itself; otherwise nothing is printed while the work runs and one line when it ends,

    prepare: 9,000 img in 41.2 s (218 img/s)

Which one is decided by the stream the bar writes to (stderr by default), at the moment the
bar is opened. HGPOSE_PROGRESS=bar or =lines overrides the choice.
"""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm


def bar(*, total: int | None = None, desc: str = "", unit: str = "it", initial: int = 0,
        disable: bool = False, file=None, leave: bool = True, summary: bool = True):
    """A progress bar for `total` units of work (tqdm's interface: update, set_postfix,
    close, context manager). summary=False: no closing line off a terminal (for a loop that
    prints its own line per stage, as training does per epoch)."""
    file = sys.stderr if file is None else file
    if disable or (not summary and not _live(file)):
        return tqdm(total=total, disable=True)
    if _live(file):
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=file, leave=leave,
                    dynamic_ncols=True)
    return LineProgress(total, desc, unit, initial, file)


def _live(file) -> bool:
    forced = os.environ.get("HGPOSE_PROGRESS")
    if forced in ("bar", "lines"):
        return forced == "bar"
    return hasattr(file, "isatty") and file.isatty()


class LineProgress:
    """Counts like a tqdm bar and prints one line when closed: how much, how long, how fast."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int, file):
        self.total, self.desc, self.unit, self.file = total, desc, unit, file
        self.n = self.initial = initial
        self.postfix = ""
        self.started = time.perf_counter()
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        seconds = time.perf_counter() - self.started
        done = self.n - self.initial
        rate = f" ({done / seconds:,.1f} {self.unit}/s)" if seconds > 0 and done else ""
        of = f"/{self.total:,}" if self.total is not None and self.total != self.n else ""
        extra = f"; {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n:,}{of} {self.unit} in {seconds:.1f} s{rate}{extra}", file=self.file,
              flush=True)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, kind, *exc) -> bool:
        if kind is None:
            self.close()
        else:               # the work failed: its error says so, not a line of what got done
            self.closed = True
        return False
