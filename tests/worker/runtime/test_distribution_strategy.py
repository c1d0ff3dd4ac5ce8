"""RunContext.distribution_strategy(): TensorFlow's default strategy for runs on one device, a
MirroredStrategy over the first `gpus` GPUs for runs that ask for several; and a run trained under it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.runtime.local import LocalRunContext

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_a_local_context_asks_for_no_gpu_by_default(tmp_path):
    ctx = LocalRunContext(work_dir=tmp_path, show_progress=False)
    assert ctx.gpus == 0
    assert LocalRunContext(work_dir=tmp_path / "two", show_progress=False, gpus=2).gpus == 2


@pytest.mark.tf
@pytest.mark.parametrize("gpus", [0, 1])
def test_one_device_is_the_default_strategy(tmp_path, monkeypatch, gpus):
    import tensorflow as tf

    gpu = tf.config.LogicalDevice(name="/device:GPU:0", device_type="GPU")
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: [gpu] if kind == "GPU" else [])
    ctx = LocalRunContext(work_dir=tmp_path, show_progress=False, gpus=gpus)

    strategy = ctx.distribution_strategy()

    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1
    assert ctx.distribution_strategy() is strategy
    assert ctx.log_lines == []


@pytest.mark.tf
@pytest.mark.parametrize("gpus", [1, 2])
def test_asking_for_gpus_a_worker_does_not_see_trains_on_the_cpu(tmp_path, monkeypatch, gpus):
    import tensorflow as tf

    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: [])
    ctx = LocalRunContext(work_dir=tmp_path, show_progress=False, gpus=gpus)

    assert ctx.distribution_strategy() is tf.distribute.get_strategy()
    assert ctx.log_lines == [f"[warning] the run asks for gpus={gpus}; this worker sees 0: training on the CPU"]


# A process whose CPU is split into three logical devices that stand in for GPUs (TensorFlow fixes its
# devices when it starts, hence a process of its own). oneDNN's graph rewrites fail on CPU replicas
# of one physical CPU, so they are off; GPUs do not use them.
MIRRORED_TRAINING = """
import json, sys
from pathlib import Path
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 3)
stand_ins = tf.config.list_logical_devices("CPU")
list_logical_devices = tf.config.list_logical_devices
tf.config.list_logical_devices = lambda kind=None: stand_ins if kind == "GPU" else list_logical_devices(kind)

from worker.pipelines.base import DatasetRef, get_pipeline
from worker.pipelines.traffic_signs.synthetic import build_synthetic_signs
from worker.runtime.local import LocalRunContext


class RecordingContext(LocalRunContext):
    def keras_callbacks(self, **options):
        self.callbacks = super().keras_callbacks(**options)
        return self.callbacks


work = Path(sys.argv[1])
folder, sha256 = build_synthetic_signs(work / "cache", seed=101, images_per_class=4)
pipeline = get_pipeline("traffic_signs")
params = pipeline.resolve_params({"epochs": 1, "images_per_class": 4, "batch_size": 65})
ctx = RecordingContext(seed=101, work_dir=work / "run", show_progress=False, gpus=2)
result = pipeline.train(ctx, DatasetRef(folder, "gtsrb", "synthetic_signs", sha256), params)
strategy = ctx.distribution_strategy()
model = ctx.callbacks[0].model
print(json.dumps({
    "strategy": type(strategy).__name__,
    "replicas": strategy.num_replicas_in_sync,
    "devices": [device.rsplit("/", 1)[-1] for device in strategy.extended.worker_devices],
    "variables": sorted({type(variable.value).__name__ for variable in model.trainable_variables}),
    "metrics": sorted(ctx.metrics),
    "epochs_completed": result.summary["epochs_completed"],
    "model_files": sorted(path.name for path in result.model_dir.iterdir()),
}))
"""


@pytest.mark.tf
def test_a_run_asking_for_two_gpus_trains_mirrored_on_the_first_two(tmp_path):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(
        [sys.executable, "-c", MIRRORED_TRAINING, str(tmp_path)], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result == {
        "strategy": "MirroredStrategy",
        "replicas": 2,
        "devices": ["device:CPU:0", "device:CPU:1"],
        "variables": ["MirroredVariable"],
        "metrics": ["accuracy", "loss", "test_accuracy", "test_loss", "val_accuracy", "val_loss"],
        "epochs_completed": 1,
        "model_files": ["model.keras", "preprocessing.json"],
    }
