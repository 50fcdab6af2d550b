"""Beta-conditional models: per-example beta weighting, FiLM, the rates follow the betas given at
evaluation, deterministic evaluation, one pass for several points, and the export with betas."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import crash_after_epoch, train_config
from hvae_repr import choices, conditioning, objective, passes
from hvae_repr.runs import RunDir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_each_examples_rates_are_weighted_by_its_own_betas():
    rng = np.random.default_rng(0)
    distortion, rates, betas = rng.random(5) * 10, [rng.random(5), rng.random(5)], rng.random((5, 2)) * 3
    loss = objective.hit_loss(tf.constant(distortion), [tf.constant(r) for r in rates],
                              tf.unstack(tf.constant(betas), axis=-1))
    by_hand = np.mean([distortion[b] + betas[b, 0] * rates[0][b] + betas[b, 1] * rates[1][b] for b in range(5)])
    assert float(loss) == pytest.approx(by_hand, rel=1e-12)


def test_betas_are_drawn_log_uniformly_in_the_range():
    betas = conditioning.sample_betas(20000, 2, (0.1, 10.0), tf.constant([1, 2])).numpy()
    assert betas.shape == (20000, 2) and betas.min() >= 0.1 and betas.max() <= 10.0
    logs = np.log10(betas)  # uniform on [-1, 1]: mean 0, variance 1/3, the two layers independent
    assert np.all(np.abs(logs.mean(0)) < 0.02) and np.all(np.abs(logs.var(0) - 1 / 3) < 0.02)
    assert abs(np.corrcoef(logs.T)[0, 1]) < 0.03
    assert np.allclose(conditioning.normalized_log_betas([0.1, 1.0, 10.0], (0.1, 10.0)), [-1, 0, 1], atol=1e-6)


def test_a_tilt_draws_the_betas_with_density_proportional_to_exp_of_tilt_times_the_normalized_log_beta():
    a = 1.0
    betas = conditioning.sample_betas(40000, 2, (0.1, 10.0), tf.constant([3, 4]), tilt=a).numpy()
    assert betas.min() >= 0.1 and betas.max() <= 10.0
    u = np.log10(betas)  # normalized log beta in [-1, 1]
    counts, edges = np.histogram(u, bins=4, range=(-1, 1))
    expected = np.diff(np.exp(a * edges)) / (np.exp(a) - np.exp(-a))  # the density's mass per bin
    assert np.allclose(counts / counts.sum(), expected, atol=0.01)  # (0.10, 0.17, 0.28, 0.46)
    assert abs(np.corrcoef(u.T)[0, 1]) < 0.03
    with pytest.raises(ValueError, match="--beta_tilt=0.5 .* needs --conditional_betas"):
        train_config(dataset="digits", beta_tilt=0.5)


def test_loss_balance_weighs_each_example_by_the_inverse_running_mean_objective_of_its_cell():
    from hvae_repr import loss_balance
    table = loss_balance.ObjectiveTable(2, (0.1, 10.0))
    cells = loss_balance.CELLS
    # The corner cells (0, 0) and (last, last), and outside the range: the edge cells.
    betas = tf.constant([[0.1, 0.1], [0.1001, 0.1], [10.0, 10.0], [0.01, 100.0]])
    corner = cells * cells - 1
    np.testing.assert_array_equal(table.cells(betas).numpy(), [0, 0, corner, cells * (cells - 1)])
    losses = tf.constant([20.0, 40.0, 200.0, 90.0])
    weights = table.weights(betas, losses).numpy()
    means = table.means.numpy()
    assert means[0] == 30 and means[corner] == 200 and means[cells * (cells - 1)] == 90
    assert np.count_nonzero(means) == 3  # the cells no example reached stay empty
    inverse = np.array([1 / 30, 1 / 30, 1 / 200, 1 / 90])
    np.testing.assert_allclose(weights, inverse / np.mean([1 / 30, 1 / 200, 1 / 90]), rtol=1e-6)
    # A second batch moves a cell's mean by 1 - MOMENTUM of the way to the batch's mean.
    table.weights(betas[:1], tf.constant([130.0]))
    assert table.means.numpy()[0] == pytest.approx(30 + (1 - loss_balance.MOMENTUM) * 100, rel=1e-6)
    # Summed across two replicas holding the same examples: the same means as one device.
    twin = loss_balance.ObjectiveTable(2, (0.1, 10.0))
    twin.weights(betas, losses, all_reduce=lambda t: 2 * t)
    np.testing.assert_allclose(twin.means.numpy(), means, rtol=1e-6)


def test_film_before_the_activation_modulates_the_pre_activation_and_then_applies_the_relu():
    import keras
    x = tf.constant([[1.0, -2.0], [0.5, 3.0]])
    params = [tf.constant([[1.0, -0.5, 0.0, -2.0, 1.0, 0.5], [0.0, 0.0, -1.0, 0.0, 0.0, 0.0]])]
    outputs = {}
    for placement in choices.FILM_PLACEMENTS:
        dense = keras.layers.Dense(3, activation="relu", kernel_initializer="ones", bias_initializer="zeros")
        outputs[placement] = conditioning.Modulated(dense, conditioning.Sites(placement))(x, params).numpy()
    gamma, delta = params[0].numpy()[:, :3], params[0].numpy()[:, 3:]
    pre = x.numpy().sum(1, keepdims=True) * np.ones((1, 3))  # W = ones, b = 0: [-1, 3.5] on every unit
    np.testing.assert_allclose(outputs["after_activation"], np.maximum(pre, 0) * (1 + gamma) + delta, rtol=1e-6)
    np.testing.assert_allclose(outputs["before_activation"], np.maximum(pre * (1 + gamma) + delta, 0), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown FiLM placement 'inside'"):
        conditioning.Sites("inside")


def test_film_scales_and_shifts_each_channel_and_starts_as_the_identity():
    h = tf.random.stateless_normal((2, 4, 4, 3), seed=[1, 1])
    gamma, delta = np.array([[0.5, -1.0, 0.0], [2.0, 0.0, 1.0]]), np.array([[1.0, 0.0, -2.0], [0.0, 3.0, 0.0]])
    params = tf.constant(np.concatenate([gamma, delta], 1), tf.float32)
    expected = h.numpy() * (1 + gamma[:, None, None, :]) + delta[:, None, None, :]
    np.testing.assert_allclose(conditioning.film(h, params).numpy(), expected, rtol=1e-6)
    sites = conditioning.Sites()
    sites.add(3), sites.add(5)
    embedding = conditioning.BetaEmbedding((0.1, 10.0), sites)
    first, second = embedding(tf.constant([[0.3, 3.0], [1.0, 1.0]]))
    assert first.shape == (2, 6) and second.shape == (2, 10)
    np.testing.assert_array_equal(conditioning.film(h, first).numpy(), h.numpy())  # zeros at the start


@pytest.mark.slow
def test_training_a_conditional_model_twice_gives_the_same_weights():
    # The FiLM sites' gradients meet in one concatenation, so no summation order can differ between runs.
    import keras
    from hvae_repr import trainer
    from hvae_repr.model import HierarchicalVAE
    config = train_config(dataset="binary_digits", latent_dims=(6, 3), hidden_units=32, conditional_betas=True,
                          workdir="unused").with_input_shape((8, 8, 1))
    x = np.random.default_rng(0).random((64, 8, 8, 1), dtype=np.float32).round()
    weights = []
    for _ in range(2):
        keras.utils.set_random_seed(0)
        model = HierarchicalVAE(config.model).build_all()
        optimizer = keras.optimizers.Adam(1e-3)
        optimizer.build(model.trainable_variables)
        step = trainer.make_train_step(model, optimizer, 64, (8, 8, 1))
        for i in range(3):
            step(x, tf.constant(0), tf.constant(i), np.ones(2, np.float32), tf.constant(1.0))
        weights.append([v.numpy() for v in model.trainable_variables])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    from hvae_repr.train import train
    workdir = str(tmp_path_factory.mktemp("conditional") / "run")
    train(train_config(workdir=workdir, dataset="binary_digits", latent_dims=(8, 4), hidden_units=64, batch_size=64,
                       epochs=40, conditional_betas=True), verbose=False)
    return workdir


def _rates(model, x, betas, seed=0):
    return passes.dataset_pass(model, x, seed, views=False, betas=betas).rates.mean(0)


@pytest.mark.slow
def test_raising_one_layers_beta_at_evaluation_lowers_that_layers_rate(conditional_run):
    model, config = RunDir(conditional_run).load_model()
    assert config.model.conditional_betas and model.conditional
    from hvae_repr.trainer import runs_dataset
    x = runs_dataset(config).x_test
    z1_low, z1_high = _rates(model, x, (0.2, 1.0)), _rates(model, x, (5.0, 1.0))
    z2_low, z2_high = _rates(model, x, (1.0, 0.2)), _rates(model, x, (1.0, 5.0))
    assert z1_high[0] < z1_low[0] and z2_high[1] < z2_low[1], (z1_low, z1_high, z2_low, z2_high)


@pytest.mark.slow
def test_evaluation_at_a_beta_is_deterministic_and_independent_of_the_grouping(conditional_run):
    model, config = RunDir(conditional_run).load_model()
    from hvae_repr.trainer import runs_dataset
    x = runs_dataset(config).x_test[:200]
    points = [(0.3, 3.0), (3.0, 0.3), (1.0, 1.0)]
    single = [passes.dataset_pass(model, x, 7, batch_size=64, betas=b) for b in points]
    grouped = passes.dataset_passes(model, x, 7, points, batch_size=64)
    again = passes.dataset_pass(model, x, 7, batch_size=64, betas=points[0])
    for a, b in zip(single, grouped):
        np.testing.assert_allclose(a.rates, b.rates, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.layers["z2"].sample, b.layers["z2"].sample, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(again.rates, single[0].rates)
    assert not np.allclose(single[0].rates, single[1].rates)  # the betas reach the model


def test_prior_samples_take_each_calls_betas_from_one_traced_function(conditional_run):
    from evaluation import stages
    model, _ = RunDir(conditional_run).load_model()
    first = stages.prior_samples(model, 12, 5, 3, (0.3, 3.0))
    other = stages.prior_samples(model, 12, 5, 3, (3.0, 0.3))
    np.testing.assert_array_equal(stages.prior_samples(model, 12, 5, 3, (0.3, 3.0)), first)
    assert not np.allclose(first, other)
    from hvae_repr import seeds
    direct = model.sample(5, seeds.derive(3, "prior_samples", 0), (3.0, 0.3)).numpy()
    np.testing.assert_allclose(other[:5], direct, atol=1e-5)


def test_an_ordinary_run_refuses_other_betas(tiny_run):
    from evaluation import evaluate as ev
    with pytest.raises(ValueError, match="is not beta-conditional"):
        ev.resolved(ev.EvalOptions(betas=(3.0, 1.0)), RunDir(tiny_run).read_config())


FRESH_PROCESS = """
import json, sys
import numpy as np
import tensorflow as tf
saved = tf.saved_model.load(sys.argv[1])
x = tf.constant(np.load(sys.argv[2]))
out = {}
for betas in ([0.3, 3.0], [3.0, 0.3]):
    b = tf.constant(betas, tf.float32)
    key = ",".join(map(str, betas))
    out[key] = {"z2_mean": saved.encode(x, b)["z2_mean"].numpy().tolist(),
                "x_mean": saved.reconstruct(x, b)["x_mean"].numpy().tolist(),
                "sample": saved.sample(tf.constant(2), tf.constant([0, 1]), b)["x_mean"].numpy().tolist()}
