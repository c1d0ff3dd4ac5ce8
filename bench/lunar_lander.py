"""Lunar lander: how fast the `fast` preset solves LunarLander-v3, and where the book's agent stands.

    nice -n 10 .venv/bin/python bench/lunar_lander.py                       # fast preset, seeds 0 1 2; book 10 min
    nice -n 10 .venv/bin/python bench/lunar_lander.py --seeds 0 1 2 3 4 --book-minutes 0
    nice -n 10 .venv/bin/python bench/lunar_lander.py --seeds --book-minutes 0 --platform-episodes 100

For each seed the `fast` preset trains (at most --max-episodes episodes) until a greedy evaluation
reaches 200 and a 100-episode greedy test confirms it; then the saved network is tested again in
`test` mode (100 greedy episodes, nothing learned), the book's criterion. Reports episodes, training
wall time and CPU time (evaluations and tests included; on this shared machine the CPU time is what
an idle core would take) and environment steps per second of the training loop. Then the
`book` preset trains for --book-minutes minutes and is stopped: its episodes, 100-episode training
average and epsilon.

Runs the pipeline in this process through a LocalRunContext: the same training code a worker runs,
without the database writes, which happen on the RunContext's background thread. TensorFlow gets
--threads threads (1 by default): on this busy 2-core machine the fast preset's training step took
~1 ms on one thread and ~5 ms on two. With
--platform-episodes N it also starts the platform (`manage.py demo`, embedded, fresh data folder),
submits a `fast` run of N episodes over REST and reports the environment steps per second the
worker's run measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker.pipelines.base import get_pipeline  # noqa: E402
from worker.runtime.local import LocalRunContext  # noqa: E402


def train_fast(seed: int, max_episodes: int, work: Path) -> dict:
    pipeline = get_pipeline("lunar_lander")
    params = pipeline.resolve_params({"preset": "fast", "seed": seed, "episodes": max_episodes})
    ctx = LocalRunContext(seed=seed, work_dir=work / f"fast-{seed}", show_progress=True)
    ctx.checkpoint_interval = 60.0  # as a worker does by default
    started, cpu_started = time.monotonic(), time.process_time()
    result = pipeline.train(ctx, None, params)
    wall, cpu = time.monotonic() - started, time.process_time() - cpu_started
    ctx.close()

    test_params = pipeline.resolve_params({"mode": "test", "preset": "fast", "seed": seed})
    test_ctx = LocalRunContext(seed=seed, work_dir=work / f"test-{seed}", show_progress=False)
    test_ctx.initial_model_dir = result.model_dir
    test = pipeline.train(test_ctx, None, test_params)
    test_ctx.close()
    return {
        "seed": seed,
        "solved_at": result.summary["solved_at_episode"],
        "episodes": result.summary["episodes_played"],
        "train_seconds": result.summary["train_seconds"],
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "env_steps": result.summary["env_steps"],
        "steps_per_second": result.summary["env_steps_per_second"],
        "train_test_mean": result.metrics.get("test_score_mean"),
        "test_mode_mean": test.metrics["test_score_mean"],
        "test_mode_solved_fraction": test.metrics["test_solved_fraction"],
    }


def train_book(minutes: float, work: Path) -> dict:
    pipeline = get_pipeline("lunar_lander")
    params = pipeline.resolve_params({"preset": "book", "video_every_episodes": 0, "test_episodes": 0})
    ctx = LocalRunContext(seed=params.seed, work_dir=work / "book", show_progress=True)
    ctx.checkpoint_interval = 60.0
    timer = threading.Timer(minutes * 60, ctx.cancel)
    timer.start()
    started, cpu_started = time.monotonic(), time.process_time()
    result = pipeline.train(ctx, None, params)
    cpu = time.process_time() - cpu_started
    timer.cancel()
    ctx.close()
    episodes = result.summary["episodes_played"]
    return {
        "episodes": episodes,
        "wall_seconds": time.monotonic() - started,
        "cpu_seconds": cpu,
        "env_steps": result.summary["env_steps"],
        "steps_per_second": result.summary["env_steps_per_second"],
        "score_avg100": ctx.metrics["score_avg100"][episodes],
        "epsilon": result.summary["final_epsilon"],
        "best_avg100": max(ctx.metrics["score_avg100"].values()),
    }


def train_on_platform(episodes: int, work: Path) -> dict:
    from bench.support.harness import running_platform, train

    with running_platform(work / "platform") as platform, platform.client() as client:
        params = {"preset": "fast", "episodes": episodes, "stop_when_solved": False, "test_episodes": 10}
        run = train(client, params, pipeline="lunar_lander")
    return {"episodes": run["summary"]["episodes_played"], "env_steps": run["summary"]["env_steps"],
            "steps_per_second": run["summary"]["env_steps_per_second"], "train_seconds": run["summary"]["train_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--max-episodes", type=int, default=1000)
    parser.add_argument("--book-minutes", type=float, default=10.0)
    parser.add_argument("--platform-episodes", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1,
        help="TensorFlow's thread pools, as a worker's DLSITE_WORKER_THREADS caps them (the in-process runs only)",
    )
    args = parser.parse_args()
    for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(variable, str(args.threads))  # read when TensorFlow starts, in train

    work = Path(tempfile.mkdtemp(prefix="bench-lunar-"))
    rows = []
    for seed in args.seeds:
        row = train_fast(seed, args.max_episodes, work)
        rows.append(row)
        print(
            f"fast seed {seed}: solved at episode {row['solved_at']} ({row['episodes']} played), "
            f"episodes {row['train_seconds']:.0f} s, run {row['wall_seconds']:.0f} s wall / {row['cpu_seconds']:.0f} s CPU, "
            f"{row['env_steps']} env steps at {row['steps_per_second']:.0f}/s wall, "
            f"{row['env_steps'] / row['cpu_seconds']:.0f}/CPU s; greedy test in training {row['train_test_mean']:.1f}, "
            f"test mode {row['test_mode_mean']:.1f} ({row['test_mode_solved_fraction']:.0%} of episodes >= 200)",
            flush=True,
        )
    if rows:
        solved = [row for row in rows if row["solved_at"] is not None]
        print(f"fast: {len(solved)}/{len(rows)} seeds solved (test mode mean >= 200: "
              f"{sum(row['test_mode_mean'] >= 200 for row in rows)}/{len(rows)})")
        if solved:
            print(f"  episodes to solve: {[row['solved_at'] for row in solved]}, "
                  f"median {statistics.median(row['solved_at'] for row in solved)}")
            print(f"  run wall seconds: {[round(row['wall_seconds']) for row in solved]}, "
                  f"CPU seconds: {[round(row['cpu_seconds']) for row in solved]}, "
                  f"env steps/s wall: {[round(row['steps_per_second']) for row in rows]}, "
                  f"per CPU second: {[round(row['env_steps'] / row['cpu_seconds']) for row in rows]}")
    if args.book_minutes > 0:
        book = train_book(args.book_minutes, work)
        print(
            f"book preset after {book['wall_seconds'] / 60:.1f} min ({book['cpu_seconds'] / 60:.1f} min CPU): "
            f"{book['episodes']} episodes, {book['env_steps']} env steps at {book['steps_per_second']:.0f}/s wall, "
            f"{book['env_steps'] / book['cpu_seconds']:.0f}/CPU s, training average {book['score_avg100']:.1f} (best "
            f"{book['best_avg100']:.1f}), epsilon {book['epsilon']:.3f}"
        )
    if args.platform_episodes:
        platform = train_on_platform(args.platform_episodes, work)
        print(f"through the platform: {platform['episodes']} fast episodes, {platform['env_steps']} env steps in "
              f"{platform['train_seconds']:.0f} s of training: {platform['steps_per_second']:.0f} env steps/s")


if __name__ == "__main__":
    main()
