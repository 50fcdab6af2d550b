"""Where a sweep's points run: processes on this machine (local) or Ray tasks (ray).

Both engines run the same job function: one `python -m launch.point ...` process per point (each
point needs a process of its own, since TensorFlow's thread settings are per process), with its
output appended to RUN/sweep.log.
"""
import concurrent.futures
import os
import subprocess
import sys
import time
from typing import NamedTuple

from launch import point
from hvae_repr.runs import RunDir

STATUS = {point.EXIT_DONE: "done", point.EXIT_FINISHED: "skipped", point.EXIT_BUSY: "busy",
          point.EXIT_FAILED: "failed"}


class Job(NamedTuple):
    index: int
    workdir: str      # absolute
    argv: tuple       # launch.point's flags
    threads: int      # CPU threads of the point's process
    betas: tuple = ()  # the grid point


def command(job):
    return [sys.executable, "-m", "launch.point", *job.argv]


def run_job(job):
    """Runs one point in a process of its own; returns its status: done, skipped, busy or failed."""
    run = RunDir(job.workdir)
    os.makedirs(run.path, exist_ok=True)
    threads = str(job.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    with open(run.file(run.LOG), "a") as log:
        code = subprocess.run(command(job), stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    if code not in STATUS:  # killed, or crashed before it could write error.txt
        point.record_failure(run, f"the point's process ended with exit status {code}; see {run.file(run.LOG)}")
        return "failed"
    return STATUS[code]


def timed_job(job):
    """run_job's status and the point's wall time in seconds."""
    started = time.time()
    status = run_job(job)
    return status, time.time() - started


def run_local(jobs, workers, on_finish=None):
    """Runs the jobs in `workers` processes at a time; returns their statuses in order.
    on_finish(job, status, seconds) is called as each one ends (in this thread)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(timed_job, job): job for job in jobs}
        for future in concurrent.futures.as_completed(futures):
            if on_finish:
                on_finish(futures[future], *future.result())
        return [future.result()[0] for future in futures]


def run_ray(jobs, address, on_finish=None):
    """Runs each job as a Ray task asking for job.threads CPUs; returns their statuses in order
    (on_finish as in run_local).

    address: "" starts a local Ray instance with this machine's cores; "auto" or host:port joins a
    cluster (whose nodes need this package installed and the sweep's --root on a shared file system)."""
    try:
        import ray
    except ImportError:
        raise ValueError("--engine=ray needs Ray: pip install -e \".[ray]\"") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address or None, num_cpus=None if address else os.cpu_count(),
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        task = ray.remote(timed_job)
        refs = [task.options(num_cpus=job.threads).remote(job) for job in jobs]
        waiting, job_of = list(refs), dict(zip(refs, jobs))
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            if on_finish:
                on_finish(job_of[ready[0]], *ray.get(ready[0]))
        return [status for status, _ in ray.get(refs)]
    finally:
        if started_here:
            ray.shutdown()
