"""The training loop behind `python -m hvae_repr.train`: a fixed-signature tf.function step,
per-epoch checkpoints, metrics.jsonl, TensorBoard summaries and the final test-set result.

A step whose loss or gradient is NaN or inf is skipped (no update) and counted; after
--max_bad_steps such steps in a row training stops with an error naming the step and the
term, and the last checkpoint (written before the bad steps) stays loadable.
"""
import json
import math
import os
import sys
import time

import numpy as np

from hvae_repr import (distribution, epoch_progress, io_utils, loss_balance, objective, passes, preemption, progress,
                       rate_controller, rate_targets, runs, seeds, units, warm_start)
from hvae_repr.epoch_progress import CHECKPOINT_KEY, EpochProgress
from hvae_repr.runs import RunDir


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps with a NaN or infinite loss or gradient."""


def library_versions():
    """The versions of the libraries a result depends on, read from their installed metadata (importing
    scipy and scikit-learn only for their __version__ would cost a training process a second)."""
    from importlib import metadata
    from hvae_repr.tf_env import tf
    import tensorflow_probability as tfp
    import keras
    return {"tensorflow": tf.__version__, "tensorflow_probability": tfp.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "scipy": metadata.version("scipy"),
            "scikit_learn": metadata.version("scikit-learn"),
            "python": sys.version.split()[0]}


def set_threads(threads):
    from hvae_repr.tf_env import tf
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already ran an op in this process; keep its setting
            pass


def by_layer(values):
    return {f"z{l + 1}": v for l, v in enumerate(values)}


def gumbel_temperature(config, epoch, step):
    """The paper's schedule by default: max(min, initial * exp(-rate * t)), t in epochs (or steps)."""
    t = epoch if config.gumbel_anneal_every == "epoch" else step
    return max(config.gumbel_min_temperature, config.gumbel_temperature * math.exp(-config.gumbel_anneal_rate * t))


