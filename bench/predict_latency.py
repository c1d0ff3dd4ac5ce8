"""Traffic-sign predictions over REST: dlsite beside MLflow's `models serve` on the same Keras model.

    .venv/bin/python bench/predict_latency.py [--duration 15] [--concurrency 1,8] [--data-dir DIR]

Starts the platform (`manage.py demo`: embedded in a temporary data folder, or against DATABASE_URL and
REDIS_URL when they are set), trains a small traffic_signs model over REST (or reuses the one of an
earlier run with the same --data-dir), and measures POST /api/v1/models/{id}/predict/ with one sign
image. Then it stops the platform, saves the same model.keras as an MLflow model with MLflow's own
virtualenv (MLFLOW_VENV, default /work/mlflow-venv; never dlsite's), serves it with
`mlflow models serve --env-manager local -w 1` and measures POST /invocations the same way.
Both servers are measured alone on the machine by the same client (bench/support/load.py).

The inputs are not quite the same, in MLflow's favour: dlsite gets the image file (multipart) and
decodes and preprocesses it on the worker; MLflow gets the preprocessed 32x32x1 tensor as JSON `inputs`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench.support.load import HttpRequest, LoadResult, multipart, run_load, send_once  # noqa: E402
from bench.support.harness import HOST, download_model, free_port, running_platform, train, wait_for  # noqa: E402

TRAIN_PARAMS = {"epochs": 2, "images_per_class": 30, "batch_size": 64}
MLFLOW_FLAVORS = ("tensorflow", "keras-export")


def trained_model(client: httpx.Client, data_dir: Path) -> dict:
    """{"model_id", "run_id"} of the benchmark's model: the one in data_dir if there is one, else a new one."""
    remembered = data_dir / "bench-predict-model.json"
    if remembered.exists():
        model = json.loads(remembered.read_text())
        if client.get(f"/api/v1/models/{model['model_id']}/").status_code == 200:
            return model
    print(f"training a traffic_signs model with {TRAIN_PARAMS} ...", flush=True)
    run = train(client, TRAIN_PARAMS)
    model = {"model_id": run["model_version"]["id"], "run_id": run["id"]}
    remembered.write_text(json.dumps(model))
    return model


