"""The hierarchical VAE: generative model p(zL) ... p(z1|z2) p(x|z1) and
generalized top-down inference q(zL|x) ... q(z1|z2,x), every factor a TFP distribution.

Layer index 0 in every list is z1 (next to the data); the last is the top layer zL.
"""
from typing import NamedTuple

from hvae_repr.tf_env import tf

import keras
import tensorflow_probability as tfp

from hvae_repr import conditioning, likelihoods, networks

tfd = tfp.distributions

class LayerPosterior(NamedTuple):
    q: tfd.Distribution   # q(z_l | z_{l+1}, x), batch [B], event [d_l]
    p: tfd.Distribution   # p(z_l | z_{l+1}) (or p(zL)), same shapes
    z: tf.Tensor          # [B, d_l], the value handed to the layer below


def gaussian(loc, scale):
    return tfd.Independent(tfd.Normal(loc=loc, scale=scale), reinterpreted_batch_ndims=1)


def ladder_merge(estimate, prior):
    """Precision-weighted merge of a bottom-up estimate N(mu_hat, var_hat) with the prior N(mu_p, var_p)."""
    var_hat, var_p = tf.square(estimate.distribution.scale), tf.square(prior.distribution.scale)
    mu_hat, mu_p = estimate.distribution.loc, prior.distribution.loc
    var = var_hat * var_p / (var_hat + var_p)
    mean = (mu_hat * var_p + mu_p * var_hat) / (var_hat + var_p)
    return gaussian(mean, tf.sqrt(var))