class Trainer:
    def __init__(self, config, verbose=True):
        self.config = config
        self.run_dir = RunDir(config.workdir)
        self.verbose = verbose

    def log(self, message):
        if self.verbose:
            print(message, flush=True)

    def run(self):
        """Trains (or resumes) the run under its lock; a finished run's result is returned as it is."""
        finished = self.prepare()
        if finished is not None:
            return finished
        if not self.placement.is_chief:  # a multi_worker worker: trains beside the chief, writes nothing
            return self.fit()
        with self.run_dir.lock():
            return self.claim() or self.fit()

    def _finished_result(self):
        result = io_utils.read_json(self.run_dir.file(self.run_dir.TRAIN_RESULT))
        self.log(f"{self.config.workdir} has finished training; not training again.")
        self.log(format_table(result))
        return result

    def prepare(self):
        """Checks the settings, the workdir and the data, and builds the model, writing nothing: every
        error that bad input can cause is raised here, before training. Returns the result of a finished run."""
        cfg, run = self.config, self.run_dir
        run.check_can_train(cfg)
        if run.is_trained:
            return self._finished_result()
        set_threads(cfg.threads)
        distribution.configure_devices(cfg)
        self.placement = distribution.Placement(cfg)
        self.dataset = runs_dataset(cfg)
        if len(self.dataset.x_train) < cfg.batch_size:
            raise ValueError(f"--batch_size={cfg.batch_size} exceeds the {len(self.dataset.x_train)} training "
                             f"examples of {cfg.dataset}; lower --batch_size")
        import keras
        from hvae_repr.model import HierarchicalVAE
        keras.utils.set_random_seed(cfg.seed)
        self.config = cfg = cfg.with_input_shape(self.dataset.input_shape)
        with self.placement.scope():
            self.model = HierarchicalVAE(cfg.model).build_all()
        if cfg.init_from:
            warm_start.check(cfg)
        return None

    def claim(self):
        """With the run's lock held: checks again (another process may have started or finished the run
        meanwhile) and writes config.json. Returns the result if the run has finished meanwhile."""
        self.run_dir.check_can_train(self.config)
        if self.run_dir.is_trained:
            return self._finished_result()
        if not self.run_dir.has_config:
            self.run_dir.write_config(self.config)
        return None

    def fit(self):
        """Trains from the last checkpoint to the end, then writes export/ and train_result.json.

        A SIGTERM or SIGINT (hvae_repr.preemption) stops it after the current step with a checkpoint that
        holds the epoch's progress, raising preemption.Interrupted; rerunning resumes at the next step."""
        with preemption.deferred():
            return self._fit()

    def _fit(self):
        import keras
        from hvae_repr.tf_env import tf
        cfg, model, dataset, run = self.config, self.model, self.dataset, self.run_dir
        chief = self.placement.is_chief
        num_train = len(dataset.x_train)
        steps_per_epoch = num_train // cfg.batch_size
        with self.placement.scope():
            optimizer = keras.optimizers.Adam(learning_rate(cfg, steps_per_epoch))
            optimizer.build(model.trainable_variables)
            # --balance_betas: the running mean objective per cell of log betas, checkpointed with the run
            table = loss_balance.ObjectiveTable(model.num_layers, cfg.model.beta_range) if cfg.balance_betas else None
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        seconds_var = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        skipped_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.rate_targets = targets = rate_controller.make_controller(cfg)  # None without --target_rates
        extra = dict({"rate_targets": targets} if targets is not None else {},
                     **({"objective_table": table} if table is not None else {}))
        fixed = cfg.betas if cfg.fixed_condition else None
        self.train_step = step_fn = distribution.make_step(
            self.placement, model, optimizer, cfg.batch_size, dataset.input_shape,
            make_train_step(model, optimizer, cfg.batch_size, dataset.input_shape, fixed, table), fixed, table)
        outputs = dict(step_fn.get_concrete_function().structured_outputs)
        outputs.pop("finite")
        epoch_state = EpochProgress(outputs)

        def make_checkpoint(with_progress=True):
            parts = {CHECKPOINT_KEY: epoch_state.module} if with_progress else {}
            return tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var,
                                       train_seconds=seconds_var, skipped_steps=skipped_var, **extra, **parts)
        checkpoint = make_checkpoint()
        manager = tf.train.CheckpointManager(checkpoint, self.placement.checkpoint_folder(run.file(run.CHECKPOINTS)),
                                             max_to_keep=2)
        resume_step, resume_good, bad_in_a_row, resume_totals = 0, 0, 0, {}
        if run.checkpoints():
            # A checkpoint written before EpochProgress existed is restored without it (an epoch's end).
            restoring = checkpoint if epoch_progress.in_checkpoint(run.checkpoints()[0]) else make_checkpoint(False)
            restored = runs.restore_newest(run.checkpoints(), lambda: restoring, run.path, log=self.log)
            resume_step, resume_good, bad_in_a_row, resume_totals = epoch_state.read()
            where = (f"in epoch {int(epoch_var) + 1} after step {resume_step}" if resume_step else
                     f"after epoch {int(epoch_var)}")
            self.log(f"resuming {cfg.workdir} {where} ({os.path.basename(restored)})")
        elif cfg.init_from:
            self.log(f"initial weights from {warm_start.restore(model, cfg, log=self.log)}")
        start_epoch = int(epoch_var)
        metrics_file = run.file(run.METRICS)
        if chief:
            _truncate_metrics(metrics_file, start_epoch)

        writer = tf.summary.create_file_writer(run.file(run.SUMMARIES)) if chief else tf.summary.create_noop_writer()
        betas = np.asarray(cfg.betas, np.float32)
        seed = tf.constant(cfg.seed, tf.int32)
        last_save, saved_epoch_end = time.time(), {}
        # A terminal gets a live line per epoch (erased when the epoch ends); every run gets compact lines.
        live, fit_started = progress.LiveLine(sys.stdout, enabled=self.verbose), time.time()

        def save(number):
            """Writes checkpoint `number`; a failed write (a full or read-only disk) is one OSError line."""
            newest = manager.latest_checkpoint
            kept = (f"the previous checkpoint {os.path.basename(newest)} is intact" if newest else
                    "no checkpoint was kept")
            with io_utils.reported_write(os.path.join(manager.directory, f"ckpt-{number}"),
                                         f"{kept}; free space (or fix the permissions), then rerun the same "
                                         f"command to resume", (tf.errors.OpError,)):
                manager.save(checkpoint_number=number)

        def stop(epoch, step, totals, good):
            """At a signal: a checkpoint holding the epoch's progress (`step` steps of `epoch` done), then
            preemption.Interrupted saying how to resume."""
            if not preemption.received():
                return
            seconds_var.assign_add(time.time() - started)
            epoch_state.store(step, good, bad_in_a_row, totals)
            if step or saved_epoch_end.get("epoch") != epoch:  # (the end of `epoch` may be saved already)
                save(epoch + 1 if step else epoch)
            where = f"in epoch {epoch + 1} after step {step} of {steps_per_epoch}" if step else f"after epoch {epoch}"
            preemption.check(lambda: f"stopped {where}; checkpoint {manager.latest_checkpoint} written; rerun "
                                     f"the same command (--workdir={cfg.workdir}) to resume")

        for epoch in range(start_epoch, cfg.epochs):
            started = time.time()
            order = np.random.default_rng([cfg.seed, epoch]).permutation(num_train)
            first = resume_step if epoch == start_epoch else 0
            totals, good = (resume_totals, resume_good) if first else ({}, 0)
            for i in range(first, steps_per_epoch):
                if i > first:
                    stop(epoch, i, totals, good)
                step = epoch * steps_per_epoch + i
                warmup = min(1.0, (step + 1) / (cfg.kl_warmup_epochs * steps_per_epoch)) if cfg.kl_warmup_epochs else 1.0
                batch = dataset.x_train[order[i * cfg.batch_size:(i + 1) * cfg.batch_size]]
                if targets is not None:
                    betas = targets.betas()
                # A conditional model draws each example's betas in the step; these then only scale them.
                scale = np.full(model.num_layers, warmup, np.float32) if model.conditional else betas * warmup
                out = step_fn(batch, seed, tf.constant(step, tf.int32), scale,
                              tf.constant(gumbel_temperature(cfg, epoch, step), tf.float32))
                if not bool(out.pop("finite")):
                    skipped_var.assign_add(1)
                    bad_in_a_row += 1
                    if bad_in_a_row >= cfg.max_bad_steps:
                        raise TrainingDiverged(_divergence_message(out, step, bad_in_a_row, run, epoch_var))
                    continue
                bad_in_a_row, good = 0, good + 1
                if targets is not None:  # the dual step: the betas follow the rates (not during the warm-up)
                    targets.update([out[f"rate_z{l + 1}"] for l in range(model.num_layers)], adapt=warmup >= 1.0)
                for key, value in out.items():
                    totals[key] = totals.get(key, 0.0) + value.numpy()
                if live.active:
                    live.show(_live_text(totals, good, epoch, i, started, cfg.epochs, steps_per_epoch))
            # An epoch whose every step was skipped has no means: its line holds nulls (and says so).
            means = {k: v / good for k, v in totals.items()} if good else {k: None for k in outputs}
            for l in range(model.num_layers):  # active over the epoch, not the mean of per-batch counts
                kl = means[f"kl_per_dim_z{l + 1}"]
                means[f"active_units_z{l + 1}"] = None if kl is None else int(objective.count_active_units(kl))
            seconds_var.assign_add(time.time() - started)
            epoch_var.assign(epoch + 1)
            epoch_state.store(0, 0, bad_in_a_row, {})
            # The line goes first: after a crash before the checkpoint, resuming drops it and trains again.
            line = _metrics_line(means, model.num_layers, epoch + 1, (epoch + 1) * steps_per_epoch,
                                 float(seconds_var), warmup, steps_per_epoch - good, int(skipped_var))
            if targets is not None:
                line.update(targets.record())
            if cfg.test_every_epochs and (epoch + 1) % cfg.test_every_epochs == 0:
                # With targets, the objective is the one being optimized now: at the adapted betas.
                line["test"] = test_line(model, dataset.x_test, cfg.seed,
                                         cfg.betas if targets is None else [float(b) for b in targets.betas()])
            if chief:
                with io_utils.reported_write(metrics_file, "the checkpoints are intact; free space (or fix the "
                                                           "permissions), then rerun the same command to resume"):
                    io_utils.append_jsonl(metrics_file, line)
            with writer.as_default(step=(epoch + 1) * steps_per_epoch):
                _write_summaries({k: v for k, v in means.items() if v is not None})
                if targets is not None:
                    targets.write_summaries()
                if "test" in line:
                    _write_test_summaries(line["test"])
                every = cfg.images_every_epochs
                if chief and every and ((epoch + 1) % every == 0 or epoch + 1 == cfg.epochs):
                    _write_images(model, dataset.x_test[:IMAGES], cfg.seed, epoch, cfg.betas)
            if time.time() - last_save >= cfg.checkpoint_every_secs or epoch + 1 == cfg.epochs:
                save(epoch + 1)
                last_save, saved_epoch_end["epoch"] = time.time(), epoch + 1
            live.clear()
            if should_log(epoch + 1, start_epoch, cfg):
                per_epoch = (time.time() - fit_started) / (epoch + 1 - start_epoch)
                self.log(_epoch_summary(line, cfg.epochs, steps_per_epoch / (time.time() - started),
                                        per_epoch * (cfg.epochs - epoch - 1)) + rate_targets.epoch_text(line))
            started = time.time()
            stop(epoch + 1, 0, {}, 0)

        if not chief:
            self.placement.barrier()  # until the chief has written the result
            return None
        result = self._test_result(model, dataset, float(seconds_var), steps_per_epoch, int(skipped_var))
        if targets is not None:
            rate_targets.add_to_result(result, targets, cfg.epochs * steps_per_epoch)
        if cfg.init_from:
            result["init_from"] = warm_start.record(cfg)
        # Export before the result file: a failed export leaves the run unfinished, so rerunning redoes it.
        if cfg.export:
            from hvae_repr import export
            export.export_model(model, run, cfg)
        with io_utils.reported_write(run.file(run.TRAIN_RESULT), "the checkpoints and export/ are intact; free "
                                                                 "space, then rerun the same command"):
            io_utils.write_json_atomic(run.file(run.TRAIN_RESULT), result)
        self.placement.barrier()
        self.log(format_table(result))
        self.log(f"run folder: {run.path}")
        return result

    def _test_result(self, model, dataset, seconds, steps_per_epoch, skipped):
        """Test-set rates from hvae_repr.passes (the evaluation's own pass, same seeds)."""
        cfg = self.config
        arrays = passes.dataset_pass(model, dataset.x_test, cfg.seed, views=False, betas=cfg.betas)
        result = {
            "dataset": cfg.dataset,
            "units": "nats per example unless the key says bits",
            "num_train_examples": int(len(dataset.x_train)),
            "num_test_examples": int(len(dataset.x_test)),
            "epochs": cfg.epochs,
            "steps": cfg.epochs * steps_per_epoch,
            "skipped_steps": skipped,
            "betas": by_layer(list(cfg.betas)),
            "latent_dims": by_layer(list(model.model_config.latent_dims)),
            "test": passes.rate_summary(arrays, cfg.seed),
            "run_config": cfg.to_json(),  # every setting, resolved defaults included (as in config.json)
            "train_seconds": seconds,
            "versions": library_versions(),
        }
        if cfg.model.likelihood == "bernoulli" and not dataset.is_binary:
            result["warning"] = (f"{cfg.dataset} is not binary: the Bernoulli distortion on grey values is a "
                                 f"cross-entropy, not a code length, so neg_elbo_nats bounds no -log p(x); "
                                 f"binarize the data (e.g. binary_digits) or use another --likelihood")
        return result


