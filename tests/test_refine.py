"""Refinement of a beta-conditional model at one point (hvae_repr.warm_start): the refined run starts from
the conditional model's weights, trains at the point's fixed betas, and reaches an objective there that is
not above the conditional model's."""
import dataclasses

import numpy as np
import pytest

from conftest import train_config
from hvae_repr import io_utils, passes, warm_start
from hvae_repr.runs import RunDir

CONDITIONAL = dict(dataset="binary_digits", latent_dims=(6, 3), hidden_units=32, batch_size=64, epochs=3,
                   learning_rate=1e-3, conditional_betas=True, checkpoint_every_secs=0)
POINT = (0.3, 3.0)


def objective(arrays, betas):
    return float(arrays.distortion.astype(np.float64).mean() + arrays.rates.astype(np.float64).mean(0) @ betas)


@pytest.fixture(scope="module")
def conditional_model(tmp_path_factory):
    from hvae_repr.train import train
    workdir = str(tmp_path_factory.mktemp("refine") / "model")
    train(train_config(workdir=workdir, **CONDITIONAL), verbose=False)
    return workdir


def test_a_refined_point_starts_from_the_conditional_model_and_is_not_worse_at_its_betas(conditional_model, tmp_path):
    from hvae_repr import trainer
    from hvae_repr.model import HierarchicalVAE
    from hvae_repr.train import train
    config = warm_start.refined(train_config(workdir=str(tmp_path / "point"), betas=POINT, **CONDITIONAL),
                                conditional_model, epochs=2)
    assert config.kl_warmup_epochs == 0 and config.fixed_condition and config.epochs == 2
    # The weights it starts from are the conditional model's.
    conditional, _ = RunDir(conditional_model).load_model()
    start = HierarchicalVAE(config.with_input_shape((8, 8, 1)).model).build_all()
    warm_start.restore(start, config)
    for a, b in zip(start.trainable_variables, conditional.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    result = train(config, verbose=False)
    x = trainer.runs_dataset(config).x_test
    before = objective(passes.dataset_pass(conditional, x, config.seed, views=False, betas=POINT), POINT)
    refined, _ = RunDir(config.workdir).load_model()
    after = objective(passes.dataset_pass(refined, x, config.seed, views=False, betas=POINT), POINT)
    test = result["test"]  # train_result.json's test pass is the same pass
    assert after == pytest.approx(test["distortion_nats"]["mean"] + sum(
        b * test["rate_nats"][f"z{l + 1}"]["mean"] for l, b in enumerate(POINT)), rel=1e-9)
    assert after <= before, (after, before)
    assert result["init_from"]["run"] == conditional_model and result["init_from"]["run_epochs"] == 3
    assert result["init_from"]["checkpoint"] == "ckpt-3" and result["epochs"] == 2
    saved = io_utils.read_json(RunDir(config.workdir).file(RunDir.CONFIG))
    assert saved["init_from"] == conditional_model and saved["fixed_condition"] is True


def test_a_start_that_cannot_initialise_the_run_is_refused_before_training(conditional_model, tmp_path):
    from hvae_repr import trainer
    wider = dataclasses.replace(train_config(workdir=str(tmp_path / "wider"), **dict(CONDITIONAL, hidden_units=48)),
                                init_from=conditional_model)
    with pytest.raises(ValueError, match="holds a model of other settings .*hidden_units: 32 there vs 48 now"):
        trainer.Trainer(wider, verbose=False).prepare()
    unfinished = dataclasses.replace(wider, init_from=str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="--init_from: .* is not a run folder"):
        trainer.Trainer(unfinished, verbose=False).prepare()
    assert not (tmp_path / "wider").exists()
    with pytest.raises(ValueError, match="--fixed_condition .* needs --conditional_betas"):
        train_config(dataset="digits", fixed_condition=True)
    with pytest.raises(ValueError, match="--balance_betas .* needs --conditional_betas and a discrete likelihood"):
        train_config(dataset="digits", balance_betas=True)
    with pytest.raises(ValueError, match="the gaussian likelihood's distortion is a density"):
        train_config(dataset="digits", likelihood="gaussian", conditional_betas=True, balance_betas=True)
    with pytest.raises(ValueError, match="--film_placement=before_activation places the FiLM of a beta-conditional"):
        train_config(dataset="digits", film_placement="before_activation")
