"""Training to target rates: the dual update on a model with a known answer, the checks of the flag, and the
T2 minimum rate. (Targeted training on digits: tests/test_rate_targets_training.py.)"""
import numpy as np
import pytest
from scipy import optimize

from conftest import train_config
from evaluation import bounds
from hvae_repr import rate_controller, rate_targets

# A linear Gaussian "VAE" per layer: a source with per-dimension variances s_i^2 coded with Gaussian noise and
# decoded with a Gaussian likelihood of variance SIGMA2. Minimizing E[D] + beta R gives reverse water-filling,
# so the optimal rate at each beta is known in closed form: R(beta) = sum_i max(0, log(s_i^2 / (beta SIGMA2)) / 2).
SIGMA2 = 0.01
VARIANCES = [np.array([4.0, 1.0, 0.5, 0.2, 0.1, 0.05]), np.array([2.0, 0.3])]  # z1, z2


def optimal_rate(beta, variances):
    return float(np.maximum(0.0, 0.5 * np.log(variances / (beta * SIGMA2))).sum())


def beta_for(rate, variances):
    """The beta whose optimal rate is `rate` (the known answer the dual ascent must find)."""
    return float(np.exp(optimize.brentq(lambda log_b: optimal_rate(np.exp(log_b), variances) - rate, -20, 20)))