def runs_dataset(config):
    """The run's data set, validated for its likelihood."""
    from hvae_repr import data
    return data.load_dataset(config.dataset, config.data_dir or None, likelihood=config.model.likelihood)


def learning_rate(cfg, steps_per_epoch):
    """--learning_rate, or its schedule over the run's steps (a function of the optimizer's step count,
    which the checkpoint holds: a resumed run continues the schedule where it stopped)."""
    if cfg.lr_schedule == "cosine":
        import keras
        return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, cfg.epochs * steps_per_epoch)
    return cfg.learning_rate


def make_train_step(model, optimizer, batch_size, input_shape, fixed_betas=None, balance=None):
    """One optimizer step as a tf.function with a fixed input signature (traced once).

    betas [L] weight the rates, or scale a beta-conditional model's drawn betas (objective.training_objective:
    `fixed_betas`, `balance`). Returns objective.summarize's batch means and "finite": whether the loss and
    every gradient were finite (when not, no update was applied)."""
    from hvae_repr.tf_env import tf
    spec = [tf.TensorSpec((batch_size,) + tuple(input_shape), tf.float32), tf.TensorSpec((), tf.int32),
            tf.TensorSpec((), tf.int32), tf.TensorSpec((model.num_layers,), tf.float32),
            tf.TensorSpec((), tf.float32)]

    # autograph=False: the step has no Python control flow on tensors, and autograph would read the
    # source files again when it traces (an edit of them while a sweep runs would mislead it).
    @tf.function(input_signature=spec, autograph=False)
    def train_step(x, seed, step, betas, temperature):
        with tf.GradientTape() as tape:
            loss, summary = objective.training_objective(
                model, x, seeds.derive(seed, "train_step", step), seeds.derive(seed, "train_betas", step), betas,
                temperature, fixed_betas, balance)
        grads = tape.gradient(loss, model.trainable_variables)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads] +
                               [tf.math.is_finite(summary["loss"])])

        def apply():
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return tf.constant(True)
        summary["finite"] = tf.cond(finite, apply, lambda: tf.constant(False))
        return summary

    return train_step