class HierarchicalVAE(keras.Model):
    """A hierarchical VAE with L >= 1 latent layers (see hvae_repr.config.ModelConfig; its
    input_shape must be set).

    Every method takes `betas`: ignored by an ordinary model, required by a beta-conditional one
    (ModelConfig.conditional_betas), whose networks all see them: [L] for the whole batch or [B, L]
    per example, z1 first."""

    def __init__(self, model_config, **kwargs):
        super().__init__(name="hierarchical_vae", **kwargs)
        if not model_config.input_shape:
            raise ValueError("the ModelConfig has no input_shape; set it from the data set first")
        self.model_config = model_config
        nets = networks.build_networks(model_config)
        self.bottom_up = nets.bottom_up
        self.bottom_up_input = list(nets.bottom_up_input)
        self.posterior_nets = nets.posterior
        self.prior_nets = [p for p in nets.prior if p is not None]  # prior_nets[l] gives p(z_l | z_{l+1})
        self.decoder = nets.decoder
        # tf.train.Checkpoint does not see layers inside Keras-tracked lists: name each one as an attribute.
        for l, name in enumerate(self.latent_names):
            setattr(self, f"bottom_up_{name}", self.bottom_up[l])
            setattr(self, f"posterior_{name}", self.posterior_nets[l])
            if l < len(self.prior_nets):
                setattr(self, f"prior_{name}", self.prior_nets[l])
        self.likelihood = likelihoods.make_likelihood(model_config)
        self.conditional = model_config.conditional_betas
        if self.conditional:
            self.beta_embedding = conditioning.BetaEmbedding(model_config.beta_range, nets.film_sites,
                                                             name="beta_embedding")

    def _embedding(self, betas, batch):
        """The FiLM parameters of every site, from the betas (None for an ordinary model)."""
        if not self.conditional:
            return None
        if betas is None:
            raise ValueError("this model is beta-conditional: pass betas, one per layer, z1 first")
        betas = tf.convert_to_tensor(betas, tf.float32)
        if betas.shape.rank == 1:
            betas = tf.broadcast_to(betas[None], tf.stack([batch, self.num_layers]))
        return self.beta_embedding(betas)

    @property
    def num_layers(self):
        return self.model_config.num_layers

    @property
    def latent_names(self):
        return [f"z{l + 1}" for l in range(self.num_layers)]

    @property
    def categorical_top(self):
        return self.model_config.top_latent == "categorical"

    def build_all(self):
        """Creates every variable (Keras builds lazily) with one call on a dummy batch."""
        x = tf.zeros((1,) + self.model_config.input_shape)
        betas = tf.ones(self.num_layers)
        self.terms(x, seed=tf.constant([0, 0], tf.int32), betas=betas)
        self.sample(1, seed=tf.constant([0, 0], tf.int32), betas=betas)
        return self

    # ---------------------------------------------------------------- factors
    def _top_prior(self, batch):
        d = self.model_config.latent_dims[-1]
        if self.categorical_top:
            return tfd.OneHotCategorical(logits=tf.zeros((batch, d)), dtype=tf.float32)
        return gaussian(tf.zeros((batch, d)), tf.ones((batch, d)))

    def _conditional_prior(self, l, z_above, embedding):
        return gaussian(*self.prior_nets[l](z_above, embedding))

    def _draw(self, dist, seed, use_mean):
        return dist.mean() if use_mean else dist.sample(seed=seed)

    def bottom_up_features(self, x, betas=None):
        """The deterministic bottom-up features of every layer (what `posteriors` starts from)."""
        x = tf.convert_to_tensor(x, tf.float32)
        embedding = self._embedding(betas, tf.shape(x)[0])
        features = []
        for net, source in zip(self.bottom_up, self.bottom_up_input):
            features.append(net(x if source < 0 else features[source], embedding))
        return features

    def posteriors(self, x, seed=None, use_mean=False, temperature=None, betas=None, from_prior=(), features=None):
        """Top-down inference. Returns one LayerPosterior per layer, z1 first.

        use_mean: pass each layer's posterior mean (the mode for a categorical
        top) to the layer below instead of a sample. temperature: Gumbel-softmax
        temperature of a categorical top in training; None gives hard one-hot samples.
        from_prior: indices of layers whose z is drawn from p(z_l | z_{l+1}) instead (the
        layers below then infer from it), to show what a layer encodes. features:
        bottom_up_features(x, betas) when already computed (the evaluation's sampled and
        mean passes share them).
        """
        x = tf.convert_to_tensor(x, tf.float32)
        batch = tf.shape(x)[0]
        embedding = self._embedding(betas, batch)
        if features is None:
            features = self.bottom_up_features(x, betas)
        num = self.num_layers
        seeds = tfp.random.split_seed(seed, n=num) if seed is not None else [None] * num
        result = [None] * num
        z_above = None
        for l in reversed(range(num)):
            top = l == num - 1
            params = self.posterior_nets[l](features[l], z_above, embedding)
            p = self._top_prior(batch) if top else self._conditional_prior(l, z_above, embedding)
            if top and self.categorical_top:
                q = tfd.OneHotCategorical(logits=params, dtype=tf.float32)
                if use_mean:
                    z = tf.one_hot(tf.argmax(params, axis=-1), tf.shape(params)[-1])
                elif temperature is not None:
                    z = tfd.RelaxedOneHotCategorical(temperature, logits=params).sample(seed=seeds[l])
                else:
                    z = q.sample(seed=seeds[l])
            else:
                q = gaussian(*params)
                if self.model_config.inference == "ladder" and not top:
                    q = ladder_merge(q, p)
                z = self._draw(q, seeds[l], use_mean)
            if l in from_prior:
                z = p.sample(seed=seeds[l])
            result[l] = LayerPosterior(q, p, z)
            z_above = z
        return result

    def likelihood_distribution(self, z1, betas=None):
        return self.likelihood.distribution(self.decoder(z1, self._embedding(betas, tf.shape(z1)[0])))

    # ------------------------------------------------------------- objective
    def terms(self, x, seed, training=False, temperature=None, betas=None):
        """Per-example distortion and per-layer rates (nats), from one sample of every layer."""
        x = tf.convert_to_tensor(x, tf.float32)
        layers = self.posteriors(x, seed=seed, temperature=temperature if training else None, betas=betas)
        return self.terms_from_layers(x, layers, betas)

    def terms_from_layers(self, x, layers, betas=None):
        """`terms` for posteriors already drawn by `posteriors(x, ..., betas=betas)`."""
        log_px = self.likelihood_distribution(layers[0].z, betas).log_prob(self.likelihood.event(x))
        rates, kl_per_dim = [], []
        for post in layers:
            if isinstance(post.q, tfd.OneHotCategorical):
                kl = tfd.kl_divergence(post.q, post.p)
                per_dim = kl[:, None]
            else:
                per_dim = tfd.kl_divergence(post.q.distribution, post.p.distribution)
                kl = tf.reduce_sum(per_dim, axis=-1)
            rates.append(kl)
            kl_per_dim.append(per_dim)
        return {"distortion": -log_px, "rates": rates, "kl_per_dim": kl_per_dim}

    def log_importance_weights(self, x, num_samples, seed, betas=None):
        """log p(x, z) - log q(z | x) for `num_samples` draws z ~ q(z | x); shape [num_samples, B]."""
        x = tf.convert_to_tensor(x, tf.float32)
        batch = tf.shape(x)[0]
        x_rep = tf.tile(x, tf.concat([[num_samples], tf.ones(tf.rank(x) - 1, tf.int32)], 0))
        if betas is not None and tf.convert_to_tensor(betas).shape.rank == 2:
            betas = tf.tile(betas, [num_samples, 1])
        layers = self.posteriors(x_rep, seed=seed, betas=betas)
        log_w = self.likelihood_distribution(layers[0].z, betas).log_prob(self.likelihood.event(x_rep))
        for post in layers:
            log_w += post.p.log_prob(post.z) - post.q.log_prob(post.z)
        return tf.reshape(log_w, (num_samples, batch))

    # ------------------------------------------------------------ user views
    def encode(self, x, betas=None):
        """Posterior mean and standard deviation per layer, computed top-down with the means of the layers above."""
        out = {}
        for name, post in zip(self.latent_names, self.posteriors(x, use_mean=True, betas=betas)):
            mean = post.q.mean()
            std = tf.sqrt(mean * (1.0 - mean)) if isinstance(post.q, tfd.OneHotCategorical) else post.q.stddev()
            out[name] = (mean, std)
        return out

    def sample_latents(self, x, seed, betas=None):
        return {name: post.z for name, post in zip(self.latent_names, self.posteriors(x, seed=seed, betas=betas))}

    def decode(self, z1, betas=None):
        """Mean of p(x | z1) in data space."""
        return self.likelihood.mean(self.decoder(z1, self._embedding(betas, tf.shape(z1)[0])))

    def reconstruct(self, x, betas=None):
        return self.decode(self.posteriors(x, use_mean=True, betas=betas)[0].z, betas)

    def sample(self, n, seed, betas=None, top=None):
        """Ancestral samples z ~ p(z), returned as the mean of p(x | z1); top: [n, d_L] values of the top
        layer to start from instead of draws from p(z_L) (e.g. one category of a categorical top)."""
        seeds = tfp.random.split_seed(seed, n=self.num_layers)
        embedding = self._embedding(betas, n)
        z = self._draw(self._top_prior(n), seeds[-1], use_mean=False) if top is None else tf.convert_to_tensor(top)
        for l in reversed(range(self.num_layers - 1)):
            z = self._conditional_prior(l, z, embedding).sample(seed=seeds[l])
        return self.decode(z, betas)
