"""Sweeps on a real two-node Ray cluster started on this machine (`ray start --head`, `ray start
--address=...`, each node one CPU), as a cluster of two machines would run them: points spread over
both nodes, each runs once, results land in the shared root; a node lost mid-sweep has its running
point retried on the other node, where it resumes from its checkpoint; a point that fails for its own
reasons is not retried; the launcher's SIGTERM stops the running point at a step, with its checkpoint. The nodes are stopped by their process trees (never `ray stop`, which would
stop every Ray user of the machine), even when a test fails."""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from hvae_repr.runs import RunDir
from launch import engines

pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e \".[ray]\"")
if not sys.platform.startswith("linux"):
    pytest.skip("the cluster fixture finds the nodes' processes in /proc (Linux)", allow_module_level=True)

pytestmark = pytest.mark.slow  # a cluster's start-up and a process per point: minutes on 2 cores

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAY = os.path.join(os.path.dirname(sys.executable), "ray")
TINY = ["--dataset=binary_digits", "--latent_dims=4,2", "--hidden_units=16", "--batch_size=128",
        "--checkpoint_every_secs=0", "--images_every_epochs=0", "--threads=1", "--noevaluate", "--noexport"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children():
    """{pid: [child pids]} of every process, from /proc."""
    tree = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(name))
    return tree


def _tree(pid):
    """pid and all its descendants."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += tree.get(p, [])
    return out


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kill(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Cluster:
    """A head node and worker nodes, each a `ray start --block` process of its own (its Ray processes,
    their workers and the points they start all descend from it)."""

    def __init__(self):
        self.temp = tempfile.mkdtemp(prefix="hvae_ray_")  # short: Ray's socket paths must stay short
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes = []
        # The nodes import this checkout (what `pip install` gives every node of a real cluster); the head
        # declares a lost node dead after ~3 s instead of Ray's default ~30 s. Token authentication (Ray's
        # own advice), with a token of this cluster's: whatever ~/.ray holds does not matter, and no
        # other Ray user of the machine can join it. The sweeps run with the same environment.
        self.env = dict(os.environ, PYTHONPATH=REPO, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
                        RAY_health_check_period_ms="1000",
                        RAY_health_check_failure_threshold="3", RAY_health_check_initial_delay_ms="1000",
                        RAY_USAGE_STATS_ENABLED="0")

    def start_node(self, head=False):
        log = os.path.join(self.temp, f"node{len(self.nodes)}.log")
        common = ["--num-cpus=1", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                  f"--dashboard-agent-listen-port={_free_port()}", f"--metrics-export-port={_free_port()}"]
        where = ([f"--head", f"--port={self.port}", f"--temp-dir={self.temp}", "--include-dashboard=false",
                  f"--ray-client-server-port={_free_port()}"] if head else [f"--address={self.address}"])
        with open(log, "w") as out:
            proc = subprocess.Popen([RAY, "start", *where, *common], stdout=out, stderr=subprocess.STDOUT,
                                    env=self.env, cwd=self.temp, start_new_session=True)
        self.nodes.append(proc)
        deadline = time.time() + 120
        while time.time() < deadline:
            with open(log) as f:
                text = f.read()
            if "Ray runtime started" in text:
                return proc
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.3)
        raise RuntimeError(f"ray start did not come up within 120 s:\n{text[-3000:]}")

    def stop_node(self, proc):
        """Kills the node's whole process tree at once, as a machine going down would."""
        _kill(_tree(proc.pid))
        proc.wait(timeout=30)

    def stop(self):
        for proc in self.nodes:
            if proc.poll() is None:
                self.stop_node(proc)
        # Anything else of this cluster's session that outlived its node (its paths name the temp dir).
        _kill([int(p) for p in os.listdir("/proc") if p.isdigit() and self.temp in _cmdline(int(p))])
        shutil.rmtree(self.temp, ignore_errors=True)

    def points_on(self, proc):
        """The workdirs of the launch.point processes running on the node."""
        return [arg.split("=", 1)[1] for p in _tree(proc.pid) if "launch.point" in _cmdline(p)
                for arg in _cmdline(p).split() if arg.startswith("--workdir=")]


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    try:
        c.start_node(head=True)
        c.start_node()
        yield c
    finally:
        c.stop()


def _sweep(cluster, root, *argv):
    return subprocess.Popen([sys.executable, "-m", "launch.sweep", f"--root={root}", *TINY, "--engine=ray",
                             f"--ray_address={cluster.address}", *argv], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=cluster.env)


def _record(root):
    (name,) = [f for f in os.listdir(root) if f.startswith("sweep_") and f.endswith(".json")]
    with open(os.path.join(root, name)) as f:
        return json.load(f)


def _epochs(workdir):
    with open(RunDir(workdir).file(RunDir.METRICS)) as f:
        return [json.loads(line)["epoch"] for line in f]


