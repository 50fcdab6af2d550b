"""The dual variables of a run with --target_rates (hvae_repr.rate_targets describes the method): each
targeted layer's log beta, its rate average and its steps at an edge of --beta_range, as tf.Variables of a
tf.Module that the run's checkpoint holds, so a resumed run continues exactly where it stopped."""
import math

import numpy as np

from hvae_repr import rate_targets
from hvae_repr.tf_env import tf


def make_controller(config):
    """The RateTargets of a run with --target_rates, else None."""
    if not config.target_rates:
        return None
    return RateTargets(rate_targets.targets_of(config.target_rates), config.betas, config.model.beta_range,
                       config.target_dual_step, config.target_rate_decay)


class RateTargets(tf.Module):
    """The dual variables of a targeted run (z1 first): log betas, rate averages and counters."""

    def __init__(self, targets, betas, beta_range, step, decay):
        super().__init__(name="rate_targets")
        self.targets = list(targets)
        layers = len(self.targets)
        self.adapted = np.array([t is not None for t in self.targets])
        self.low, self.high = (float(b) for b in beta_range)
        self.step, self.decay = float(step), float(decay)
        self.initial_betas = np.asarray(betas, np.float64)
        self.log_betas = tf.Variable(np.log(np.asarray(betas, np.float32)), trainable=False, name="log_betas")
        self.rate_averages = tf.Variable(np.zeros(layers, np.float32), trainable=False, name="rate_averages")
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="updates")
        # Consecutive adapting steps with the beta at an edge of the range (reset when it leaves it).
        self.steps_at_edge = tf.Variable(np.zeros(layers, np.int64), trainable=False, name="steps_at_edge")
        self._update = self._make_update()

    def _make_update(self):
        targets = tf.constant([t if t is not None else 0.0 for t in self.targets], tf.float32)
        adapted = tf.constant(self.adapted)
        log_low, log_high = math.log(self.low), math.log(self.high)
        edge = 1e-6  # float32 rounding of the clipped log beta

        @tf.function(input_signature=[tf.TensorSpec((len(self.targets),), tf.float32), tf.TensorSpec((), tf.bool)],
                     autograph=False)
        def update(rates, adapt):
            first = tf.equal(self.updates, 0)
            average = tf.where(first, rates, self.decay * self.rate_averages + (1.0 - self.decay) * rates)
            offset = rate_targets.RATE_OFFSET_NATS
            error = tf.math.log((average + offset) / (targets + offset))
            moved = tf.clip_by_value(self.log_betas + self.step * error, log_low, log_high)
            log_betas = tf.where(adapted & adapt, moved, self.log_betas)
            at_edge = adapted & adapt & ((log_betas <= log_low + edge) | (log_betas >= log_high - edge))
            steps = tf.where(at_edge, self.steps_at_edge + 1, tf.where(adapt, tf.zeros_like(self.steps_at_edge),
                                                                       self.steps_at_edge))
            return [self.rate_averages.assign(average), self.log_betas.assign(log_betas),
                    self.steps_at_edge.assign(steps), self.updates.assign_add(1)]
        return update

    def betas(self):
        """The current betas [L] (the fixed layers' exactly as given)."""
        return np.where(self.adapted, np.exp(self.log_betas.numpy().astype(np.float64)), self.initial_betas)

    def update(self, rates, adapt=True):
        """One dual step from a training batch's mean rates [L] (nats); adapt=False (warm-up) only averages."""
        self._update(tf.constant(np.asarray(rates, np.float32)), tf.constant(bool(adapt)))

    def record(self):
        """The epoch's line of metrics.jsonl: betas and rate averages by layer."""
        betas, averages = self.betas(), self.rate_averages.numpy()
        return {"betas": rate_targets.by_layer([float(b) for b in betas]),
                "rate_average_nats": rate_targets.by_layer([float(a) for a in averages])}

    def write_summaries(self):
        """TensorBoard scalars: each layer's beta and its rate average (inside the writer's context)."""
        names = rate_targets.by_layer(self.targets)
        for name, beta, average in zip(names, self.betas(), self.rate_averages.numpy()):
            tf.summary.scalar(f"rate_targets/beta_{name}", float(beta))
            tf.summary.scalar(f"rate_targets/rate_average_{name}_nats", float(average))

    def report(self, test_rates, total_steps):
        """The result's "target_rates" section: per layer the target, the test-set rate, the final beta
        and whether the target was reached; a beta at an edge for the last quarter of the steps is
        "pinned" (the target is out of reach inside --beta_range)."""
        betas, averages, at_edge = self.betas(), self.rate_averages.numpy(), self.steps_at_edge.numpy()
        layers, unreachable, missed = {}, [], []
        for l, target in enumerate(self.targets):
            name = f"z{l + 1}"
            if target is None:
                layers[name] = {"target_nats": None, "beta": float(betas[l]), "adapted": False}
                continue
            achieved = float(test_rates[name]["mean"])
            pinned = None
            if at_edge[l] >= rate_targets.PINNED_FRACTION * total_steps:
                pinned = "low" if betas[l] <= math.sqrt(self.low * self.high) else "high"
            reached = abs(achieved - target) <= rate_targets.tolerance(target)
            layers[name] = {"target_nats": target, "achieved_test_nats": achieved,
                            "error_nats": achieved - target, "tolerance_nats": rate_targets.tolerance(target),
                            "reached": bool(reached), "pinned": pinned, "beta": float(betas[l]),
                            "train_rate_average_nats": float(averages[l]), "adapted": True}
            if pinned and not reached:
                unreachable.append(rate_targets.unreachable_line(name, target, achieved, pinned, self.low,
                                                                 self.high))
            elif not reached:
                missed.append(rate_targets.missed_line(name, target, achieved, float(averages[l]), float(betas[l])))
        section = {"layers": layers, "unreachable": unreachable, "missed": missed, "all_reached": all(
                       v["reached"] for v in layers.values() if v["adapted"]),
                   "settings": {"dual_step": self.step, "rate_average_decay": self.decay,
                                "beta_range": [self.low, self.high],
                                "rate_offset_nats": rate_targets.RATE_OFFSET_NATS,
                                "tolerance": f"max({rate_targets.RELATIVE_TOLERANCE:g} * target, "
                                             f"{rate_targets.ABSOLUTE_TOLERANCE:g} nats)",
                                "pinned": f"the beta at an edge of beta_range for the last "
                                          f"{rate_targets.PINNED_FRACTION:.0%} of the {total_steps} steps "
                                          f"(unreachable when "
                                          f"the target is not reached)",
                                "achieved": "test-set mean rate per example (train_result['test'])"}}
        return section