def sign_image(data_dir: Path) -> Path:
    """One image of the synthetic training set (a GTSRB-style .ppm), as the worker generated it."""
    images = sorted((data_dir / "work").glob("**/synthetic_signs-*/**/*.ppm"))
    if not images:
        raise RuntimeError(f"no synthetic sign image under {data_dir / 'work'}")
    return images[len(images) // 2]


def measure(name: str, request: HttpRequest, args) -> list[tuple[str, LoadResult]]:
    results = []
    for concurrency in args.concurrency:
        result = run_load(request, concurrency=concurrency, warmup=args.warmup, duration=args.duration)
        print(f"  {name:<24} c={concurrency:<3} {result.requests_per_second:8.1f} req/s  "
              f"p50 {result.p50_ms:7.1f} ms  p99 {result.p99_ms:7.1f} ms  errors {result.errors}  "
              f"load {result.load_average:.1f}", flush=True)
        results.append((name, result))
    return results


@contextmanager
def mlflow_server(mlflow_venv: Path, model_file: Path, flavor: str, scratch: Path):
    """`mlflow models serve` of model_file saved as `flavor`, one worker; yields its port."""
    python = mlflow_venv / "bin" / "python"
    destination = scratch / f"mlflow-{flavor}"
    shutil.rmtree(destination, ignore_errors=True)
    subprocess.run(
        [python, Path(__file__).parent / "support" / "mlflow_model.py", model_file, destination, flavor],
        check=True, capture_output=True,
    )
    port = free_port()
    log_path = scratch / f"mlflow-{flavor}.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": (scratch / "mlruns").as_uri(),
           "PATH": f"{mlflow_venv / 'bin'}:{os.environ['PATH']}"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [mlflow_venv / "bin" / "mlflow", "models", "serve", "-m", destination, "--env-manager", "local",
             "-h", HOST, "-p", str(port), "-w", "1"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def up():
        if process.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited:\n{log_path.read_text()[-3000:]}")
        try:
            return httpx.get(f"http://{HOST}:{port}/ping", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=180, interval=0.5, message="mlflow models serve")
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def print_table(results: list[tuple[str, LoadResult]]) -> None:
    print()
    print("| server | concurrency | requests/s | p50 ms | p99 ms | errors | load average |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, result in results:
        print(f"| {name} | {result.concurrency} | {result.requests_per_second:.0f} | {result.p50_ms:.1f} | "
              f"{result.p99_ms:.1f} | {result.errors} | {result.load_average:.1f} |")
    dlsite = {r.concurrency: r for name, r in results if name == "dlsite"}
    for name, result in results:
        if name != "dlsite" and result.concurrency in dlsite and result.requests_per_second:
            ratio = dlsite[result.concurrency].requests_per_second / result.requests_per_second
            print(f"dlsite / {name} throughput at c={result.concurrency}: {ratio:.1f}x")
    print("Inputs differ in MLflow's favour: dlsite decodes and preprocesses an image file per request; "
          "MLflow gets the preprocessed 32x32x1 tensor.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured per concurrency")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--concurrency", type=lambda text: [int(c) for c in text.split(",")], default=[1, 8])
    parser.add_argument("--data-dir", type=Path, help="keep the platform's data (and model) here for reuse")
    parser.add_argument("--mlflow-venv", type=Path, default=Path(os.environ.get("MLFLOW_VENV", "/work/mlflow-venv")))
    parser.add_argument("--mlflow-flavors", default=",".join(MLFLOW_FLAVORS), help="'' to skip MLflow")
    parser.add_argument("--skip-dlsite", action="store_true")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="dlsite-bench-predict-"))
    data_dir = (args.data_dir or scratch / "var").resolve()
    results: list[tuple[str, LoadResult]] = []
    with running_platform(data_dir) as platform:
        with platform.client() as client:
            model = trained_model(client, data_dir)
            model_dir = download_model(client, model["run_id"], scratch / "model")
        image = sign_image(data_dir)
        body, content_type = multipart("file", image.name, image.read_bytes(), "image/x-portable-pixmap")
        request = HttpRequest(HOST, platform.port, "POST", f"/api/v1/models/{model['model_id']}/predict/", body,
                              {"Authorization": f"Token {platform.token}", "Content-Type": content_type})
        status, answer = send_once(request)
        if status != 200:
            raise RuntimeError(f"predict answered {status}: {answer[:500]!r}\n{platform.log_tail()}")
        dlsite_answer = json.loads(answer)["predictions"]
        print(f"dlsite: model {model['model_id']}, image {image.name} -> {dlsite_answer[0]}", flush=True)
        if not args.skip_dlsite:
            results += measure("dlsite", request, args)

    flavors = [flavor for flavor in args.mlflow_flavors.split(",") if flavor]
    if flavors and not (args.mlflow_venv / "bin" / "mlflow").exists():
        print(f"no MLflow in {args.mlflow_venv} (set MLFLOW_VENV): MLflow not measured")
        flavors = []
    if flavors:
        from worker.pipelines.traffic_signs import data

        preprocessing = json.loads((model_dir / "preprocessing.json").read_text())
        tensor = data.preprocess(data.read_image(image.read_bytes()), color_mode=preprocessing["color_mode"])
        mlflow_body = json.dumps({"inputs": tensor[None, :, :, None].tolist()}).encode()
    for flavor in flavors:
        with mlflow_server(args.mlflow_venv, model_dir / "model.keras", flavor, scratch) as port:
            mlflow_request = HttpRequest(HOST, port, "POST", "/invocations", mlflow_body, {"Content-Type": "application/json"})
            status, answer = send_once(mlflow_request)
            if status != 200:
                raise RuntimeError(f"MLflow answered {status}: {answer[:500]!r}")
            probabilities = json.loads(answer)["predictions"][0]
            class_ids = preprocessing["class_ids"]
            top = max(class_ids, key=lambda class_id: probabilities[class_id])
            print(f"mlflow {flavor}: top class {top}, p={probabilities[top]:.4f} "
                  f"({'same as' if top == dlsite_answer[0]['class_id'] else 'NOT the same as'} dlsite's)", flush=True)
            results += measure(f"mlflow models serve ({flavor})", mlflow_request, args)

    print_table(results)
    if not args.data_dir:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
