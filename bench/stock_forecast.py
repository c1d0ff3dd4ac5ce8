"""Chapter 5's four results reproduced with the book's settings, and the built-in MSFT 2000-2013 series.

    nice -n 10 .venv/bin/python bench/stock_forecast.py            # everything, the default seed counts
    nice -n 10 .venv/bin/python bench/stock_forecast.py --parts msft-lstm --msft-lstm-seeds 1   # one part

Part 1 trains the pipeline (through a LocalRunContext, the code a worker runs) with each of the
book's four settings, several seeds each, since the book's single run cannot be matched bit for bit
(TF1's initialisation draws differ): the mean, spread and range over seeds show the run-to-run noise
that the book's figure should fall in. `--cell-init book` gives the LSTM rows TF1's BasicLSTMCell
initialisation instead of Keras' (param `cell_init`). Beside each: the naive "tomorrow = today"
baseline computed correctly and by the book's broadcasting formula. The MSFT rows need the Quandl WIKI CSV
($DLSITE_REALDATA_DIR/stock_msft/WIKI-MSFT.csv, or --wiki-csv); without it they are skipped.

Part 2 asks whether any model beats the naive baseline on the built-in MSFT 2000-2013 series,
normalised, trained on the first 2500 windows (2000-03 .. 2010-02) and tested on the remaining 750.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker.pipelines.base import DatasetRef, get_pipeline  # noqa: E402
from worker.pipelines.stock_forecast import data  # noqa: E402
from worker.runtime.local import LocalRunContext  # noqa: E402

BOOK_SPAN = {"start": "2015-01-01", "end": "2016-12-31"}
# part name: (label, dataset, params, the book's test MSE)
BOOK_RESULTS = {
    "cosine-linear": (
        "cosine, linear (Adam lr 0.1, 1000 epochs)", "cosine", {"model": "linear", "preset": "cosine"}, 0.00454513,
    ),
    "cosine-lstm": (
        "cosine, LSTM (20 units, Adagrad lr 0.5, 10000 epochs)", "cosine", {"model": "lstm", "preset": "cosine"},
        0.00416444,
    ),
    "msft-linear": (
        "MSFT 2015-16, linear (Adam lr 0.5, 20000 epochs)", "wiki", {"model": "linear", **BOOK_SPAN}, 0.539493,
    ),
    "msft-lstm": (
        "MSFT 2015-16, LSTM (256 units, Adagrad lr 0.1, 5000 epochs)", "wiki", {"model": "lstm", **BOOK_SPAN},
        0.497867,
    ),
}  # fmt: skip
PARTS = (*BOOK_RESULTS, "default")
DEFAULT_SPLIT = {"normalize": True, "train_size": 2500}
DEFAULT_DATASET_MODELS = (
    ("linear, full batch, Adam lr 0.01, 5000 epochs", {"model": "linear", "learning_rate": 0.01, "epochs": 5000}),
    *(
        (f"{name}, 32 units, Adam lr 0.001, batches of 64, 100 epochs",
         {"model": name, "units": 32, "optimizer": "adam", "learning_rate": 0.001, "batch_size": 64, "epochs": 100,
          "output_init_stddev": 1.0})
        for name in ("lstm", "gru", "rnn")
    ),
)  # fmt: skip


class BenchContext(LocalRunContext):
    """A quiet LocalRunContext whose progress moves one shared bar."""

    def __init__(self, bar: tqdm, **kwargs):
        super().__init__(show_progress=False, **kwargs)
        self.bar = bar
        self.checkpoint_interval = 3600.0  # one checkpoint at the end, as a long platform run would

    def progress(self, done, total, message=""):
        self.bar.n = round(done / total, 3)
        self.bar.refresh()


def train(pipeline, dataset: DatasetRef, params, seed: int, work_root: Path, description: str) -> tuple[dict, dict]:
    with tqdm(total=1.0, desc=f"{description} seed {seed}", leave=False, bar_format="{l_bar}{bar}| {elapsed}") as bar:
        ctx = BenchContext(bar, seed=seed, work_dir=Path(tempfile.mkdtemp(dir=work_root)))
        result = pipeline.train(ctx, dataset, params)
        ctx.close()
    return result.metrics, result.summary


def dataset_for(pipeline, name: str, cache: Path, wiki_csv: Path | None) -> DatasetRef | None:
    if name == "wiki":
        if wiki_csv is None:
            return None
        return DatasetRef(wiki_csv.parent, "price_csv", wiki_csv.name, "")
    params = pipeline.resolve_params({})
    folder, sha256 = pipeline.builtin_dataset(name).build(cache, params)
    return DatasetRef(folder, "price_csv", f"builtin:{name}", sha256)


def summarise(values: list[float]) -> str:
    array = np.array(values)
    spread = f" ± {array.std(ddof=1):.6g}" if len(array) > 1 else ""
    return (
        f"{array.mean():.6g}{spread} (median {np.median(array):.6g}, min {array.min():.6g}, max {array.max():.6g}, "
        f"n={len(array)})"
    )


def least_squares_mse(values: np.ndarray, window: int, train_size: int) -> float:
    """The best a linear model can do on the training windows (closed form, the same with or without
    normalisation), scored on the test ones."""
    features, labels = data.format_dataset(values, window)
    design = np.c_[features, np.ones(len(features))]
    weights = np.linalg.lstsq(design[:train_size], labels[:train_size], rcond=None)[0]
    return float(np.mean(np.square(design[train_size:] @ weights - labels[train_size:])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="seeds per linear setting")
    parser.add_argument("--lstm-seeds", type=int, default=3, help="seeds per cosine LSTM setting")
    parser.add_argument("--msft-lstm-seeds", type=int, default=2, help="seeds of the MSFT LSTM (11+ min each on 2 cores)")
    parser.add_argument("--default-seeds", type=int, default=3, help="seeds per model on the built-in MSFT 2000-2013")
    realdata = os.environ.get("DLSITE_REALDATA_DIR")
    default_csv = Path(realdata) / "stock_msft" / "WIKI-MSFT.csv" if realdata else None
    parser.add_argument("--wiki-csv", type=Path, default=default_csv, help="the Quandl WIKI MSFT CSV")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to run (default: all)")
    parser.add_argument("--seed-values", nargs="+", type=int, help="these seeds for every part, instead of the counts")
    parser.add_argument(
        "--cell-init", choices=("keras", "book"), default="keras",
        help="the LSTM rows' kernel initialisation (param cell_init; book: TF1's BasicLSTMCell's)",
    )
    parser.add_argument("--epochs", type=int, help="override the book's epochs in part 1 (for a quick look)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="TensorFlow's thread pools, as a worker's DLSITE_WORKER_THREADS caps them",
    )
    args = parser.parse_args()
    for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(variable, str(args.threads))  # read when TensorFlow starts, in train

    pipeline = get_pipeline("stock_forecast")
    work_root = Path(tempfile.mkdtemp(prefix="bench-stock-"))
    cache = work_root / "cache"
    wiki_csv = args.wiki_csv if args.wiki_csv and args.wiki_csv.exists() else None

    print("Part 1: the book's four results (test MSE over seeds; the naive baseline does not depend on the seed)\n")
    for part, (label, dataset_name, overrides, book_mse) in BOOK_RESULTS.items():
        if part not in args.parts:
            continue
        dataset = dataset_for(pipeline, dataset_name, cache, wiki_csv)
        if dataset is None:
            print(f"{label}: skipped, no WIKI CSV (set DLSITE_REALDATA_DIR or --wiki-csv)\n")
            continue
        is_lstm = overrides["model"] == "lstm"
        if is_lstm:
            overrides = {**overrides, "cell_init": args.cell_init}
        if args.epochs:
            overrides = {**overrides, "epochs": args.epochs}
        count = (args.msft_lstm_seeds if dataset_name == "wiki" else args.lstm_seeds) if is_lstm else args.seeds
        seeds = args.seed_values or [101, *range(1, count)]
        runs = []
        started = time.monotonic()
        for seed in tqdm(seeds, desc=label[:40], leave=False):
            params = pipeline.resolve_params({**overrides, "seed": seed})
            runs.append(train(pipeline, dataset, params, seed, work_root, label[:30]))
        metrics = [run[0] for run in runs]
        summary = runs[0][1]
        print(f"{label}" + (f", cell_init {params.cell_init}" if is_lstm else "")
              + (f", {params.epochs} epochs" if args.epochs else ""))  # fmt: skip
        print(f"  data: {summary['values']} values ({summary['first_date']}..{summary['last_date']}), "
              f"{summary['train_windows']} train / {summary['test_windows']} test windows")  # fmt: skip
        print(f"  book test MSE      {book_mse}")
        print(f"  test MSE           {summarise([m['mse'] for m in metrics])}")
        print(f"  test MAE           {summarise([m['mae'] for m in metrics])}")
        print("  per seed           " + ", ".join(f"{seed}: {m['mse']:.6g}" for seed, m in zip(seeds, metrics)))
        print(f"  naive, correct     mse {metrics[0]['naive_mse']:.6g}, mae {metrics[0]['naive_mae']:.6g}")
        print(f"  naive, book's formula  mse {metrics[0]['naive_mse_book_formula']:.6g}, "
              f"mae {metrics[0]['naive_mae_book_formula']:.6g}")  # fmt: skip
        if overrides["model"] == "linear":
            series = data.read_series(dataset.path, start=_date(overrides.get("start")), end=_date(overrides.get("end")))
            optimum = least_squares_mse(series.values, 20, summary["train_windows"])
            print(f"  least squares (the linear model's optimum on the training windows): test mse {optimum:.6g}")
        print(f"  {time.monotonic() - started:.0f} s for {len(seeds)} run(s), {summary['parameters']} parameters\n")

    if "default" not in args.parts:
        return
    print("Part 2: built-in MSFT 2000-2013, normalised, first 2500 windows train, the remaining 750 test\n")
    dataset = dataset_for(pipeline, "msft", cache, wiki_csv)
    beaten = []
    naive = None
    for label, overrides in DEFAULT_DATASET_MODELS:
        runs = []
        started = time.monotonic()
        for seed in tqdm(args.seed_values or [101, *range(1, args.default_seeds)], desc=label[:40], leave=False):
            params = pipeline.resolve_params({**overrides, **DEFAULT_SPLIT, "seed": seed})
            runs.append(train(pipeline, dataset, params, seed, work_root, label[:30]))
        metrics = [run[0] for run in runs]
        naive = metrics[0]
        mses = [m["mse"] for m in metrics]
        wins = sum(mse < naive["naive_mse"] for mse in mses)
        if wins:
            beaten.append(label)
        print(f"{label}")
        print(f"  test MSE {summarise(mses)}; MAE {summarise([m['mae'] for m in metrics])}")
        print(f"  seeds beating the naive MSE: {wins}/{len(mses)}; {time.monotonic() - started:.0f} s\n")
    series = data.read_series(dataset.path)
    optimum = least_squares_mse(series.values, 20, DEFAULT_SPLIT["train_size"])
    print(f"naive, correct: mse {naive['naive_mse']:.6g}, mae {naive['naive_mae']:.6g}; "
          f"the book's formula: mse {naive['naive_mse_book_formula']:.6g}")  # fmt: skip
    print(f"least squares linear optimum on the training windows: test mse {optimum:.6g}")
    print(f"models with a seed beating the naive forecast: {', '.join(beaten) if beaten else 'none'}")


def _date(text: str | None):
    import datetime

    return datetime.date.fromisoformat(text) if text else None


if __name__ == "__main__":
    main()