def _divergence_message(out, step, count, run, epoch_var):
    bad = [name for name, key in [("loss", "loss"), ("distortion", "distortion")] +
           [(f"rate of {k[5:]}", k) for k in sorted(out) if k.startswith("rate_z")]
           if not np.all(np.isfinite(out[key].numpy()))]
    term = ", ".join(bad) if bad else "a gradient (the loss was finite)"
    return (f"training stopped at step {step}: {count} step{'s' if count > 1 else ''} in a row had a NaN or "
            f"infinite {term}; the last "
            f"checkpoint in {run.file(run.CHECKPOINTS)} (after epoch {int(epoch_var)}) is intact; lower "
            f"--learning_rate or check the data, then rerun to resume")


def test_line(model, x_test, seed, betas):
    """The test set's mean rates, distortion and objective D + sum_l beta_l R_l at `betas` (nats), from the
    pass (and seeds) of the final result: at the last epoch it equals train_result.json's test means."""
    arrays = passes.dataset_pass(model, x_test, seed, views=False, betas=betas)
    rates = arrays.rates.astype(np.float64).mean(0)  # float64 means, as rate_summary's
    distortion = float(arrays.distortion.astype(np.float64).mean())
    return {"rate_nats": by_layer([float(r) for r in rates]), "distortion_nats": distortion,
            "objective_nats": distortion + float(np.dot(betas, rates)), "betas": by_layer(list(betas))}


