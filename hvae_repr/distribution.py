"""Data-parallel training with tf.distribute: the strategy of --strategy, and the training step run on
every replica with its terms reduced across them.

    default       one device (TensorFlow's default strategy; the step is the single-device step)
    mirrored      one replica per local GPU, or per logical CPU device with --cpu_replicas=N
    multi_worker  MultiWorkerMirroredStrategy: one replica per process named in TF_CONFIG

--batch_size is the global batch: replica r trains on rows [r*b, (r+1)*b) of every batch (b = global
batch / replicas; every worker builds the same batch from the run's seed and takes its replicas' rows).
Each replica's loss is its examples' sum divided by the global batch, so the gradients Keras sums
across replicas, the loss and every logged term (each layer's rate, the distortion, the KL per
dimension) are the per-example means over the global batch, as on one device.

Seeds: replica r draws its posterior samples (and a conditional model its betas) from the step's seed
with r folded in, so no two replicas share noise. A run with N > 1 replicas therefore draws different
noise than a single-device run of the same seed: it trains the same model in distribution, not to the
bit (and reductions run in another order). mirrored and multi_worker need at least 2 replicas.

Only the chief (the single process of default and mirrored; worker 0, or the task "chief", of
multi_worker) writes into the run folder; the other workers save their checkpoints into a temporary
folder (TensorFlow's pattern for MultiWorkerMirroredStrategy, whose saving may need every worker) and
write nothing else.
"""
import json
import os
import tempfile

from hvae_repr import objective, seeds


def configure_devices(config):
    """Before TensorFlow's first op: splits the CPU into --cpu_replicas logical devices."""
    from hvae_repr.tf_env import tf
    if not config.cpu_replicas:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration()] * config.cpu_replicas
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError:  # already initialised in this process (a test, a notebook): fine if it matches
        if len(tf.config.list_logical_devices("CPU")) != config.cpu_replicas:
            raise ValueError(f"--cpu_replicas={config.cpu_replicas} must be set before TensorFlow runs its first "
                             f"op; this process already has {len(tf.config.list_logical_devices('CPU'))} CPU "
                             f"devices (start a new process)") from None


def tf_config():
    """The parsed TF_CONFIG variable ({} when unset); ValueError (one line) when it is not valid."""
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        return {}
    try:
        value = json.loads(text)
        value["cluster"], value["task"]["type"], int(value["task"]["index"])
    except (ValueError, KeyError, TypeError):
        raise ValueError('TF_CONFIG is not {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
                         '"index": i}}; fix the variable') from None
    return value


def is_chief():
    """Whether this process writes the run folder: always, except a multi_worker worker other than the
    chief (the task "chief", or worker 0 when the cluster has no chief)."""
    config = tf_config()
    if not config:
        return True
    task = config["task"]
    has_chief = "chief" in config["cluster"]
    return task["type"] == "chief" or (not has_chief and task["type"] == "worker" and int(task["index"]) == 0)


_MIRRORED = {}  # device names -> this process's MirroredStrategy over them


def make_strategy(config):
    """The tf.distribute strategy of config.strategy; ValueError (one line) for a bad combination."""
    from hvae_repr.tf_env import tf
    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.strategy == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = ([d.name for d in tf.config.list_logical_devices("CPU")] if config.cpu_replicas or not gpus
                   else [d.name for d in gpus])
        # One strategy per device set and process: a second MirroredStrategy over the same devices would
        # reuse the first one's collective keys, and its all-reduces fail with a shape mismatch (a notebook
        # or test that trains twice).
        key = tuple(devices)
        strategy = _MIRRORED.get(key) or _MIRRORED.setdefault(key, tf.distribute.MirroredStrategy(devices=devices))
    else:
        cluster = tf_config().get("cluster", {})
        if not sum(len(v) for v in cluster.values()):
            raise ValueError("--strategy=multi_worker needs TF_CONFIG naming the cluster's workers and this "
                             "process's task; see README (Data-parallel training)")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        raise ValueError(f"--strategy={config.strategy} found one device (one replica); train with --strategy=default, "
                         f"or give mirrored --cpu_replicas=N or several GPUs, multi_worker several workers")
    if config.batch_size % replicas:
        raise ValueError(f"--batch_size={config.batch_size} does not divide into the {replicas} replicas of "
                         f"--strategy={config.strategy}; use a multiple of {replicas}")
    return strategy


