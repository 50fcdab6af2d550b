"""Shared fixtures. Tests never touch the network: downloads are switched off here."""
import contextlib
import os

os.environ["HVAE_REPR_OFFLINE"] = "1"

import pytest  # noqa: E402

import hvae_repr  # noqa: E402,F401  (sets TensorFlow's environment before any test imports it)

TINY_RUN_SETTINGS = dict(dataset="digits", latent_dims=(8, 4), hidden_units=64, epochs=2, batch_size=64,
                         kl_warmup_epochs=0, seed=0)


def train_config(**settings):
    """A TrainConfig from flat settings named like the training flags."""
    from hvae_repr import cli
    from hvae_repr.config import TrainConfig
    return cli.build(TrainConfig, **settings)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished two-layer mlp run on digits (2 epochs), shared by every test that needs a trained model."""
    from hvae_repr.train import train
    workdir = str(tmp_path_factory.mktemp("runs") / "tiny")
    train(train_config(workdir=workdir, **TINY_RUN_SETTINGS), verbose=False)
    return workdir


def entropy_estimate(log_prob, x):
    """Monte Carlo estimate of H[p] = -E_p[log p(x)] in nats from samples x ~ p: (estimate, standard error)."""
    import numpy as np
    neg_log_p = -np.asarray(log_prob(x), np.float64)
    return float(neg_log_p.mean()), float(neg_log_p.std(ddof=1) / np.sqrt(len(neg_log_p)))


def run_in_process(define, main, argv):
    """A command-line program (hvae_repr.cli.run's define and main) on fresh flags, in this process."""
    from absl import flags

    from hvae_repr import cli
    flag_values = flags.FlagValues()
    define(flag_values)
    cli._parse_flags(flag_values, list(argv))
    return main(flag_values)


@contextlib.contextmanager
def crash_after_epoch(monkeypatch, epoch):
    """Training raises KeyboardInterrupt right after writing `epoch`'s metrics line, before that epoch's
    checkpoint (the worst moment for a crash); the block must raise it. Writing is restored afterwards."""
    from hvae_repr import io_utils
    original = io_utils.append_jsonl

    def crash(path, line):
        original(path, line)
        if line["epoch"] == epoch:
            raise KeyboardInterrupt("simulated crash")
    monkeypatch.setattr(io_utils, "append_jsonl", crash)
    with pytest.raises(KeyboardInterrupt):
        yield
    monkeypatch.setattr(io_utils, "append_jsonl", original)


def pytest_collection_modifyitems(session, config, items):
    """Files with a slow test first, each group in collection order. pytest-xdist's --dist loadfile hands
    out files in this order (setup.cfg turns off its reordering by test count, which put the one-test
    tutorial and the Ray cluster's file last), so the long files start early and the short ones fill the
    end instead of a long file running alone while the other worker is idle."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
