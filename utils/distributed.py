"""Multi-worker training with tf.distribute.MultiWorkerMirroredStrategy and a custom training loop.

Keras 3.15's ``model.fit`` fails under MultiWorkerMirroredStrategy ("Attempt to convert a value
(PerReplica...)", keras-team/keras#20585, tensorflow/tensorflow#72388), so the workers train with a plain loop:
``strategy.run`` of a ``GradientTape`` step on the Keras model and optimizer. Checkpoints are written every epoch;
a restarted cluster resumes from the last one. Each worker runs

    TF_CONFIG='{"cluster": {"worker": ["localhost:P0", "localhost:P1"]}, "task": {"type": "worker", "index": I}}' \
        python -m utils.distributed --data arrays.npz --checkpoints ckpt --epochs 4 --output weights

and ``launch_cluster`` starts such processes on one machine, for teaching and testing.

It is a teaching loop: every worker holds the whole data set in memory as arrays (``--data``), and there is no
augmentation, validation, metric or batch normalisation. A worker reads its cluster from ``TF_CONFIG`` only; under
SLURM, build ``TF_CONFIG`` from ``tf.distribute.cluster_resolver.SlurmClusterResolver`` before calling ``main``
(chapter 8 shows how).

Resuming assumes that every worker sees the checkpoint folder (``--checkpoints``) at the same path: one machine,
or several with a shared filesystem (NFS, a mounted bucket, or a ``gs://`` path that ``tf.io.gfile`` reads). Every
worker restores from the newest checkpoint in that folder, which the chief (worker 0) writes. On separate
machines without a shared folder, the other workers would find no checkpoint and start again at epoch 0 while
the chief resumes, and the cluster would hang or fail. The other workers must take part in every save; they
write into ``CHECKPOINTS/.worker-I-tmp``, which is deleted after each save.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from utils.config import REPO_ROOT

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


def free_ports(count: int) -> list[int]:
    """Ports that are free on localhost right now (the OS picks them)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def tf_config(ports: list[int], index: int) -> str:
    """The TF_CONFIG of worker ``index`` in a cluster of localhost workers on ``ports``."""
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def start(module: str, arguments: list[str], log_path: str | Path, **environment: str) -> subprocess.Popen:
    """Start ``python -m MODULE ARGUMENTS`` in the repository root, with ``environment`` added to its variables.

    Its output (stdout and stderr) goes to ``log_path``; the file is closed here once the process has started
    (the process keeps its own handle). Wait for it with ``wait_for``, which enforces a time limit.

    The process sees no GPU (``CUDA_VISIBLE_DEVICES`` empty): on a GPU runtime the notebook's kernel already holds
    the GPU's memory, and a second TensorFlow process that tried to take it too would fail. The workers of the
    chapters demonstrate the mechanics, which the CPU shows. To give a process a GPU, pass
    ``CUDA_VISIBLE_DEVICES="0"`` (for example) in ``environment``; it then allocates GPU memory as it needs it
    (``TF_FORCE_GPU_ALLOW_GROWTH``) rather than all at once.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="",
               TF_FORCE_GPU_ALLOW_GROWTH="true")
    env.update(environment)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", module, *arguments], env=env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=REPO_ROOT)


def launch_cluster(arguments: list[str], num_workers: int, log_dir: str | Path) -> list[subprocess.Popen]:
    """Start ``num_workers`` processes of ``python -m utils.distributed ARGUMENTS`` with their TF_CONFIG.

    Each worker's output goes to ``log_dir/worker-I.log`` (see ``start``). The caller waits with ``wait_for``.
    """
    ports = free_ports(num_workers)
    return [start("utils.distributed", arguments, Path(log_dir) / f"worker-{index}.log",
                  TF_CONFIG=tf_config(ports, index)) for index in range(num_workers)]


def wait_for(processes: list[subprocess.Popen], timeout: float) -> list[int | None]:
    """Wait up to ``timeout`` seconds for all processes; kill the ones still running.

    Returns the exit codes in the order of ``processes``, with None for a process killed at the time limit.
    """
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    codes = []
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()
            codes.append(None)  # None: had to be killed at the time limit
        else:
            codes.append(process.returncode)
    return codes


def train_custom_loop(strategy: tf.distribute.Strategy, data: dict[str, np.ndarray], epochs: int,
                      checkpoint_dir: str | Path, per_replica_batch: int = 4, learning_rate: float = 1e-3,
                      seed: int = 0, log: Callable[[str], None] = print) -> keras.Model:
    """Train the compact U-Net (no batch normalisation) with ``strategy`` and a custom loop; returns the model.

    The data order is a fixed function of (seed, epoch), so a resumed run sees exactly the batches the
    uninterrupted one saw. After every epoch a checkpoint (model, optimizer, epoch) is written; at start the
    latest one is restored and training continues from the epoch after it. With several workers, every worker
    must see ``checkpoint_dir`` (the same folder on one machine, or a shared filesystem; see the module's
    docstring); the other workers' temporary copies, ``checkpoint_dir/.worker-I-tmp``, are deleted after each save.

    An epoch is ``len(data["images"]) // global batch`` steps, the global batch being ``per_replica_batch`` times
    the replicas of all workers together (``strategy.num_replicas_in_sync``). Raises ValueError when the data
    holds fewer examples than one global batch.
    """
    import keras
    import tensorflow as tf

    from utils.losses import bce_dice_loss
    from utils.model import build_unet

    images, masks = data["images"], data["masks"]
    replicas = strategy.num_replicas_in_sync
    global_batch = per_replica_batch * replicas
    steps = len(images) // global_batch
    if steps == 0:
        smaller = f", or per_replica_batch={len(images) // replicas} or less" if len(images) >= replicas else ""
        raise ValueError(
            f"{len(images)} examples are fewer than one global batch of {global_batch} (per_replica_batch="
            f"{per_replica_batch} x {replicas} replicas in sync over all workers), so an epoch has no step: "
            f"pass at least {global_batch} examples{smaller}."
        )
    keras.utils.set_random_seed(seed)
    with strategy.scope():  # variables created here are mirrored on every replica
        model = build_unet("compact", images.shape[1], batch_norm=False)
        optimizer = keras.optimizers.Adam(learning_rate)
        optimizer.build(model.trainable_variables)
        epoch_counter = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_counter)
    task = getattr(strategy.cluster_resolver, "task_id", 0) if hasattr(strategy, "cluster_resolver") else 0
    is_chief = task == 0
    # Every worker must take part in saving; only the chief's copy is kept in checkpoint_dir.
    write_dir = Path(checkpoint_dir) if is_chief else Path(checkpoint_dir) / f".worker-{task}-tmp"
    manager = tf.train.CheckpointManager(checkpoint, str(write_dir), max_to_keep=2)
    latest = tf.train.latest_checkpoint(str(checkpoint_dir))
    if latest:
        checkpoint.restore(latest)
        log(f"restored {Path(latest).name}: resuming after epoch {int(epoch_counter.numpy())}")

    def dataset_for(epoch: int):
        def make(context: tf.distribute.InputContext):
            order = np.random.default_rng([seed, epoch]).permutation(len(images))
            ds = tf.data.Dataset.from_tensor_slices((images[order], masks[order]))
            ds = ds.batch(global_batch, drop_remainder=True).take(steps).unbatch()
            ds = ds.shard(context.num_input_pipelines, context.input_pipeline_id)
            return ds.batch(context.get_per_replica_batch_size(global_batch)).prefetch(2)
        return strategy.distribute_datasets_from_function(make)

    @tf.function
    def train_step(x, y):
        def replica_step(x, y):
            with tf.GradientTape() as tape:
                per_image = bce_dice_loss(y, model(x, training=True))
                loss = tf.nn.compute_average_loss(per_image, global_batch_size=global_batch)
            gradients = tape.gradient(loss, model.trainable_variables)
            # the gradients are all-reduced across replicas
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
            return loss
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(x, y)), axis=None)

    for epoch in range(int(epoch_counter.numpy()), epochs):
        start, total = time.perf_counter(), 0.0
        for x, y in dataset_for(epoch):
            total += float(train_step(x, y))
        epoch_counter.assign(epoch + 1)
        manager.save(checkpoint_number=epoch + 1)
        if not is_chief:  # its copy was written only so that it took part in the save
            tf.io.gfile.rmtree(str(write_dir))
        seconds = time.perf_counter() - start
        log(f"epoch {epoch + 1}/{epochs} loss {total / steps:.5f} ({seconds:.1f} s, {replicas} replicas)")
    return model


def main(argv: list[str] | None = None) -> None:
    """One worker of a cluster: read TF_CONFIG, train with the custom loop (or ``--use-fit``), save the weights."""
    parser = argparse.ArgumentParser(
        description="One worker of a MultiWorkerMirroredStrategy cluster (reads TF_CONFIG).")
    parser.add_argument("--data", required=True, help=".npz with arrays 'images' and 'masks'")
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4, help="per replica")
    parser.add_argument("--output", required=True, help="each worker writes OUTPUT-worker-I.npz with its final weights")
    parser.add_argument("--use-fit", action="store_true", help="train with model.fit instead (fails in Keras 3.15)")
    args = parser.parse_args(argv)
    if "TF_CONFIG" not in os.environ:
        raise SystemExit("TF_CONFIG is not set: start workers with utils.distributed.launch_cluster or set it per node")
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = strategy.cluster_resolver.task_id
    log = lambda message: print(f"[worker {task}] {message}", flush=True)  # noqa: E731
    log(f"cluster {json.loads(os.environ['TF_CONFIG'])['cluster']}; {strategy.num_replicas_in_sync} replicas in sync")
    data = dict(np.load(args.data))
    if args.use_fit:
        fit_under_strategy(strategy, data, args.batch_size)
        log("model.fit finished")
        return
    model = train_custom_loop(strategy, data, args.epochs, args.checkpoints, args.batch_size, log=log)
    np.savez(f"{args.output}-worker-{task}.npz", *model.get_weights())
    log("done")


def fit_under_strategy(strategy: tf.distribute.Strategy, data: dict[str, np.ndarray], per_replica_batch: int) -> None:
    """model.fit under the given strategy (the path that fails under MultiWorkerMirroredStrategy in Keras 3.15)."""
    import tensorflow as tf

    from utils.model import build_unet
    from utils.train import compile_model

    global_batch = per_replica_batch * strategy.num_replicas_in_sync
    with strategy.scope():
        model = compile_model(build_unet("compact", data["images"].shape[1], batch_norm=False))
    dataset = tf.data.Dataset.from_tensor_slices((data["images"], data["masks"]))
    dataset = dataset.batch(global_batch, drop_remainder=True)
    model.fit(dataset, epochs=1, verbose=0)


if __name__ == "__main__":
    main()
