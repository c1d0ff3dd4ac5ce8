"""What training through the platform costs: the traffic-sign model trained by a bare Keras script
and by a run submitted over REST to a warm worker, on the same data with the same settings.

    .venv/bin/python bench/training_overhead.py [--images-per-class 150] [--epochs 3] [--repeats 3]

1. The bare script (this file with --bare, in a process of its own, with the thread caps the
   platform's training worker gets): the synthetic signs generated beforehand, then timed: read and
   preprocess the images, split, build and compile `build_model()`, `model.fit` (3 epochs, batches of
   256, the held-out split as validation), evaluate, save the model. Like the platform's worker, the
   process is warm: it has trained for one epoch before the measured run (its cold first run's
   start-to-first-step is printed too).
2. The platform (`manage.py demo`, embedded in a temporary folder, or against DATABASE_URL and
   REDIS_URL when they are set). One unmeasured run with one epoch warms the training worker
   (TensorFlow imported, the dataset generated); then each measured run is POSTed to /api/v1/runs/
   while a websocket follows it.
Bare and platform runs alternate (the platform idles during a bare run), so that a change in the
machine's load during the benchmark weighs on both alike.

Printed, medians over the repeats:
- fit: the `model.fit` span (the pipeline's `train_seconds`, measured around the same call; in the
  platform it includes the progress reports and the checkpoints); ratio platform / bare.
- end to end: the bare script from its first line after the imports to the model saved, against the
  platform from POST /runs/ to the websocket's `succeeded` (plus, in the platform: claiming the run,
  confusion-matrix plots, the report, uploading checkpoints and the model, registering the version).
- submit-to-first-step: from POST /runs/ to the websocket event reporting the first training batch
  (a `progress` event of epoch 1). It includes reading and preprocessing the images, which the
  bare script does too; so beside it: submit-to-running (POST to the run's `started_at`: queue and
  claim), submit-to-first-event (POST to the first progress event, sent while the images are read),
  and the platform's share: submit-to-first-step minus the bare script's own time from its start
  to its first batch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support.harness import REPO_ROOT, running_platform, wait_for_run  # noqa: E402

SEED = 101
THREAD_VARIABLES = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


# The bare script ------------------------------------------------------------------------------


def bare_training(dataset_cache: Path, *, images_per_class: int, epochs: int, batch_size: int) -> dict:
    """The book's training of the traffic-sign CNN in plain Keras, timings in seconds: a first run of one
    epoch (unmeasured, as the platform's warm-up run), then the measured one, in the same process."""
    from worker.pipelines.traffic_signs.synthetic import build_synthetic_signs

    folder, _ = build_synthetic_signs(dataset_cache, seed=SEED, images_per_class=images_per_class)
    cold = train_once(folder, epochs=1, batch_size=batch_size)
    warm = train_once(folder, epochs=epochs, batch_size=batch_size)
    return {**warm, "cold_start_to_first_step": cold["start_to_first_step"]}


def train_once(folder: Path, *, epochs: int, batch_size: int) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf
    from sklearn.model_selection import train_test_split

    from worker.pipelines.traffic_signs import data
    from worker.pipelines.traffic_signs.labels import N_CLASSES
    from worker.pipelines.traffic_signs.model import build_model

    started = time.monotonic()
    listing = data.list_gtsrb(folder)
    images = data.load_samples(listing.samples)
    labels = np.array([sample.class_id for sample in listing.samples])
    load_seconds = time.monotonic() - started

    keras.utils.set_random_seed(SEED)
    train_index, test_index = train_test_split(np.arange(len(labels)), test_size=0.25, random_state=SEED)
    one_hot = np.eye(N_CLASSES, dtype=np.float32)[labels]

    def batches(index, shuffle):
        dataset = tf.data.Dataset.from_tensor_slices((images[index], one_hot[index]))
        if shuffle:
            dataset = dataset.shuffle(len(index), seed=SEED, reshuffle_each_iteration=True)
        return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001),
                  loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
    first_step = []
    first_step_callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: first_step or first_step.append(time.monotonic())
    )
    fit_started = time.monotonic()
    model.fit(batches(train_index, True), validation_data=batches(test_index, False), epochs=epochs,
              callbacks=[first_step_callback], shuffle=False, verbose=0)
    fit_seconds = time.monotonic() - fit_started

    probabilities = model.predict(images[test_index], batch_size=batch_size, verbose=0)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == labels[test_index]))
    with tempfile.TemporaryDirectory() as scratch:
        model.save(Path(scratch) / "model.keras")
    return {
        "load_seconds": load_seconds,
        "fit_seconds": fit_seconds,
        "start_to_first_step": first_step[0] - started,
        "end_to_end": time.monotonic() - started,
        "test_accuracy": accuracy,
    }


