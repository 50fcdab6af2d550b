"""Preemption: SIGTERM (what Slurm, Kubernetes and Ray send before they kill a job) and SIGINT (Ctrl-C)
stop a program at its next safe point instead of wherever it happens to be.

    with preemption.deferred():       # the signals are recorded, not acted upon
        for step in ...:
            preemption.check(lambda: "what was saved and how to resume")   # raises Interrupted

Training checks after every step (and writes a checkpoint first), the evaluation between its stages,
the sweep launcher forwards the signal to its points' processes. `exit_on_interrupt` turns Interrupted
into its one line on stderr and the conventional exit status, 128 + the signal: 143 for SIGTERM, 130
for SIGINT. A second SIGINT stops at once (KeyboardInterrupt), as Ctrl-C always did (not where
`deferred` records it as another signal); a repeated SIGTERM is ignored (a job's processes may get it
both from the scheduler and from their launcher).
Handlers can only be set in the main thread; elsewhere `deferred` does nothing.
"""
import contextlib
import signal
import sys
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_state = {"depth": 0, "previous": {}, "received": [], "listeners": [], "record_as": None}


class Interrupted(BaseException):
    """A SIGTERM or SIGINT stopped the program at a safe point. A BaseException, like KeyboardInterrupt,
    so that handlers of errors (a sweep point's `except Exception`) do not record it as a failure."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.signum = signum
        self.exit_status = 128 + signum

    @property
    def line(self):
        return " ".join(str(self).split())


def signal_name(signum):
    return signal.Signals(signum).name


def received():
    """The first signal received inside `deferred` (its number), or None."""
    return _state["received"][0] if _state["received"] else None


def times_received(signum):
    return _state["received"].count(signum)


def _handler(signum, frame):
    signum = _state["record_as"] or signum
    repeated = signum in _state["received"]
    _state["received"].append(signum)
    for listener in list(_state["listeners"]):
        listener(signum)
    if repeated and signum == signal.SIGINT:
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred(on_signal=None, record_as=None, signals=SIGNALS):
    """Records SIGTERM and SIGINT inside the block instead of dying (nested blocks share one record).
    on_signal(signum) is called at each signal (the sweep launcher forwards it to its points). The outermost
    block's `signals` are the ones it takes over (the others keep their handlers), and with record_as each
    of them counts as that one: a Ray task takes over only SIGINT, the form of Ray's cancel, and passes it on
    to its point as SIGTERM (which a point ignores when it is repeated), leaving Ray's own SIGTERM handler
    (the worker exits, and Ray retries the task) in place."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _state["depth"] == 0:
        _state["previous"] = {s: signal.getsignal(s) for s in signals}
        _state["received"], _state["record_as"] = [], record_as
        try:
            for s in signals:
                signal.signal(s, _handler)
        except BaseException:  # a signal between two of them (KeyboardInterrupt): leave none of ours behind
            for s, previous in _state["previous"].items():
                signal.signal(s, previous)
            raise
    _state["depth"] += 1
    if on_signal is not None:
        _state["listeners"].append(on_signal)
    try:
        yield
    finally:
        if on_signal is not None:
            _state["listeners"].remove(on_signal)
        _state["depth"] -= 1
        if _state["depth"] == 0:
            for s, previous in _state["previous"].items():
                signal.signal(s, previous)


def check(message):
    """Raises Interrupted when a signal was received; message() says what was kept and how to resume."""
    signum = received()
    if signum is not None:
        raise Interrupted(signum, f"interrupted by {signal_name(signum)}: {message()}")


@contextlib.contextmanager
def exit_on_interrupt():
    """A program's main: signals deferred inside the block, Interrupted printed as one line on stderr and
    the exit status 128 + signal (143 SIGTERM, 130 SIGINT)."""
    try:
        with deferred():
            yield
    except Interrupted as e:
        print(e.line, file=sys.stderr, flush=True)
        sys.exit(e.exit_status)
