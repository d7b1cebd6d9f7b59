"""Two MultiWorkerMirroredStrategy workers on localhost: the custom loop works and cleans up; model.fit (still)
fails; the launcher closes its log files. The custom loop's step on two replicas equals one process's step."""
import gc
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from utils.distributed import free_ports, launch_cluster, start, tf_config, wait_for


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    rng = np.random.default_rng(0)
    images = rng.random((16, 32, 32, 1)).astype("float32")
    path = tmp_path_factory.mktemp("mw") / "arrays.npz"
    np.savez(path, images=images, masks=(images > 0.7).astype("float32"))
    return path


def test_tf_config_and_ports():
    ports = free_ports(2)
    assert len(set(ports)) == 2
    config = json.loads(tf_config(ports, 1))
    assert config["task"] == {"type": "worker", "index": 1}
    assert config["cluster"]["worker"][1] == f"localhost:{ports[1]}"


def test_launch_cluster_closes_its_log_files(tmp_path):
    logs = tmp_path / "logs"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)  # what an unclosed file gives when it is collected
        processes = launch_cluster(["--help"], 2, logs)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]
    assert wait_for(processes, timeout=180) == [0, 0]
    assert all("usage:" in (logs / f"worker-{i}.log").read_text() for i in (0, 1))


def test_worker_processes_start_without_the_gpu_unless_given_one(tmp_path, monkeypatch):
    # On a GPU runtime the notebook's kernel holds the GPU: the workers of chapters 8 and 10 (utils.distributed,
    # utils.tuning, both started by start()) must not try to take it as well.
    (tmp_path / "show_environment.py").write_text(
        "import json, os\n"
        "print(json.dumps({k: os.environ.get(k) for k in ('CUDA_VISIBLE_DEVICES', 'TF_FORCE_GPU_ALLOW_GROWTH')}))\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # what the kernel's own process may see
    default = start("show_environment", [], tmp_path / "default.log")
    given = start("show_environment", [], tmp_path / "given.log", CUDA_VISIBLE_DEVICES="1")
    assert wait_for([default, given], timeout=180) == [0, 0]
    seen = [json.loads((tmp_path / f"{name}.log").read_text()) for name in ("default", "given")]
    assert seen[0] == {"CUDA_VISIBLE_DEVICES": "", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    assert seen[1] == {"CUDA_VISIBLE_DEVICES": "1", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}


@pytest.mark.main_stack_only  # on the oldest stack chapter 8 trains two workers and compares their weights
def test_two_workers_train_and_keep_identical_weights(arrays, tmp_path):
    processes = launch_cluster(["--data", str(arrays), "--checkpoints", str(tmp_path / "ckpt"), "--epochs", "2",
                                "--output", str(tmp_path / "weights")], 2, tmp_path / "logs")
    assert wait_for(processes, timeout=180) == [0, 0], (tmp_path / "logs" / "worker-0.log").read_text()[-2000:]
    first, second = (np.load(tmp_path / f"weights-worker-{i}.npz") for i in (0, 1))
    assert all(np.array_equal(first[k], second[k]) for k in first.files)
    assert "epoch 2/2" in (tmp_path / "logs" / "worker-1.log").read_text()
    # worker 1 wrote its part of each save into ckpt/.worker-1-tmp; only the chief's checkpoints remain
    assert not list((tmp_path / "ckpt").glob(".worker-*")), sorted(p.name for p in (tmp_path / "ckpt").iterdir())


def test_model_fit_under_multi_worker_strategy_still_fails(arrays, tmp_path):
    """Tells when upstream fixes keras-team/keras#20585: then switch chapter 8 and utils.distributed to fit."""
    processes = launch_cluster(["--data", str(arrays), "--checkpoints", str(tmp_path / "ckpt"), "--output",
                                str(tmp_path / "weights"), "--use-fit"], 2, tmp_path / "logs")
    codes = wait_for(processes, timeout=180)
    log = (tmp_path / "logs" / "worker-0.log").read_text()
    if codes == [0, 0]:
        pytest.fail("model.fit now works under MultiWorkerMirroredStrategy: update chapter 8 and utils.distributed")
    assert "PerReplica" in log, log[-2000:]


def test_fewer_examples_than_one_global_batch_is_a_clear_error(tmp_path):
    import tensorflow as tf

    from utils.distributed import train_custom_loop

    images = np.zeros((3, 32, 32, 1), "float32")
    with pytest.raises(ValueError, match=r"3 examples are fewer than one global batch of 4 \(per_replica_batch=4 x "
                                         r"1 replicas.*pass at least 4 examples, or per_replica_batch=3 or less"):
        train_custom_loop(tf.distribute.get_strategy(), {"images": images, "masks": images}, 1, tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()  # it stops before it builds or writes anything


# Run in a fresh process: the two logical CPUs must be configured before TensorFlow initialises its devices.
ONE_STEP = """
import json, sys
import numpy as np
import tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from utils.distributed import train_custom_loop

# Adam's step hardly depends on the gradients' scale (m / sqrt(v)); plain SGD's is proportional to it, so a loss
# divided by the wrong batch size shows in the weights.
keras.optimizers.Adam = keras.optimizers.SGD
rng = np.random.default_rng(0)
images = rng.random((4, 32, 32, 1)).astype("float32")  # exactly one global batch: one step per epoch
data = {"images": images, "masks": (images > 0.7).astype("float32")}

def run(strategy, per_replica_batch, epochs, name):
    log = []
    model = train_custom_loop(strategy, data, epochs, f"{sys.argv[1]}/{name}", per_replica_batch,
                              learning_rate=0.1, log=log.append)
    return model.get_weights(), [float(line.split(" loss ")[1].split()[0]) for line in log if " loss " in line]

two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
one = tf.distribute.get_strategy()
(start_two, _), (start_one, _) = run(two, 2, 0, "two-start"), run(one, 4, 0, "one-start")
(after_two, loss_two), (after_one, loss_one) = run(two, 2, 1, "two"), run(one, 4, 1, "one")
update_two = [a - s for a, s in zip(after_two, start_two)]
update_one = [a - s for a, s in zip(after_one, start_one)]
norm = lambda arrays: float(np.sqrt(sum(np.sum(a.astype("float64") ** 2) for a in arrays)))
print(json.dumps({
    "replicas": two.num_replicas_in_sync,
    "same_start": all(np.array_equal(a, b) for a, b in zip(start_two, start_one)),
    "update": norm(update_one),
    "relative_difference": norm([a - b for a, b in zip(update_two, update_one)]) / norm(update_one),
    "loss_two": loss_two, "loss_one": loss_one,
}))
"""


def test_one_step_on_two_replicas_equals_one_step_in_one_process(tmp_path):
    """The custom loop divides the summed per-image loss by the global batch, so two replicas with two images each
    take the step one process takes on all four; dividing by the per-replica batch would double it.

    MirroredStrategy on two logical CPUs stands in for two workers: the loss scaling and the gradients' all-reduce
    are the same code; MultiWorkerMirroredStrategy's cross-process collectives are exercised above."""
    from utils.config import REPO_ROOT

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO_ROOT), CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", ONE_STEP, str(tmp_path)], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["same_start"]
    assert result["update"] > 1e-3  # the step moves the weights, far above float32 rounding
    assert result["relative_difference"] < 1e-3, result
    assert result["loss_two"] == pytest.approx(result["loss_one"], abs=2e-5), result
