"""The HIT objective: distortion plus one weighted rate per latent layer.

    loss = mean over the batch of  D + sum_l beta_l R_l
    D    = -log p(x | z1)
    R_L  = KL[q(zL|x) || p(zL)],  R_l = KL[q(z_l|z_{>l},x) || p(z_l|z_{>l})]   (l < L)

All numbers are in nats per example. betas are listed from z1 up.
"""
from hvae_repr import conditioning
from hvae_repr.tf_env import tf

ACTIVE_UNIT_THRESHOLD_NATS = 0.01  # a dimension is active when its mean KL exceeds this


def example_objectives(distortion, rates, betas):
    """[B] D + sum_l beta_l R_l of every example.

    betas: one per layer, each a number or a [B] tensor of per-example betas (a conditional model)."""
    if len(rates) != len(betas):
        raise ValueError(f"got {len(betas)} betas for {len(rates)} latent layers; give one beta per layer, z1 first")
    weighted = distortion
    for beta, rate in zip(betas, rates):
        weighted = weighted + beta * rate
    return weighted


def hit_loss(distortion, rates, betas):
    """Mean over the batch of D + sum_l beta_l R_l; all betas = 1 gives the negative ELBO."""
    return tf.reduce_mean(example_objectives(distortion, rates, betas))


def count_active_units(mean_kl_per_dim):
    """How many dimensions have a mean KL (over a batch, an epoch or a test set) above the threshold."""
    return tf.reduce_sum(tf.cast(mean_kl_per_dim > ACTIVE_UNIT_THRESHOLD_NATS, tf.int32))


def summarize(terms, betas):
    """Batch means of every term, named by layer (z1 first), in nats; also the active units."""
    rates = [tf.reduce_mean(r) for r in terms["rates"]]
    distortion = tf.reduce_mean(terms["distortion"])
    out = {
        "loss": hit_loss(terms["distortion"], terms["rates"], betas),
        "distortion": distortion,
        "total_rate": tf.add_n(rates),
        "neg_elbo": distortion + tf.add_n(rates),
    }
    for l, (rate, per_dim) in enumerate(zip(rates, terms["kl_per_dim"])):
        mean_kl = tf.reduce_mean(per_dim, axis=0)
        out[f"rate_z{l + 1}"] = rate
        out[f"kl_per_dim_z{l + 1}"] = mean_kl
        out[f"active_units_z{l + 1}"] = count_active_units(mean_kl)
    return out


def training_objective(model, x, noise_seed, betas_seed, betas, temperature, fixed_betas=None, balance=None,
                       all_reduce=None):
    """(loss to differentiate, summarize's batch means) of one training batch x (call it under the tape).

    betas [L] weight the rates. A beta-conditional model instead draws every example's own betas from
    betas_seed (in its beta range, log-uniformly or tilted: hvae_repr.conditioning; `fixed_betas` [L] for every example
    with TrainConfig.fixed_condition), conditions its networks on them and weights each example's rates by
    them, times `betas` (the warm-up factor). With `balance` (a loss_balance.ObjectiveTable) each example's
    objective is divided by the running mean at its betas; the logged loss stays the plain mean.
    all_reduce: a sum across replicas, for the table (None: one device)."""
    condition, weights = None, betas
    if model.conditional:
        mc = model.model_config
        condition = conditioning.training_betas(x.shape[0], model.num_layers, mc.beta_range, betas_seed,
                                                fixed_betas, mc.beta_tilt)
        weights = condition * betas  # [B, L]: each example's rates weighted by its own betas
    terms = model.terms(x, noise_seed, training=True, temperature=temperature, betas=condition)
    weights = tf.unstack(weights, axis=-1)
    summary = summarize(terms, weights)
    if balance is None:
        return summary["loss"], summary
    per_example = example_objectives(terms["distortion"], terms["rates"], weights)
    return tf.reduce_mean(per_example * balance.weights(condition, per_example, all_reduce)), summary
