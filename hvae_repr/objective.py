"""The HIT objective: distortion plus one weighted rate per latent layer.

    loss = mean over the batch of  D + sum_l beta_l R_l
    D    = -log p(x | z1)
    R_L  = KL[q(zL|x) || p(zL)],  R_l = KL[q(z_l|z_{>l},x) || p(z_l|z_{>l})]   (l < L)

All numbers are in nats per example. betas are listed from z1 up.
"""
from hvae_repr.tf_env import tf

ACTIVE_UNIT_THRESHOLD_NATS = 0.01  # a dimension is active when its mean KL exceeds this


def hit_loss(distortion, rates, betas):
    """Mean over the batch of D + sum_l beta_l R_l; all betas = 1 gives the negative ELBO.

    betas: one per layer, each a number or a [B] tensor of per-example betas (a conditional model)."""
    if len(rates) != len(betas):
        raise ValueError(f"got {len(betas)} betas for {len(rates)} latent layers; give one beta per layer, z1 first")
    weighted = distortion
    for beta, rate in zip(betas, rates):
        weighted = weighted + beta * rate
    return tf.reduce_mean(weighted)


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
