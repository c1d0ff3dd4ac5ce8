"""Traffic signs through the platform: how long a default run takes, and how good the model gets.

    .venv/bin/python bench/traffic_signs.py              # epochs=1 and the book's 10 epochs
    DLSITE_REALDATA_DIR=../shared/realdata .venv/bin/python bench/traffic_signs.py --real

Starts the platform (`manage.py demo`, embedded unless DATABASE_URL/REDIS_URL are set) in a fresh data
folder, so the first run also pays for generating the built-in synthetic signs, as on a new machine.
With --real it also uploads the GTSRB sample (the book's own data, 43 classes, ~24 images each) as a
dataset and trains the book's setup on it.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import zipfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support.harness import running_platform, wait_for_run  # noqa: E402
from tests.conftest import wait_for  # noqa: E402


def submit_and_time(client, params: dict, dataset=None) -> tuple[dict, float]:
    started = time.monotonic()
    body = {"pipeline": "traffic_signs", "params": params}
    if dataset is not None:
        body["dataset"] = dataset
    response = client.post("/api/v1/runs/", json=body)
    response.raise_for_status()
    run = wait_for_run(client, response.json()["id"])
    return run, time.monotonic() - started


def phases(client, run_id: int) -> str:
    """Seconds from the run's start to each phase, read from its log."""
    lines = client.get(f"/api/v1/runs/{run_id}/logs/").json()
    start = datetime.fromisoformat(lines[0]["time"])
    marks = []
    for line in lines:
        message = line["message"]
        if message.startswith(("read ", "training on", "epoch ", "test_accuracy")):
            elapsed = (datetime.fromisoformat(line["time"]) - start).total_seconds()
            marks.append(f"    {elapsed:6.1f} s  {message[:90]}")
    return "\n".join(marks)


def weakest_classes(client, run_id: int, count: int = 5) -> str:
    artifacts = {a["name"]: a for a in client.get(f"/api/v1/runs/{run_id}/artifacts/").json()}
    report = client.get(artifacts["classification_report.json"]["download_url"]).json()
    classes = [(name, row) for name, row in report.items() if isinstance(row, dict) and "f1-score" in row
               and name not in ("macro avg", "weighted avg")]
    classes.sort(key=lambda item: item[1]["f1-score"])
    return ", ".join(f"{name} (F1 {row['f1-score']:.2f})" for name, row in classes[:count])


def report(title: str, client, run: dict, seconds: float) -> None:
    metrics = run["metrics"]
    print(f"{title}: {run['status']} in {seconds:.1f} s (submit to succeeded); "
          f"test_accuracy {metrics.get('test_accuracy', float('nan')):.3f}, "
          f"val_accuracy {metrics.get('val_accuracy', float('nan')):.3f}")
    print(phases(client, run["id"]))


def upload_real_gtsrb(client, realdata: Path) -> int:
    buffer = io.BytesIO()
    images = realdata / "gtsrb" / "Final_Training"
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(images.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(images.parent))
    response = client.post(
        "/api/v1/datasets/", data={"name": "gtsrb-sample", "kind": "gtsrb"},
        files={"file": ("gtsrb.zip", buffer.getvalue(), "application/zip")},
    )
    response.raise_for_status()
    dataset_id = response.json()["id"]
    dataset = wait_for(
        lambda: (body := client.get(f"/api/v1/datasets/{dataset_id}/").json())["status"] != "validating" and body,
        timeout=300, interval=0.5, message="dataset validation",
    )
    if dataset["status"] != "ready":
        raise RuntimeError(dataset["error"])
    print(f"uploaded the GTSRB sample: {dataset['stats']}")
    return dataset_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="also train on $DLSITE_REALDATA_DIR/gtsrb")
    parser.add_argument("--skip-full", action="store_true", help="only the one-epoch run")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dlsite-bench-") as scratch, \
            running_platform(Path(scratch) / "var") as platform, platform.client() as client:
        run, seconds = submit_and_time(client, {"epochs": 1})
        report("default dataset, epochs=1 (fresh machine: synthetic signs generated first)", client, run, seconds)
        if not arguments.skip_full:
            run, seconds = submit_and_time(client, {})
            report("default dataset, the book's 10 epochs", client, run, seconds)
            print(f"    weakest classes: {weakest_classes(client, run['id'])}")
        if arguments.real:
            realdata = Path(os.environ["DLSITE_REALDATA_DIR"])
            dataset_id = upload_real_gtsrb(client, realdata)
            run, seconds = submit_and_time(client, {"epochs": 10}, dataset=dataset_id)
            report("GTSRB sample (real images), the book's setup", client, run, seconds)
            print(f"    weakest classes: {weakest_classes(client, run['id'])}")


if __name__ == "__main__":
    main()