def run_bare(dataset_cache: Path, args) -> dict:
    threads = str(len(os.sched_getaffinity(0)))  # what `manage.py demo` gives its training worker
    env = {**os.environ, **{name: threads for name in THREAD_VARIABLES}, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, __file__, "--bare", str(dataset_cache), "--images-per-class", str(args.images_per_class),
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    output = subprocess.run(command, env=env, cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


# The platform -----------------------------------------------------------------------------------


def run_platform(platform, params: dict) -> dict:
    """One run over REST, followed on its websocket; timings in seconds."""
    from websockets.sync.client import connect

    with platform.client() as client:
        submitted_wall, submitted = time.time(), time.monotonic()
        response = client.post("/api/v1/runs/", json={"pipeline": "traffic_signs", "params": params})
        response.raise_for_status()
        run_id = response.json()["id"]
        url = platform.base_url.replace("http", "ws", 1) + f"/ws/runs/{run_id}/?token={platform.token}"
        first_event = first_step = finished = None
        with connect(url, open_timeout=10) as websocket:
            while finished is None:
                event = json.loads(websocket.recv(timeout=1800))
                if first_event is None and event["type"] in ("progress", "metrics"):
                    first_event = time.monotonic()
                if first_step is None and event["type"] == "progress" and event["message"].startswith("epoch ") and event["progress"] > 0:
                    first_step = time.monotonic()
                if event["type"] == "status" and event["status"] in ("succeeded", "failed", "cancelled"):
                    finished = time.monotonic()
                if event["type"] == "snapshot" and event.get("status") in ("succeeded", "failed", "cancelled"):
                    finished = time.monotonic()
        run = wait_for_run(client, run_id)
    started_at = datetime.fromisoformat(run["started_at"].replace("Z", "+00:00")).timestamp()
    return {
        "load_seconds": run["summary"]["load_seconds"],
        "fit_seconds": run["summary"]["train_seconds"],
        "submit_to_running": started_at - submitted_wall,
        "submit_to_first_event": first_event - submitted if first_event else float("nan"),
        "submit_to_first_step": first_step - submitted if first_step else float("nan"),
        "end_to_end": finished - submitted,
        "test_accuracy": run["metrics"]["test_accuracy"] if isinstance(run.get("metrics"), dict) else None,
    }


# Report --------------------------------------------------------------------------------------------


def rounded(timings: dict) -> str:
    return json.dumps({key: round(value, 3) if isinstance(value, float) else value for key, value in timings.items()})


def median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def report(bare: list[dict], platform: list[dict]) -> None:
    print()
    print("| | bare Keras script | dlsite run (REST, warm worker) | ratio |")
    print("|---|---:|---:|---:|")
    for label, key in (("read + preprocess images, s", "load_seconds"), ("model.fit, s", "fit_seconds"),
                       ("end to end, s", "end_to_end")):
        ratio = median(platform, key) / median(bare, key)
        print(f"| {label} | {median(bare, key):.2f} | {median(platform, key):.2f} | {ratio:.3f} |")
    to_first_step = median(platform, "submit_to_first_step")
    bare_first_step = median(bare, "start_to_first_step")
    print()
    print(f"submit-to-running (POST /runs/ to the run's started_at):          {median(platform, 'submit_to_running'):.2f} s")
    print(f"submit-to-first-event (POST /runs/ to the first progress event):   {median(platform, 'submit_to_first_event'):.2f} s")
    print(f"submit-to-first-step (POST /runs/ to the first batch's progress):  {to_first_step:.2f} s")
    print(f"  of which the bare script's own start-to-first-step takes:        {bare_first_step:.2f} s")
    print(f"  the platform's share:                                            {to_first_step - bare_first_step:.2f} s")
    print(f"(the bare script's start-to-first-step in a cold process:          {median(bare, 'cold_start_to_first_step'):.2f} s)")
    print(f"model.fit, each run: bare {[round(run['fit_seconds'], 2) for run in bare]} s, "
          f"platform {[round(run['fit_seconds'], 2) for run in platform]} s; "
          f"ratio of the fastest: {min(r['fit_seconds'] for r in platform) / min(r['fit_seconds'] for r in bare):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images-per-class", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bare", type=Path, metavar="DATASET_CACHE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        result = bare_training(args.bare, images_per_class=args.images_per_class, epochs=args.epochs, batch_size=args.batch_size)
        print(json.dumps(result))
        return

    scratch = Path(tempfile.mkdtemp(prefix="dlsite-bench-training-"))
    params = {"epochs": args.epochs, "images_per_class": args.images_per_class, "batch_size": args.batch_size, "seed": SEED}
    bare, platform_runs = [], []
    with running_platform(scratch / "var") as platform:
        run_platform(platform, {**params, "epochs": 1})  # warm: TensorFlow in the worker, the dataset built
        for repeat in range(1, args.repeats + 1):
            bare.append(run_bare(scratch / "datasets", args))
            print(f"bare run {repeat}: {rounded(bare[-1])}", flush=True)
            platform_runs.append(run_platform(platform, params))
            print(f"platform run {repeat}: {rounded(platform_runs[-1])}", flush=True)
    report(bare, platform_runs)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
