"""Recommenders: every model of chapter 9 on the built-in MovieLens and on the Online Retail sample.

    nice -n 10 .venv/bin/python bench/recommender.py
    nice -n 10 .venv/bin/python bench/recommender.py --datasets movielens --models popularity als mf bpr
    nice -n 10 .venv/bin/python bench/recommender.py --bpr-epochs 25      # reduced: BPR is the slowest
    nice -n 10 .venv/bin/python bench/recommender.py --retail "/path/to/Online Retail.xlsx" --retail-split dates

Each (dataset, model) pair trains with the book's defaults (override with --epochs) through a
LocalRunContext, the same code a worker runs, and prints validation precision@5 (the book's metric),
recall@10, NDCG@10, top-5 accuracy (sequence models; popularity-with-removal for popularity), the
lift over the popularity baseline and the training time. The Online Retail sample is read from
$DLSITE_REALDATA_DIR/online_retail (or --retail); its default split is `ratio` (the latest 20% of
interactions), since the sample ends in December 2010, before the book's 2011 dates. Then the
targets of issue 7 are checked: popularity < ALS < MF ~ BPR on precision@5, and MF >= 2x popularity.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm  # noqa: E402

from worker.pipelines.base import DatasetRef, get_pipeline  # noqa: E402
from worker.pipelines.recommender.data import build_movielens_small  # noqa: E402
from worker.runtime.local import LocalRunContext  # noqa: E402

MODELS = ("popularity", "als", "mf", "bpr", "lstm", "lstm_user")


def datasets(names: list[str], retail: Path | None, cache: Path) -> dict[str, DatasetRef]:
    found = {}
    if "movielens" in names:
        folder, digest = build_movielens_small(cache)
        found["movielens"] = DatasetRef(folder, "movielens", "builtin:movielens_small", digest)
    if "retail" in names:
        if retail is None and os.environ.get("DLSITE_REALDATA_DIR"):
            retail = Path(os.environ["DLSITE_REALDATA_DIR"]) / "online_retail"
        if retail is None or not retail.exists():
            print("skipping Online Retail: pass --retail or set DLSITE_REALDATA_DIR", file=sys.stderr)
        else:
            found["retail"] = DatasetRef(retail, "online_retail", retail.name, "")
    return found


def run_one(dataset: DatasetRef, model: str, overrides: dict, work: Path) -> dict:
    pipeline = get_pipeline("recommender")
    params = pipeline.resolve_params({"model": model, **overrides})
    ctx = LocalRunContext(seed=params.seed, work_dir=work / f"{dataset.kind}-{model}", show_progress=False)
    ctx.checkpoint_interval = 60.0  # as a worker does by default
    started = time.monotonic()
    result = pipeline.train(ctx, dataset, params)
    ctx.close()
    metrics = result.metrics
    return {
        "dataset": dataset.kind,
        "model": model,
        "epochs": params.epochs,
        "precision_at_5": metrics["precision_at_5"],
        "recall_at_10": metrics["recall_at_10"],
        "ndcg_at_10": metrics["ndcg_at_10"],
        "map_at_10": metrics["map_at_10"],
        "coverage_at_10": metrics["coverage_at_10"],
        "top5_accuracy": metrics.get("top5_accuracy"),
        "top5_accuracy_book_evaluation": metrics.get("top5_accuracy_book_evaluation"),
        "lift_precision_at_5": metrics.get("lift_precision_at_5"),
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": time.monotonic() - started,
        "split": result.summary["split"],
        "evaluated_users": result.summary["evaluated_users"],
        "evaluated_items": result.summary["evaluated_items"],
        "validation_groups": result.summary["validation_groups"],
    }


def table(rows: list[dict]) -> str:
    columns = ("dataset", "model", "epochs", "precision@5", "recall@10", "NDCG@10", "MAP@10", "coverage@10",
               "top-5 acc. (book eval)", "lift p@5", "train s")  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        accuracy = "" if row["top5_accuracy"] is None else f"{row['top5_accuracy']:.4f}"
        if row["top5_accuracy_book_evaluation"] is not None:
            accuracy += f" ({row['top5_accuracy_book_evaluation']:.4f})"
        epochs = row["epochs"] if row["model"] != "popularity" else "-"
        figures = [
            f"{row[key]:.4f}" for key in ("precision_at_5", "recall_at_10", "ndcg_at_10", "map_at_10", "coverage_at_10")
        ]
        cells = [row["dataset"], row["model"], epochs, *figures, accuracy, f"{row['lift_precision_at_5']:.2f}",
                 f"{row['train_seconds']:.1f}"]  # fmt: skip
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def check_targets(rows: list[dict]) -> list[str]:
    lines = []
    for dataset in sorted({row["dataset"] for row in rows}):
        precision = {row["model"]: row["precision_at_5"] for row in rows if row["dataset"] == dataset}
        if {"popularity", "als", "mf", "bpr"} <= set(precision):
            ordered = precision["popularity"] < precision["als"] < min(precision["mf"], precision["bpr"])
            close = abs(precision["mf"] - precision["bpr"]) <= 0.25 * max(precision["mf"], precision["bpr"])
            lines.append(f"{dataset}: popularity < ALS < MF, BPR: {ordered}; MF ~ BPR (within 25%): {close}")
        if {"popularity", "mf"} <= set(precision):
            lift = precision["mf"] / precision["popularity"] if precision["popularity"] else float("inf")
            lines.append(f"{dataset}: MF / popularity = {lift:.2f} (target >= 2): {lift >= 2}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["movielens", "retail"], choices=["movielens", "retail"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--retail", type=Path, help="an Online Retail .csv/.xlsx or a folder holding one")
    parser.add_argument(
        "--retail-split", default="auto", help="split for Online Retail (default auto: ratio on the sample)"
    )
    parser.add_argument("--epochs", type=int, help="override every model's epochs (default: the book's per model)")
    parser.add_argument("--bpr-epochs", type=int, help="override bpr's epochs only (the book's 75 take the longest)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-recommender-"))
    found = datasets(args.datasets, args.retail, work / "cache")
    rows = []
    jobs = [(name, model) for name in found for model in args.models]
    for name, model in tqdm(jobs, desc="training", unit="model"):
        overrides = {"epochs": args.epochs} if args.epochs else {}
        if model == "bpr" and args.bpr_epochs:
            overrides["epochs"] = args.bpr_epochs
        if name == "retail":
            overrides["split"] = args.retail_split
        row = run_one(found[name], model, overrides, work)
        tqdm.write(json.dumps(row))
        rows.append(row)
    print()
    print(table(rows))
    print()
    for line in check_targets(rows):
        print(line)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