def drive(controller, steps, noise=0.05, seed=0):
    """Feeds the controller each step's batch rates at its current betas (the optimal rates, with noise)."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        rates = [optimal_rate(b, v) for b, v in zip(controller.betas(), VARIANCES)]
        controller.update(np.array(rates) * (1 + noise * rng.standard_normal(2)))
    return controller


def test_dual_ascent_finds_the_betas_of_the_targets():
    targets = [6.0, 0.8]  # a 6-nat z1 and a sub-nat z2
    controller = drive(rate_controller.RateTargets(targets, (1.0, 1.0), (0.01, 100.0), step=0.02, decay=0.98), 1500)
    for beta, target, variances in zip(controller.betas(), targets, VARIANCES):
        assert beta == pytest.approx(beta_for(target, variances), rel=0.03)
        assert optimal_rate(beta, variances) == pytest.approx(target, abs=rate_targets.tolerance(target))
    assert not controller.steps_at_edge.numpy().any()


def test_a_fixed_layer_keeps_its_beta_and_averages_start_at_the_first_batch():
    controller = rate_controller.RateTargets([None, 1.0], (2.0, 1.0), (0.1, 10.0), step=0.01, decay=0.99)
    controller.update([5.0, 3.0])
    np.testing.assert_allclose(controller.rate_averages.numpy(), [5.0, 3.0])
    assert controller.betas()[0] == pytest.approx(2.0)
    assert controller.betas()[1] == pytest.approx(np.exp(0.01 * np.log(4.0 / 2.0)), rel=1e-6)  # log((3+1)/(1+1))
    before = controller.betas()
    controller.update([5.0, 3.0], adapt=False)  # the warm-up: averaged, not moved
    np.testing.assert_array_equal(controller.betas(), before)


def test_an_unreachable_target_pins_its_beta_and_is_reported():
    # z1 cannot reach 60 nats even at beta = 0.1 (its rate there is ~17); z2's 3 is reachable.
    controller = drive(rate_controller.RateTargets([60.0, 3.0], (1.0, 1.0), (0.1, 10.0), step=0.02, decay=0.98),
                       1000)
    rates = {f"z{l + 1}": {"mean": optimal_rate(b, v)} for l, (b, v) in enumerate(zip(controller.betas(), VARIANCES))}
    report = controller.report(rates, total_steps=1000)
    z1, z2 = report["layers"]["z1"], report["layers"]["z2"]
    assert z1["pinned"] == "low" and not z1["reached"] and z1["beta"] == pytest.approx(0.1)
    assert z2["pinned"] is None and z2["reached"] and not report["all_reached"]
    assert len(report["unreachable"]) == 1 and "\n" not in report["unreachable"][0]
    assert report["unreachable"][0].startswith("target R(z1) = 60 nats not reached: even at the smallest beta (0.1)")
    # Pinned only for a quarter of a longer run: not flagged as unreachable.
    assert controller.report(rates, total_steps=100000)["layers"]["z1"]["pinned"] is None


def test_a_target_missed_inside_the_beta_range_says_why():
    targets = [6.0, 0.8]
    controller = drive(rate_controller.RateTargets(targets, (1.0, 1.0), (0.01, 100.0), step=0.02, decay=0.98), 1500)
    # The training average met z1's target, but the test set's rate is 1 nat higher (a train/test gap).
    report = controller.report({"z1": {"mean": 7.0}, "z2": {"mean": 0.8}}, total_steps=1500)
    assert not report["all_reached"] and not report["unreachable"] and len(report["missed"]) == 1
    assert report["missed"][0].startswith("target R(z1) = 6 nats not reached on the test set (7 nats, beta ")
    assert "though the training batches' rate average met it" in report["missed"][0]
    result = rate_targets.add_to_result({"betas": {"z1": 1.0, "z2": 1.0}, "test": {"rate_nats": {
        "z1": {"mean": 7.0}, "z2": {"mean": 0.8}}}}, controller, 1500)
    assert result["target_rates_warning"] == report["missed"][0]
    assert f"warning: {report['missed'][0]}" in rate_targets.format_lines(result)
    # Ten steps from the start: the average is still far from the target.
    early = drive(rate_controller.RateTargets(targets, (1.0, 1.0), (0.01, 100.0), step=0.02, decay=0.98), 10)
    (line,) = early.report({"z1": {"mean": 20.0}, "z2": {"mean": 0.8}}, total_steps=1500)["missed"]
    assert line.endswith("train longer or raise --target_dual_step")


@pytest.mark.parametrize("targets,message", [
    (("5",), "--target_rates has 1 values but --latent_dims has 2 layers"),
    (("-1", "2"), "the target of z1 must be a finite rate >= 0"),
    (("nan", "2"), "the target of z1 must be a finite rate >= 0"),
    (("3", "inf"), "the target of z2 must be a finite rate >= 0"),
    (("-", "-"), "keeps every layer fixed"),
])
def test_bad_targets_are_one_line_errors(targets, message):
    with pytest.raises(ValueError, match=message):
        train_config(dataset="digits", latent_dims=(8, 4), target_rates=targets)


def test_targets_are_checked_against_the_model_and_name_the_run():
    with pytest.raises(ValueError, match="needs a model trained at fixed betas"):
        train_config(dataset="digits", latent_dims=(8, 4), target_rates=("5", "1"), conditional_betas=True)
    with pytest.raises(ValueError, match=r"starting beta of z2 \(20, from --betas\) lies outside --beta_range"):
        train_config(dataset="digits", latent_dims=(8, 4), target_rates=("5", "1"), betas=(1.0, 20.0))
    config = train_config(dataset="digits", latent_dims=(8, 4), target_rates=(" 5.0", "-"))
    assert config.target_rates == ("5", "-") and "_rates5-x_" in config.workdir
    plain = train_config(dataset="digits", latent_dims=(8, 4))
    # Without targets the dual ascent's settings do not enter the run's name (names of earlier runs stay).
    assert train_config(dataset="digits", latent_dims=(8, 4), target_dual_step=0.1).workdir == plain.workdir
    assert "target_rates" not in plain.result_settings()


def test_t2_minimum_rate_inverts_the_fano_bound():
    for prior in (np.full(10, 0.1), np.array([0.4, 0.3, 0.2, 0.1])):
        for accuracy in np.linspace(0.0, 1.0, 41):
            rate = float(bounds.minimum_information(accuracy, prior))
            assert rate >= 0
            # At the minimum rate the bound allows the accuracy ...
            assert bounds.fano_inverse(rate, prior) >= accuracy - 1e-9
            # ... and at any lower rate it does not.
            if rate > 1e-3:
                assert bounds.fano_inverse(rate - 1e-3, prior) < accuracy
    assert bounds.minimum_information(1.0, np.full(10, 0.1)) == pytest.approx(np.log(10))
    assert bounds.minimum_information(0.1, np.full(10, 0.1)) == 0.0
    with pytest.raises(ValueError, match=r"accuracy must lie in \[0, 1\]"):
        bounds.minimum_information(1.5, np.full(10, 0.1))


def test_advice_lists_the_best_points_and_turns_the_bounds_around(tmp_path):
    from evaluation import advise
    from test_aggregate import ENTROPY, PRIOR, make_grid
    make_grid(str(tmp_path))  # fabricated 3x3 grid: probe best at (10, 0.1), PSNR at (0.1, 0.1), score at (1, 1)
    classify = advise.advise(advise.AdviseCommand(root=str(tmp_path), task="classification", accuracy=0.5))
    assert classify["best"][0]["betas"] == {"z1": 10.0, "z2": 0.1} and classify["num_points"] == 8
    minimum = classify["bounds"]["t2"]["minimum_top_rate_nats"]
    assert minimum == pytest.approx(float(bounds.minimum_information(0.5, PRIOR)))
    assert "below R(z_L) = " in advise.format_advice(classify)
    rebuild = advise.advise(advise.AdviseCommand(root=str(tmp_path), task="reconstruction", distortion=80.0))
    assert rebuild["best"][0]["betas"] == {"z1": 0.1, "z2": 0.1}
    t1 = rebuild["bounds"]["t1"]
    assert t1["minimum_total_rate_nats"] == pytest.approx(ENTROPY - 80.0) and t1["points_reaching_it"] >= 1
    generate = advise.advise(advise.AdviseCommand(root=str(tmp_path), task="generation"))
    assert generate["best"][0]["betas"] == {"z1": 1.0, "z2": 1.0} and generate["best"][0]["distance_from_beta_1"] == 0
    with pytest.raises(ValueError, match="--accuracy must lie in"):
        advise.advise(advise.AdviseCommand(root=str(tmp_path), accuracy=2.0))