class Placement:
    """Where the run trains: its strategy, and whether this process is the chief."""

    def __init__(self, config):
        self.strategy = make_strategy(config)
        self.replicas = self.strategy.num_replicas_in_sync
        self.is_chief = is_chief()

    def scope(self):
        """Variables (the model's, the optimizer's, the checkpointed counters) are made in this scope."""
        return self.strategy.scope()

    def barrier(self):
        """multi_worker: waits until every worker gets here (the other workers wait for the chief to write
        the result: a worker that ends first makes the chief's coordination service report it dead)."""
        from hvae_repr.tf_env import tf
        if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            one = tf.constant(1.0)
            self.strategy.reduce(tf.distribute.ReduceOp.SUM, self.strategy.run(lambda: one * 1.0), axis=None)

    def checkpoint_folder(self, folder):
        """The folder this process saves its checkpoints in: the run's for the chief, else a temporary one
        (removed when this process ends)."""
        if self.is_chief:
            return folder
        self._temporary = tempfile.TemporaryDirectory(prefix="hvae_worker_checkpoints_")
        return self._temporary.name


def make_step(placement, model, optimizer, batch_size, input_shape, single_device_step, fixed_betas=None,
              balance=None):
    """The training step of `placement`: the single-device step under the default strategy, else the
    same signature run on every replica with its terms summed across them (see the module docstring);
    fixed_betas and balance as in objective.training_objective."""
    from hvae_repr.tf_env import tf
    strategy, replicas = placement.strategy, placement.replicas
    if replicas == 1:  # the default strategy (make_strategy refuses others with one replica)
        return single_device_step
    local = batch_size // replicas
    spec = [tf.TensorSpec((batch_size,) + tuple(input_shape), tf.float32), tf.TensorSpec((), tf.int32),
            tf.TensorSpec((), tf.int32), tf.TensorSpec((model.num_layers,), tf.float32),
            tf.TensorSpec((), tf.float32)]
    share = local / batch_size  # this replica's share of the global batch

    def replica_step(x, seed, step, betas, temperature):
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group
        x = x[replica * local:(replica + 1) * local]  # this replica's shard of the global batch
        with tf.GradientTape() as tape:
            loss, summary = objective.training_objective(
                model, x, seeds.derive(seed, "train_step", step, replica),
                seeds.derive(seed, "train_betas", step, replica), betas, temperature, fixed_betas, balance,
                lambda t: context.all_reduce(tf.distribute.ReduceOp.SUM, t))
            scaled_loss = loss * share  # the optimizer sums the replicas' gradients
        grads = tape.gradient(scaled_loss, model.trainable_variables)
        bad = tf.cast(tf.logical_not(tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads] +
                                                   [tf.math.is_finite(summary["loss"])])), tf.float32)
        means = {k: v * share for k, v in summary.items() if not k.startswith("active_units")}
        # Per-example means over the global batch; `bad` counts the replicas that saw a non-finite value.
        means, bad = context.all_reduce(tf.distribute.ReduceOp.SUM, (means, bad))
        return means, grads, bad

    def apply(grads):
        optimizer.apply_gradients(zip(grads, model.trainable_variables))  # sums them across replicas

    @tf.function(input_signature=spec, autograph=False)
    def train_step(x, seed, step, betas, temperature):
        means, grads, bad = strategy.run(replica_step, args=(x, seed, step, betas, temperature))
        first = strategy.experimental_local_results  # the reduced values are equal on every replica
        means = {k: first(v)[0] for k, v in means.items()}
        for l in range(model.num_layers):
            means[f"active_units_z{l + 1}"] = objective.count_active_units(means[f"kl_per_dim_z{l + 1}"])
        # The skip is decided here, outside the replicas (an all-reduce cannot sit in a replica's tf.cond),
        # alike on every worker: a non-finite value on any replica skips the step on all.
        finite = tf.equal(first(bad)[0], 0.0)

        def update():
            strategy.run(apply, args=(grads,))
            return tf.constant(True)
        means["finite"] = tf.cond(finite, update, lambda: tf.constant(False))
        return means

    return train_step