assert "hvae_repr" not in sys.modules
print(json.dumps(out))
"""


@pytest.mark.slow
def test_export_takes_the_betas_and_round_trips_through_a_fresh_process(conditional_run, tmp_path):
    from hvae_repr import load_encoder
    run = RunDir(conditional_run)
    meta = json.load(open(os.path.join(run.file(run.EXPORT), run.EXPORT_META)))
    assert meta["conditional"] is True and meta["beta_range"] == [0.1, 10.0]
    model, config = run.load_model()
    from hvae_repr.trainer import runs_dataset
    x = runs_dataset(config).x_test[:6]
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS, run.file(run.EXPORT), str(tmp_path / "x.npy")],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for key, betas in (("0.3,3.0", (0.3, 3.0)), ("3.0,0.3", (3.0, 0.3))):
        np.testing.assert_allclose(got[key]["z2_mean"], model.encode(x, betas)["z2"][0].numpy(), atol=1e-5)
        np.testing.assert_allclose(got[key]["x_mean"], model.reconstruct(x, betas).numpy(), atol=1e-5)
        np.testing.assert_allclose(got[key]["sample"], model.sample(2, tf.constant([0, 1]), betas).numpy(), atol=1e-5)
    assert not np.allclose(got["0.3,3.0"]["z2_mean"], got["3.0,0.3"]["z2_mean"])
    # load_encoder takes the betas too (a grid point's folder names them in point.json).
    encoder = load_encoder(conditional_run, betas=(0.3, 3.0))
    np.testing.assert_allclose(encoder.features(x), got["0.3,3.0"]["z2_mean"], atol=1e-5)
    point = RunDir(str(tmp_path / "point"))
    point.write_point(conditional_run, (3.0, 0.3))
    np.testing.assert_allclose(load_encoder(point.path).features(x), got["3.0,0.3"]["z2_mean"], atol=1e-5)


@pytest.mark.slow
def test_an_interrupted_conditional_run_with_loss_balance_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    # The crash comes before the last epoch's checkpoint: the rerun retrains it from the checkpointed
    # weights, optimizer and objective table (--balance_betas), and must meet the uninterrupted run.
    from hvae_repr.train import train
    settings = dict(dataset="binary_digits", latent_dims=(6, 3), hidden_units=32, batch_size=128, epochs=3,
                    conditional_betas=True, balance_betas=True, checkpoint_every_secs=0)
    whole = train(train_config(workdir=str(tmp_path / "whole"), **settings), verbose=False)
    with crash_after_epoch(monkeypatch, 3):
        train(train_config(workdir=str(tmp_path / "cut"), **settings), verbose=False)
    assert train(train_config(workdir=str(tmp_path / "cut"), **settings), verbose=False)["test"] == whole["test"]


def test_the_target_search_returns_betas_whose_rates_match_the_request(conditional_run, capsys):
    from evaluation import target
    from hvae_repr import rate_targets
    from hvae_repr.trainer import runs_dataset
    model, config = RunDir(conditional_run).load_model()
    x = runs_dataset(config).x_test
    wanted = _rates(model, x, (0.5, 2.0), seed=config.seed)  # rates the model reaches inside its range
    command = target.TargetCommand(workdir=conditional_run, rates=tuple(f"{r:.4f}" for r in wanted), subset=200)
    result = target.find_betas(command, log=lambda line: None)
    assert result["all_reached"] and not result["out_of_range"], result["layers"]
    betas = tuple(result["betas"][k] for k in ("z1", "z2"))
    evaluated = _rates(model, x, betas, seed=config.seed)  # evaluated again, on its own
    for got, want in zip(evaluated, wanted):
        assert abs(got - want) <= rate_targets.tolerance(want)
    assert "--target_rates=" in result["train_command"] and "--conditional_betas" not in result["train_command"]
    # A rate beyond what the range reaches is reported as out of range.
    far = target.find_betas(target.TargetCommand(workdir=conditional_run, rates=("1000", "-"), subset=200),
                            log=lambda line: None)
    assert not far["all_reached"] and far["layers"]["z1"]["at_edge"] == "low" and len(far["out_of_range"]) == 1
    assert far["layers"]["z2"]["beta"] == config.betas[1]
    assert "out of range: target R(z1) = 1000 nats not reached" in target.format_result(far)