def _write_test_summaries(test):
    from hvae_repr.tf_env import tf
    tf.summary.scalar("test/distortion_nats", test["distortion_nats"])
    tf.summary.scalar("test/objective_nats", test["objective_nats"])
    for name, rate in test["rate_nats"].items():
        tf.summary.scalar(f"test/rate_{name}_nats", rate)


def _write_summaries(means):
    """TensorBoard scalars named with their unit: nats, and bits for the rates; KL per dimension as histograms."""
    from hvae_repr.tf_env import tf
    for key, value in means.items():
        if key.startswith("active_units"):
            tf.summary.scalar(f"train/{key}", value)
        elif np.ndim(value) > 0:
            tf.summary.histogram(f"train/{key}_nats", value)
        else:
            tf.summary.scalar(f"train/{key}_nats", value)
            if "rate" in key:
                tf.summary.scalar(f"train/{key}_bits", units.nats_to_bits(value))


IMAGES = 16  # test images reconstructed, and prior samples drawn, for TensorBoard


def _write_images(model, x, seed, epoch, betas):
    """Test images beside their reconstructions, and prior samples, as TensorBoard images (image data only;
    a conditional model at the run's --betas)."""
    from hvae_repr.tf_env import tf
    if len(model.model_config.input_shape) != 3 or model.model_config.input_shape[-1] not in (1, 3):
        return
    pairs = tf.concat([x, model.reconstruct(x, betas)], axis=2)  # original | reconstruction, side by side
    tf.summary.image("images/test_and_reconstruction", tf.clip_by_value(pairs, 0, 1), max_outputs=IMAGES)
    samples = model.sample(IMAGES, seeds.derive(seed, "summary_images", epoch), betas)
    tf.summary.image("images/prior_samples", tf.clip_by_value(samples, 0, 1), max_outputs=IMAGES)


def _metrics_line(means, num_layers, epoch, step, seconds, warmup, skipped_in_epoch, skipped_total):
    """An epoch's metrics.jsonl line; the means are null for an epoch whose every step was skipped."""
    def number(key, kind=float):
        return None if means[key] is None else kind(means[key])
    return {"epoch": epoch, "step": step, "train_seconds": seconds, "beta_warmup_factor": warmup,
            "loss": number("loss"), "distortion_nats": number("distortion"),
            "total_rate_nats": number("total_rate"), "neg_elbo_nats": number("neg_elbo"),
            "rate_nats": by_layer([number(f"rate_z{l + 1}") for l in range(num_layers)]),
            "active_units": by_layer([number(f"active_units_z{l + 1}", int) for l in range(num_layers)]),
            "skipped_steps": skipped_in_epoch, "skipped_steps_total": skipped_total}


