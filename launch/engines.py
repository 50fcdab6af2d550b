"""Where a sweep's points run: processes on this machine (local) or Ray tasks (ray).

Both engines run the same job function: one `python -m launch.point ...` process per point (each
point needs a process of its own, since TensorFlow's thread settings are per process), with its
output appended to RUN/sweep.log. Each attempt at a point first appends an attempt line there
(the launch's id, the node and host it ran on), so a sweep's record and summary say where every
point ran and which ran more than once.

On a Ray cluster a point whose node (or worker process) dies is a system failure: Ray runs its task
again on a live node (up to RAY_MAX_RETRIES times) and the point resumes from its last checkpoint. A
point that fails for its own reasons (launch.point's exit status 1: bad settings, a diverged training)
returns "failed" normally and is not retried.

A SIGTERM or SIGINT of the launcher is forwarded to the running points (the local engine; the Ray
engine cancels its tasks, which pass it on as SIGTERM), which write a checkpoint and exit 143 / 130:
"interrupted", neither failed nor retried; points not started yet are "not_started".
"""
import concurrent.futures
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import NamedTuple

from launch import point
from hvae_repr import machine, preemption
from hvae_repr.runs import RunDir

STATUS = {point.EXIT_DONE: "done", point.EXIT_FINISHED: "skipped", point.EXIT_BUSY: "busy",
          point.EXIT_FAILED: "failed"}


class Job(NamedTuple):
    index: int
    workdir: str      # absolute
    argv: tuple       # launch.point's flags
    threads: int      # CPU threads of the point's process
    betas: tuple = ()  # the grid point
    launch: str = ""  # the id of the launch running it (its attempt lines in RUN/sweep.log carry it)


RAY_MAX_RETRIES = 3  # Ray task retries after a system failure (a lost node or a killed worker)
ATTEMPT = re.compile(r"^\[launch (\S+)\] attempt on node (\S+) \(host (\S+), pid (\d+)\)$")


def new_launch_id():
    """An id unique to one launcher process: host, pid and start time."""
    return f"{socket.gethostname()}-{os.getpid()}-{int(time.time())}"


def command(job):
    return [sys.executable, "-m", "launch.point", *job.argv]


