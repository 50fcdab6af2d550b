"""The training loop behind `python -m hvae_repr.train`: a fixed-signature tf.function
step, per-epoch checkpoints, metrics.jsonl, TensorBoard summaries and the final
test-set result."""
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np

from hvae_repr import io_utils, objective, runs, units


def library_versions():
    import keras
    import scipy
    import sklearn
    import tensorflow as tf
    import tensorflow_probability as tfp
    return {"tensorflow": tf.__version__, "tensorflow_probability": tfp.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "scipy": scipy.__version__, "scikit_learn": sklearn.__version__,
            "python": sys.version.split()[0]}


def set_threads(threads):
    import tensorflow as tf
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already ran an op in this process; keep its setting
            pass


def by_layer(values):
    return {f"z{l + 1}": v for l, v in enumerate(values)}


class Trainer:
    def __init__(self, config, verbose=True):
        self.config = config
        self.verbose = verbose

    @property
    def result_file(self):
        return runs.path(self.config.workdir, runs.TRAIN_RESULT)

    def log(self, message):
        if self.verbose:
            print(message, flush=True)

    def run(self):
        """Trains (or resumes) the run; a finished run's result is returned as it is."""
        return self.prepare() or self.fit()

    def prepare(self):
        """Checks the settings, the workdir and the data, and builds the model: every error that
        bad input can cause is raised here, before training. Returns the result of a finished run."""
        cfg = self.config
        runs.check_same_run(cfg.workdir, cfg)
        if os.path.isfile(self.result_file):
            result = io_utils.read_json(self.result_file)
            self.log(f"{cfg.workdir} has finished training; not training again.")
            self.log(format_table(result))
            return result
        set_threads(cfg.threads)
        self.dataset = runs.load_run_dataset(cfg)
        if len(self.dataset.x_train) < cfg.batch_size:
            raise ValueError(f"--batch_size={cfg.batch_size} exceeds the {len(self.dataset.x_train)} training "
                             f"examples of {cfg.dataset}; lower --batch_size")
        import keras
        keras.utils.set_random_seed(cfg.seed)
        model_config = cfg.model_config(self.dataset.input_shape)
        self.model = runs.build_model(model_config)
        os.makedirs(cfg.workdir, exist_ok=True)
        if not os.path.isfile(runs.path(cfg.workdir, runs.CONFIG)):
            io_utils.write_json_atomic(runs.path(cfg.workdir, runs.CONFIG), {
                "flags": cfg.to_json(), "model": dataclasses.asdict(model_config)})
        return None

    def fit(self):
        """Trains from the last checkpoint to the end, then writes export/ and train_result.json."""
        import keras
        import tensorflow as tf
        cfg, model, dataset = self.config, self.model, self.dataset
        optimizer = keras.optimizers.Adam(cfg.learning_rate)
        optimizer.build(model.trainable_variables)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        seconds_var = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        checkpoint = runs.make_checkpoint(model, optimizer=optimizer, epoch=epoch_var, train_seconds=seconds_var)
        manager = tf.train.CheckpointManager(checkpoint, runs.path(cfg.workdir, runs.CHECKPOINTS), max_to_keep=2)
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint).assert_consumed()
            self.log(f"resuming {cfg.workdir} after epoch {int(epoch_var)}")
        start_epoch = int(epoch_var)
        metrics_file = runs.path(cfg.workdir, runs.METRICS)
        _truncate_metrics(metrics_file, start_epoch)

        step_fn = self._make_step(model, optimizer, dataset.input_shape)
        writer = tf.summary.create_file_writer(runs.path(cfg.workdir, runs.SUMMARIES))
        num_train = len(dataset.x_train)
        steps_per_epoch = num_train // cfg.batch_size
        betas = np.asarray(cfg.betas, np.float32)
        last_save = time.time()
        for epoch in range(start_epoch, cfg.epochs):
            started = time.time()
            order = np.random.default_rng([cfg.seed, epoch]).permutation(num_train)
            progress = None
            if self.verbose and sys.stdout.isatty():
                print(f"epoch {epoch + 1}/{cfg.epochs}")
                progress = keras.utils.Progbar(steps_per_epoch)
            totals = {}
            for i in range(steps_per_epoch):
                step = epoch * steps_per_epoch + i
                warmup = min(1.0, (step + 1) / (cfg.kl_warmup_epochs * steps_per_epoch)) if cfg.kl_warmup_epochs else 1.0
                temperature = max(cfg.gumbel_min_temperature, cfg.gumbel_temperature * math.exp(-cfg.gumbel_anneal_rate * step))
                batch = dataset.x_train[order[i * cfg.batch_size:(i + 1) * cfg.batch_size]]
                out = step_fn(batch, tf.constant([cfg.seed, step], tf.int32), betas * warmup,
                              tf.constant(temperature, tf.float32))
                for key, value in out.items():
                    totals[key] = totals.get(key, 0.0) + value.numpy()
                if progress is not None:
                    progress.update(i + 1, [("loss", float(out["loss"])), ("D", float(out["distortion"]))] +
                                    [(f"R(z{l + 1})", float(out[f"rate_z{l + 1}"])) for l in range(model.num_layers)])
            means = {k: v / steps_per_epoch for k, v in totals.items()}
            for l in range(model.num_layers):  # active over the epoch, not the mean of per-batch counts
                means[f"active_units_z{l + 1}"] = int(objective.count_active_units(means[f"kl_per_dim_z{l + 1}"]))
            seconds_var.assign_add(time.time() - started)
            epoch_var.assign(epoch + 1)
            # The line goes first: after a crash before the checkpoint, resuming drops it and trains again.
            line = _metrics_line(means, model.num_layers, epoch + 1, (epoch + 1) * steps_per_epoch,
                                 float(seconds_var), warmup)
            io_utils.append_jsonl(metrics_file, line)
            with writer.as_default(step=(epoch + 1) * steps_per_epoch):
                _write_summaries(means)
            if time.time() - last_save >= cfg.checkpoint_every_secs or epoch + 1 == cfg.epochs:
                manager.save(checkpoint_number=epoch + 1)
                last_save = time.time()
            if progress is None:
                self.log(_epoch_summary(line, cfg.epochs))

        result = self._test_result(model, dataset, float(seconds_var), steps_per_epoch)
        # Export before the result file: a failed export leaves the run unfinished, so rerunning redoes it.
        from hvae_repr import export
        export.export_model(model, cfg.workdir, cfg)
        io_utils.write_json_atomic(self.result_file, result)
        self.log(format_table(result))
        return result

    def _make_step(self, model, optimizer, input_shape):
        import tensorflow as tf
        cfg = self.config
        spec = [tf.TensorSpec((cfg.batch_size,) + tuple(input_shape), tf.float32),
                tf.TensorSpec((2,), tf.int32), tf.TensorSpec((model.num_layers,), tf.float32),
                tf.TensorSpec((), tf.float32)]

        @tf.function(input_signature=spec)
        def train_step(x, seed, betas, temperature):
            with tf.GradientTape() as tape:
                terms = model.terms(x, seed, training=True, temperature=temperature)
                summary = objective.summarize(terms, tf.unstack(betas))
            grads = tape.gradient(summary["loss"], model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return summary

        return train_step

    def _test_result(self, model, dataset, seconds, steps_per_epoch):
        """Test-set means with one posterior sample per example (seeded)."""
        cfg = self.config
        stats = evaluate_terms(model, dataset.x_test, seed=cfg.seed)
        return {
            "dataset": cfg.dataset,
            "units": "nats per example unless the key says bits",
            "num_train_examples": int(len(dataset.x_train)),
            "num_test_examples": int(len(dataset.x_test)),
            "epochs": cfg.epochs,
            "steps": cfg.epochs * steps_per_epoch,
            "betas": by_layer(list(cfg.betas)),
            "latent_dims": by_layer(list(model.model_config.latent_dims)),
            "test": stats,
            "train_seconds": seconds,
            "versions": library_versions(),
        }


def evaluate_terms(model, x, seed, batch_size=500):
    """Mean distortion, per-layer rates (nats and bits), negative ELBO and active units over `x`."""
    import tensorflow as tf
    n = len(x)
    sums, dims = np.zeros(1 + model.num_layers), None
    for start in range(0, n, batch_size):
        seed_t = tf.constant([seed, 1_000_003 + start], tf.int32)  # disjoint from training step seeds
        terms = model.terms(x[start:start + batch_size], seed_t)
        sums += [float(tf.reduce_sum(t)) for t in [terms["distortion"]] + terms["rates"]]
        per_dim = [tf.reduce_sum(k, 0).numpy() for k in terms["kl_per_dim"]]
        dims = per_dim if dims is None else [a + b for a, b in zip(dims, per_dim)]
    distortion, rates = float(sums[0]) / n, [float(s) / n for s in sums[1:]]
    total = sum(rates)
    return {
        "distortion_nats": distortion,
        "rate_nats": by_layer(rates),
        "rate_bits": by_layer([units.nats_to_bits(r) for r in rates]),
        "total_rate_nats": total,
        "total_rate_bits": units.nats_to_bits(total),
        "neg_elbo_nats": distortion + total,
        "active_units": by_layer([int(objective.count_active_units(d / n)) for d in dims]),
    }


def _write_summaries(means):
    """TensorBoard scalars named with their unit: nats, and bits for the rates; KL per dimension as histograms."""
    import tensorflow as tf
    for key, value in means.items():
        if key.startswith("active_units"):
            tf.summary.scalar(f"train/{key}", value)
        elif np.ndim(value) > 0:
            tf.summary.histogram(f"train/{key}_nats", value)
        else:
            tf.summary.scalar(f"train/{key}_nats", value)
            if "rate" in key:
                tf.summary.scalar(f"train/{key}_bits", units.nats_to_bits(value))


def _metrics_line(means, num_layers, epoch, step, seconds, warmup):
    line = {"epoch": epoch, "step": step, "train_seconds": seconds, "beta_warmup_factor": warmup,
            "loss": float(means["loss"]), "distortion_nats": float(means["distortion"]),
            "total_rate_nats": float(means["total_rate"]), "neg_elbo_nats": float(means["neg_elbo"]),
            "rate_nats": by_layer([float(means[f"rate_z{l + 1}"]) for l in range(num_layers)]),
            "active_units": by_layer([int(means[f"active_units_z{l + 1}"]) for l in range(num_layers)])}
    return line


def _epoch_summary(line, epochs):
    rates = " ".join(f"R({k})={v:.2f}" for k, v in sorted(line["rate_nats"].items(), reverse=True))
    return (f"epoch {line['epoch']}/{epochs}  loss={line['loss']:.3f}  D={line['distortion_nats']:.3f}  "
            f"{rates} nats  ({line['train_seconds']:.1f}s)")


def _truncate_metrics(path, last_epoch):
    """Drops lines of epochs after the restored checkpoint (they will be trained again)."""
    if not os.path.isfile(path):
        return
    with open(path) as f:
        lines = [l for l in f if l.strip() and json.loads(l)["epoch"] <= last_epoch]
    io_utils.write_text_atomic(path, "".join(lines))


def format_table(result):
    """A short table of the test-set distortion and per-layer rates."""
    test = result["test"]
    names = sorted(test["rate_nats"], key=lambda k: int(k[1:]), reverse=True)
    rows = [f"{'layer':<8}{'beta':>8}{'rate (nats)':>14}{'rate (bits)':>14}{'active units':>15}"]
    for name in names:
        rows.append(f"{name:<8}{result['betas'][name]:>8.3g}{test['rate_nats'][name]:>14.3f}"
                    f"{test['rate_bits'][name]:>14.3f}{test['active_units'][name]:>9d} / {result['latent_dims'][name]}")
    rows.append(f"{'total':<8}{'':>8}{test['total_rate_nats']:>14.3f}{test['total_rate_bits']:>14.3f}")
    rows.append(f"distortion {test['distortion_nats']:.3f} nats, negative ELBO {test['neg_elbo_nats']:.3f} nats "
                f"per test example ({result['num_test_examples']} examples, {result['dataset']})")
    return "\n".join(rows)