def log_interval(config):
    """Epochs between two compact lines on screen: --log_every, or for 0 about 20 lines per run."""
    return config.log_every or max(1, round(config.epochs / 20))


def should_log(epoch, start_epoch, config):
    """Whether epoch `epoch` (counted from 1) gets a compact line on screen: every log_interval-th epoch,
    and always the first and the last, and the first after a resume."""
    return epoch in (1, start_epoch + 1, config.epochs) or epoch % log_interval(config) == 0


def _rates_text(rates):
    """R(zL)=... R(z1)=..., top layer first."""
    return " ".join(f"R({k})={v:.2f}" for k, v in sorted(rates.items(), key=lambda kv: int(kv[0][1:]), reverse=True))


def _live_text(totals, good, epoch, step, started, epochs, steps_per_epoch):
    """The live line: the epoch's running means so far, its speed and the time left."""
    means = {k: v / max(good, 1) for k, v in totals.items()}
    rates = {k[5:]: float(v) for k, v in means.items() if k.startswith("rate_z")}
    speed = (step + 1) / max(time.time() - started, 1e-9)
    steps_left = steps_per_epoch - step - 1
    run_left = steps_left + (epochs - epoch - 1) * steps_per_epoch
    return (f"epoch {epoch + 1}/{epochs} step {step + 1}/{steps_per_epoch}  {speed:.1f} steps/s, "
            f"{progress.duration(steps_left / speed)} left in the epoch, about {progress.duration(run_left / speed)} "
            f"in the run  loss={float(means.get('loss', 0)):.3f} D={float(means.get('distortion', 0)):.3f} "
            f"{_rates_text(rates)}")


def _epoch_summary(line, epochs, steps_per_second=None, seconds_left=None):
    skipped = f"  skipped {line['skipped_steps']} bad steps" if line["skipped_steps"] else ""
    pace = f", {steps_per_second:.1f} steps/s" if steps_per_second else ""
    left = f", about {progress.duration(seconds_left)} left" if seconds_left else ""
    if line["loss"] is None:
        return (f"epoch {line['epoch']}/{epochs}  every step had a NaN or infinite loss or gradient and was "
                f"skipped ({line['skipped_steps']} steps; no update, no means)")
    return (f"epoch {line['epoch']}/{epochs}  loss={line['loss']:.3f}  D={line['distortion_nats']:.3f}  "
            f"{_rates_text(line['rate_nats'])} nats  ({line['train_seconds']:.1f}s{pace}{left}){skipped}")


def _truncate_metrics(path, last_epoch):
    """Drops lines of epochs after the restored checkpoint (they will be trained again), and a line cut
    short by a failed write (a full disk)."""
    if not os.path.isfile(path):
        return
    kept = []
    with open(path) as f:
        for text in f:
            try:
                if json.loads(text)["epoch"] <= last_epoch:
                    kept.append(text if text.endswith("\n") else text + "\n")
            except (ValueError, KeyError, TypeError):
                continue
    io_utils.write_text_atomic(path, "".join(kept))


def format_table(result):
    """A short table of the test-set distortion and per-layer rates."""
    test = result["test"]
    names = sorted(test["rate_nats"], key=lambda k: int(k[1:]), reverse=True)
    rows = [f"{'layer':<8}{'beta':>8}{'rate (nats)':>14}{'rate (bits)':>14}{'active units':>15}"]
    for name in names:
        rows.append(f"{name:<8}{result['betas'][name]:>8.3g}{test['rate_nats'][name]['mean']:>14.3f}"
                    f"{test['rate_bits'][name]['mean']:>14.3f}{test['active_units'][name]:>9d} / "
                    f"{result['latent_dims'][name]}")
    rows.append(f"{'total':<8}{'':>8}{test['total_rate_nats']['mean']:>14.3f}{test['total_rate_bits']['mean']:>14.3f}")
    rows.append(f"distortion {test['distortion_nats']['mean']:.3f} nats, negative ELBO "
                f"{test['neg_elbo_nats']['mean']:.3f} nats per test example ({result['num_test_examples']} "
                f"examples, {result['dataset']})")
    for warning in (test.get("warning"), result.get("warning")):
        if warning:
            rows.append("warning: " + warning)
    return "\n".join(rows + rate_targets.format_lines(result))