def _die_with_parent():
    """In the point's process before it starts (Linux): it is killed when the process that started it
    (a Ray worker) dies, as it would be when its machine goes down, instead of training on, orphaned."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


# The point processes running now (local engine), each with how often each signal was forwarded to it.
_children = {}
_children_lock = threading.RLock()  # re-entrant: the signal handler runs in the main thread


def forward_signal(signum):
    """Sends `signum` to every running point process as many times as this launcher has received it (each
    point runs in a session of its own, so a terminal's Ctrl-C reaches it only this way)."""
    with _children_lock:
        for child, sent in list(_children.items()):
            while sent.get(signum, 0) < preemption.times_received(signum):
                sent[signum] = sent.get(signum, 0) + 1
                try:
                    child.send_signal(signum)
                except ProcessLookupError:  # it has just ended
                    pass


def _interrupted(code):
    return code in [128 + s for s in preemption.SIGNALS] + [-s for s in preemption.SIGNALS]


def run_job(job, node="local"):
    """Runs one point in a process of its own; returns its status: done, skipped, busy, failed, interrupted
    (stopped by a SIGTERM or SIGINT, its checkpoint written) or not_started (a signal came first)."""
    if preemption.received():
        return "not_started"
    run = RunDir(job.workdir)
    threads = str(job.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    try:
        os.makedirs(run.path, exist_ok=True)
        log = open(run.file(run.LOG), "a")
        log.write(f"[launch {job.launch or '-'}] attempt on node {node} (host {socket.gethostname()}, "
                  f"pid {os.getpid()})\n")
        log.flush()
    except OSError as e:
        return _failed(run, f"cannot write {run.file(run.LOG)} ({e.strerror or e})")
    with log:
        orphan_guard = _die_with_parent if node != "local" and sys.platform == "linux" else None
        child = subprocess.Popen(command(job), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                 preexec_fn=orphan_guard)
        with _children_lock:
            _children[child] = {}
        try:
            for signum in preemption.SIGNALS:  # a signal that came while it started
                forward_signal(signum)
            code = _wait(child)
        finally:
            with _children_lock:
                _children.pop(child, None)
    if _interrupted(code):  # its checkpoint is written: neither a failure nor (on Ray) a lost task to retry
        return "interrupted"
    if not os.path.isdir(run.path):
        return _failed(run, f"its folder {run.path} is gone (deleted during the sweep?); its process ended with "
                            f"exit status {code}")
    if code not in STATUS:  # killed, or crashed before it could write error.txt
        return _failed(run, f"the point's process ended with exit status {code}; see {run.file(run.LOG)}")
    return STATUS[code]


def _wait(child):
    """The child's exit status. Polled: Ray's cancel of a task is a simulated SIGINT (a flag, no signal), whose
    handler (hvae_repr.preemption) Python runs between bytecodes of the main thread, which a wait blocked in
    waitpid would only reach when the point had finished."""
    while child.poll() is None:
        time.sleep(0.2)
    return child.returncode


FAILURE_NOTES = {}  # workdir -> the line of a failure that could not be written to its error.txt


def _failed(run, line):
    point.record_failure(run, line)
    if not os.path.isfile(run.file(run.ERROR)):
        FAILURE_NOTES[run.path] = line
    return "failed"


def timed_job(job, node="local"):
    """run_job's status and the point's wall time in seconds."""
    started = time.time()
    status = run_job(job, node)
    return status, time.time() - started


def run_local(jobs, workers, on_finish=None):
    """Runs the jobs in `workers` processes at a time; returns their statuses in order.
    on_finish(job, status, seconds) is called as each one ends (in this thread; seconds None where unknown)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(timed_job, job): job for job in jobs}
        for future in concurrent.futures.as_completed(futures):
            if on_finish:
                on_finish(futures[future], *future.result())
        return [future.result()[0] for future in futures]


def attempts(job):
    """Where each attempt of this launch at the job ran: [{"node", "host", "pid"}], oldest first, from
    the attempt lines in RUN/sweep.log."""
    path = RunDir(job.workdir).file(RunDir.LOG)
    if not job.launch or not os.path.isfile(path):
        return []
    found = []
    with open(path, errors="replace") as f:
        for line in f:
            match = ATTEMPT.match(line.rstrip("\n"))
            if match and match.group(1) == job.launch:
                found.append({"node": match.group(2), "host": match.group(3), "pid": int(match.group(4))})
    return found


def resumed_from(job):
    """"resumed from its checkpoint after epoch N" when the job's last attempt in this launch resumed
    training (the trainer's "resuming ... after epoch N" line after that attempt's line), else ""."""
    path = RunDir(job.workdir).file(RunDir.LOG)
    if not job.launch or not os.path.isfile(path):
        return ""
    found = ""
    with open(path, errors="replace") as f:
        for line in f:
            match = ATTEMPT.match(line.rstrip("\n"))
            if match:
                found = ""  # only what the last attempt says counts
            resumed = re.match(r"^resuming .* after epoch (\d+) ", line)
            if resumed:
                found = f"resumed from its checkpoint after epoch {resumed.group(1)}"
    return found


def _ray_job(job):
    """A Ray task: timed_job on the node Ray chose, named by its node id. Ray cancels a running task with a
    simulated SIGINT in the worker's main thread (_thread.interrupt_main): recorded as a SIGTERM
    (hvae_repr.preemption), it stops the point as the local engine's forwarded SIGTERM does, whether it comes
    before the point starts (not_started), while it starts or while it trains. (One that comes before this
    block or after it ends the task in Ray's TaskCancelledError: see RayCluster.results.) A SIGTERM of the
    worker keeps Ray's handler: the worker exits and Ray runs the task again (RAY_MAX_RETRIES)."""
    import ray
    with cancel_as_sigterm():
        return timed_job(job, node=ray.get_runtime_context().get_node_id())


def cancel_as_sigterm():
    """The block of a Ray task: SIGINT (Ray's cancel) recorded as SIGTERM and forwarded to the point."""
    return preemption.deferred(forward_signal, record_as=signal.SIGTERM, signals=(signal.SIGINT,))


class RayCluster:
    """Ray for one launch: joins the cluster at `address` ("auto" or host:port), or with "" starts a
    local instance with this machine's cores; stops what it started on exit. ValueError (one line) when
    Ray is missing or a task asks for more CPUs than any live node has (it would wait forever)."""

    def __init__(self, address):
        self.address = address

    def __enter__(self):
        try:
            import ray
        except ImportError:
            raise ValueError("--engine=ray needs Ray: pip install -e \".[ray]\"") from None
        self.ray = ray
        self.started_here = not ray.is_initialized()
        if self.started_here:
            # ray.init puts in a SIGTERM handler of its own (exit at once); the launcher's (hvae_repr.preemption:
            # forward the signal to the points, let them checkpoint, then stop) is put back, and stays after.
            launchers = signal.getsignal(signal.SIGTERM)
            # "local": a new instance even when another Ray (a cluster started on this machine, RAY_ADDRESS)
            # is running; Ray's default (None) would join that one.
            ray.init(address=self.address or "local", num_cpus=None if self.address else machine.usable_cores(),
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
            if launchers is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, launchers)
        return self

    def __exit__(self, *exc):
        if self.started_here:
            self.ray.shutdown()

    def check_cpus(self, cpus):
        largest = max([n["Resources"].get("CPU", 0) for n in self.ray.nodes() if n["Alive"]] or [0])
        if cpus > largest:
            raise ValueError(f"each task asks for {cpus} CPUs (--threads) but the largest live node of the Ray "
                             f"cluster has {largest:g}; pass --threads={max(1, int(largest))} or fewer")

    def results(self, refs, on_error, on_result=None, on_cancel=None):
        """The result of each ref, in order; on_result(i, result) is called as each task ends. A task that
        failed for good (its retries spent) gives on_error(i, error) instead. Polled: after a SIGTERM or
        SIGINT of the launcher (hvae_repr.preemption) the tasks left are cancelled once (a running point is
        then sent SIGTERM and writes its checkpoint, _ray_job; Ray itself retries a cancel that found its
        task not yet running), and each that then ends in an error of Ray gives on_cancel(i)."""
        out, index, waiting, cancelled = {}, {ref: i for i, ref in enumerate(refs)}, list(refs), False
        while waiting:
            ready, waiting = self.ray.wait(waiting, num_returns=1, timeout=1.0)
            for ref in ready:
                i = index[ref]
                try:
                    out[i] = self.ray.get(ref)  # after a cancel: a point that stopped, or ended on its own
                except self.ray.exceptions.RayError as e:
                    out[i] = on_cancel(i) if cancelled else on_error(i, e)
                if on_result:
                    on_result(i, out[i])
            if waiting and on_cancel and not cancelled and preemption.received():
                cancelled = True
                for ref in waiting:
                    self.ray.cancel(ref)
        return [out[i] for i in range(len(refs))]


def run_ray(jobs, address, on_finish=None):
    """Runs each job as a Ray task asking for job.threads CPUs; returns their statuses in order
    (on_finish as in run_local).

    address: "" starts a local Ray instance with this machine's cores; "auto" or host:port joins a
    cluster (whose nodes need this package installed and the sweep's --root on a shared file system).
    A task lost with its node or worker is retried (RAY_MAX_RETRIES); one lost for good is "failed"."""
    with RayCluster(address) as cluster:
        cluster.check_cpus(max(job.threads for job in jobs))
        task = cluster.ray.remote(max_retries=RAY_MAX_RETRIES)(_ray_job)
        refs = [task.options(num_cpus=job.threads).remote(job) for job in jobs]

        def lost(i, error):
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            point.record_failure(RunDir(jobs[i].workdir), f"its Ray task was lost after {RAY_MAX_RETRIES} "
                                 f"retries: {first}", str(error))
            return "failed", None  # its wall time is not known: the task's own clock went with its node
        def cancelled(i):  # started in this launch (an attempt line): interrupted, else not started
            return ("interrupted" if not jobs[i].launch or attempts(jobs[i]) else "not_started"), None
        finished = (lambda i, result: on_finish(jobs[i], *result)) if on_finish else None
        return [status for status, _ in cluster.results(refs, lost, finished, cancelled)]


def _grid_task(model_run, points, root, options, threads):
    """A Ray task (in a fresh worker process: max_calls=1, since TensorFlow's thread settings are per
    process): evaluation.grid.evaluate_grid on a chunk of points with `threads` CPU threads; returns (its
    node's id, the outcome)."""
    import ray
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    from hvae_repr import trainer
    trainer.set_threads(threads)
    from evaluation import grid
    # The probes' worker processes share the chunk's cores (probe_jobs changes no number of the result).
    options = dataclasses.replace(options, probe_jobs=threads)
    return ray.get_runtime_context().get_node_id(), grid.evaluate_grid(model_run, points, root, options,
                                                                       log=lambda message: None)


def grid_chunks(points, slots):
    """The chunks a grid is evaluated in: the first POINTS_PER_PASS points alone (it trains and caches what
    every chunk shares, the reference classifier), then the rest in `slots` chunks run at once."""
    from evaluation.options import POINTS_PER_PASS
    first, rest = list(points[:POINTS_PER_PASS]), list(points[POINTS_PER_PASS:])
    size = -(-len(rest) // max(1, slots)) if rest else 1
    return [first] + [rest[i:i + size] for i in range(0, len(rest), size)]


def _merged(chunks, found, log):
    """One outcome from the chunks' (node, outcome) pairs; each stage's seconds summed over the chunks
    (CPU-side seconds, not wall time)."""
    outcome = {"done": [], "skipped": [], "busy": [], "failed": [], "seconds": {}}
    for chunk, (node, part) in zip(chunks, found):
        log(f"evaluated {len(part['done'])} of {len(chunk)} points on {node}")
        for key in ("done", "skipped", "busy", "failed"):
            outcome[key] += part.get(key, [])
        for key, seconds in part["seconds"].items():
            outcome["seconds"][key] = outcome["seconds"].get(key, 0.0) + seconds
    return outcome


def evaluate_grid_ray(model_run, points, root, options, address, threads, log=print):
    """evaluation.grid.evaluate_grid spread over a Ray cluster in chunks (grid_chunks: one per `threads`
    CPUs of the cluster), each a Ray task in a process of its own reading the shared model.
    A chunk lost with its node is retried and skips the points already written. Returns the merged outcome."""
    model_run, root = os.path.abspath(model_run), os.path.abspath(root)  # the workers' working folder differs
    with RayCluster(address) as cluster:
        cluster.check_cpus(threads)
        task = cluster.ray.remote(max_retries=RAY_MAX_RETRIES, max_calls=1)(_grid_task).options(num_cpus=threads)
        chunks = grid_chunks(points, max(1, int(cluster.ray.cluster_resources().get("CPU", 1) // threads)))
        found = [cluster.ray.get(task.remote(model_run, chunks[0], root, options, threads))]
        found += cluster.ray.get([task.remote(model_run, chunk, root, options, threads) for chunk in chunks[1:]])
    return _merged(chunks, [(f"node {node}", part) for node, part in found], log)