def _broken_point(root, argv):
    """Makes the workdir of the sweep's point 1 fail for its own reasons (it holds somebody's file)."""
    plan = subprocess.run([sys.executable, "-m", "launch.sweep", f"--root={root}", *TINY, *argv, "--dry_run"],
                          cwd=REPO, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    broken = plan.stdout.splitlines()[1].split("\t")[0]
    os.makedirs(broken)
    with open(os.path.join(broken, "notes.txt"), "w") as f:
        f.write("mine")
    return broken


def test_a_sweep_spreads_its_points_over_both_nodes_runs_each_once_and_retries_no_bad_point(cluster, tmp_path):
    # Two points, one of them broken: each node's one CPU takes one of them at once.
    root, argv = tmp_path / "sweep", ["--betas_1=0.5,2", "--betas_2=1", "--epochs=1"]
    broken = _broken_point(root, argv)
    proc = _sweep(cluster, root, *argv)
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 1, out  # the broken point failed
    assert "running 2 (ray engine)" in out and "done 1, skipped (finished already) 0, busy (run by another " \
        "launcher) 0, failed 1" in out and "retried" not in out, out
    points = _record(root)["points"]
    (failed,) = points["failed"]
    assert failed["workdir"] == broken and len(failed["attempts"]) == 1  # its own failure: not retried
    assert "not empty but holds no config.json" in out
    done = points["done"]
    assert len(done) == 1 and all(len(p["attempts"]) == 1 for p in done), done  # each point ran once
    assert len({p["attempts"][0]["node"] for p in done + [failed]}) == 2, points  # on both nodes
    for p in done:  # trained into the shared root, once
        assert os.path.dirname(p["workdir"]) == str(root) and RunDir(p["workdir"]).is_trained
        assert _epochs(p["workdir"]) == [1]


def test_a_conditional_sweep_evaluates_its_grid_in_chunks_on_both_nodes(cluster, tmp_path):
    root = tmp_path / "sweep"
    argv = [a for a in TINY if a != "--noevaluate"] + [
        "--betas_1=0.5,1,2", "--betas_2=0.5,2", "--conditional", "--epochs=2",
        f"--eval_classifier_dir={tmp_path / 'classifiers'}", "--eval_num_generated=100", "--eval_generative_draws=200",
        "--eval_classifier_epochs=1", "--eval_classifier_min_steps=20", "--eval_probe_names=logistic_regression",
        "--eval_probe_jobs=1", "--eval_layers=top", "--noeval_figures"]
    proc = subprocess.run([sys.executable, "-m", "launch.sweep", f"--root={root}", *argv, "--engine=ray",
                           f"--ray_address={cluster.address}"], cwd=REPO, capture_output=True, text=True,
                          timeout=900, env=cluster.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "done 6, skipped (finished already) 0" in proc.stdout, proc.stdout
    chunks = [line.split() for line in proc.stdout.splitlines() if line.startswith("evaluated ") and " on node " in line]
    # The first chunk (4 points, one test pass) alone, then the other 2 in one chunk per node, at once.
    assert [int(c[1]) for c in chunks] == [4, 1, 1] and len({c[-1] for c in chunks[1:]}) == 2, proc.stdout
    points = [RunDir(root / f) for f in os.listdir(root) if f != "model" and os.path.isdir(root / f)]
    assert len(points) == 6 and all(p.is_evaluated and p.read_point()["model_run"] == str(root / "model")
                                    for p in points)


def test_a_sigterm_stops_the_sweep_and_its_running_point_writes_its_checkpoint(cluster, tmp_path):
    """The launcher's SIGTERM (hvae_repr.preemption, not ray.init's own handler) cancels the point's task; the
    task passes it on to the point, which stops at a step with a checkpoint; the summary says interrupted."""
    root = tmp_path / "sweep"
    # Far more epochs than the stop takes: at 200 (about 12 s of training here) a slow cancellation once let the
    # point finish before the signal reached it.
    proc = _sweep(cluster, root, "--betas_1=1", "--betas_2=1", "--epochs=5000")
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and not any(
                RunDir(root / f).checkpoints() for f in (os.listdir(root) if root.is_dir() else [])
                if (root / f).is_dir()):
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and "interrupted 1, not started 0" in out, out
    [workdir] = [root / f for f in os.listdir(root) if (root / f).is_dir()]
    run = RunDir(workdir)
    with open(run.file(RunDir.LOG)) as f:
        log = f.read()
    # "stopped in epoch E after step S", or "stopped after epoch E" when the signal came in an epoch's last step
    assert "interrupted by SIGTERM: stopped " in log and "checkpoint" in log and not run.is_trained, log[-2000:]
    assert _epochs(workdir)[-1] < 5000 and run.checkpoints()


def test_a_lost_node_has_its_running_point_resumed_on_the_other_node(cluster, tmp_path):
    """Runs last in this module: it leaves the cluster with its head node only."""
    root, epochs = tmp_path / "sweep", 20
    second = cluster.nodes[1]
    proc = _sweep(cluster, root, "--betas_1=0.5,2", "--betas_2=1", f"--epochs={epochs}")
    try:
        victim, deadline = None, time.time() + 300
        while victim is None and time.time() < deadline and proc.poll() is None:
            for workdir in cluster.points_on(second):  # the point training on the second node, checkpointed
                if RunDir(workdir).checkpoints():
                    victim = workdir
            time.sleep(0.1)
        assert victim is not None, "no point reached its first checkpoint on the second node"
        cluster.stop_node(second)
        out = proc.communicate(timeout=600)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "done 2, skipped (finished already) 0" in out, out
    done = {p["workdir"]: p for p in _record(root)["points"]["done"]}
    tries = done[victim]["attempts"]
    assert len(tries) == 2 and tries[0]["node"] != tries[1]["node"], tries  # retried on the other node
    assert f"{victim}: 2 attempts" in out and "resumed from its checkpoint after epoch" in out, out
    for workdir in done:  # none lost, none trained twice from scratch
        assert RunDir(workdir).is_trained and _epochs(workdir) == list(range(1, epochs + 1))
        with open(RunDir(workdir).file(RunDir.LOG)) as f:
            log = f.read()
        assert log.count(f"epoch 1/{epochs} ") == 1, log
    with open(RunDir(victim).file(RunDir.LOG)) as f:
        assert "resuming " in f.read()
