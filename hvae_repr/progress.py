"""What a long job shows while it runs: a live status line on a terminal, and time left at the rate
so far. Training (hvae_repr.trainer), the sweep launcher (launch.sweep) and a conditional model's grid
evaluation (evaluation.grid) use it; without a terminal (a log file, CI) only whole lines are printed.
"""
import shutil
import sys
import time


def duration(seconds):
    """`seconds` in a unit that reads at a glance: 42 s, 3.5 min, 2.1 h."""
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class LiveLine:
    """One status line rewritten in place on a terminal (at most `per_second` times a second) and erased
    by clear(); on a stream that is not a terminal (or when not `enabled`) it writes nothing."""

    def __init__(self, stream=None, enabled=True, per_second=10.0):
        self.stream = stream or sys.stdout
        self.active = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self._interval, self._last, self._shown = 1.0 / per_second, -float("inf"), False

    def show(self, text, force=False):
        if not self.active:
            return
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return
        width = shutil.get_terminal_size().columns
        self.stream.write("\r\033[K" + text[:max(width - 1, 20)])  # \033[K erases the rest of the old line
        self.stream.flush()
        self._last, self._shown = now, True

    def clear(self):
        """Erases the line, so that the next print starts on an empty line."""
        if self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._shown = False


class Countdown:
    """`total` items, some finished: the time left at the rate so far (wall time since the start, so that
    items run in parallel count as such)."""

    def __init__(self, total):
        self.total, self.finished, self.started = total, 0, time.monotonic()

    def tick(self, count=1):
        self.finished += count

    @property
    def left(self):
        return self.total - self.finished

    def seconds_left(self):
        """None before the first item has finished."""
        if not self.finished:
            return None
        return (time.monotonic() - self.started) / self.finished * self.left

    def status(self):
        """'3 of 8 finished, 5 left, about 4.2 min left'."""
        return (f"{self.finished} of {self.total} finished, {self.left} left"
                + (f", about {duration(self.seconds_left())} left" if self.left and self.finished else ""))
