"""Data-parallel training step time per replica count, and the all-reduce's share of it.

    python -m benchmarks.distribution [--replicas=1,2,4] [--batch_size=256] [--steps=30] [--case=mnist_mlp]

For each replica count (1 = the default strategy; N > 1 = mirrored over N logical CPU devices, or
N GPUs where there are that many), in a process of its own (logical devices are fixed per process):
the median time of the training step on a fixed global batch, and the median time of the step's
communication alone: one all-reduce of tensors the size of every gradient, plus the all-reduce of
the step's terms. On a CPU, replicas share the same cores, so the step does not speed up; the figures
say what the replicas and their communication cost, for comparison with a GPU machine.
"""
import argparse
import json
import subprocess
import sys
import time

CASES = {  # flat settings of hvae_repr.config.TrainConfig, with the input shape of random binary data
    "mnist_mlp": (dict(latent_dims=(32, 16), hidden_units=256), (28, 28, 1)),
    "mnist_conv": (dict(architecture="conv", latent_dims=(256, 20)), (28, 28, 1)),
}


def child(replicas, batch_size, steps, case):
    import numpy as np

    from hvae_repr import cli, distribution
    from hvae_repr.config import TrainConfig
    from hvae_repr.model import HierarchicalVAE
    from hvae_repr.tf_env import tf
    from hvae_repr.trainer import make_train_step
    import keras

    settings, shape = CASES[case]
    gpus = len(tf.config.list_physical_devices("GPU"))
    strategy = "default" if replicas == 1 else "mirrored"
    config = cli.build(TrainConfig, workdir="unused", batch_size=batch_size, strategy=strategy,
                       cpu_replicas=replicas if replicas > 1 and gpus < replicas else 0, **settings)
    config = config.with_input_shape(shape)
    distribution.configure_devices(config)
    placement = distribution.Placement(config)
    with placement.scope():
        model = HierarchicalVAE(config.model).build_all()
        optimizer = keras.optimizers.Adam(1e-4)
        optimizer.build(model.trainable_variables)
    step = distribution.make_step(placement, model, optimizer, batch_size, shape,
                                  make_train_step(model, optimizer, batch_size, shape))
    x = (np.random.default_rng(0).random((batch_size,) + shape) < 0.3).astype(np.float32)
    args = lambda i: (x, tf.constant(0), tf.constant(i), np.ones(model.num_layers, np.float32), tf.constant(1.0))

    def median_seconds(fn):
        fn(0)  # trace
        times = []
        for i in range(steps):
            started = time.perf_counter()
            fn(i)
            times.append(time.perf_counter() - started)
        return float(np.median(times))

    step_seconds = median_seconds(lambda i: float(step(*args(i))["loss"]))
    comm_seconds = 0.0
    if replicas > 1:
        shapes = [v.shape for v in model.trainable_variables] + [()] * (4 + 2 * model.num_layers)

        @tf.function(autograph=False)
        def all_reduce():
            def replica():
                return tf.distribute.get_replica_context().all_reduce(
                    tf.distribute.ReduceOp.SUM, [tf.ones(s) for s in shapes])
            out = placement.strategy.run(replica)
            return placement.strategy.experimental_local_results(out[0])[0]
        comm_seconds = median_seconds(lambda i: all_reduce().numpy())
    parameters = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    print("RESULT " + json.dumps({"replicas": replicas, "devices": "GPU" if gpus >= replicas > 1 else "CPU",
                                  "step_ms": 1e3 * step_seconds, "all_reduce_ms": 1e3 * comm_seconds,
                                  "parameters": parameters}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--case", default="mnist_mlp", choices=sorted(CASES))
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.batch_size, args.steps, args.case)
    rows = []
    for replicas in (int(r) for r in args.replicas.split(",")):
        proc = subprocess.run([sys.executable, "-m", "benchmarks.distribution", f"--child={replicas}",
                               f"--batch_size={args.batch_size}", f"--steps={args.steps}", f"--case={args.case}"],
                              capture_output=True, text=True)
        if proc.returncode != 0 or "RESULT " not in proc.stdout:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"{replicas} replicas: failed: {last}")
            continue
        rows.append(json.loads(proc.stdout.split("RESULT ", 1)[1]))
    print(f"{args.case}, global batch {args.batch_size}, median of {args.steps} steps")
    print(f"{'replicas':>8} {'devices':>8} {'step ms':>9} {'examples/s':>11} {'all-reduce ms':>14} {'comm share':>11}")
    for r in rows:
        share = r["all_reduce_ms"] / r["step_ms"] if r["step_ms"] else 0.0
        print(f"{r['replicas']:>8} {r['devices']:>8} {r['step_ms']:>9.1f} {1e3 * args.batch_size / r['step_ms']:>11.0f} "
              f"{r['all_reduce_ms']:>14.2f} {share:>10.0%}")


if __name__ == "__main__":
    main()
