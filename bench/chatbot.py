"""Chatbot: the default model's perplexity on held-out dialogue, sample replies, and reply latency
over the websocket at 1 and 20 concurrent chatters, with and without a training run going on.

    nice -n 10 .venv/bin/python bench/chatbot.py                  # the book's defaults (20 epochs)
    nice -n 10 .venv/bin/python bench/chatbot.py --epochs 100 --messages 20
    nice -n 10 .venv/bin/python bench/chatbot.py --params '{"optimizer": "adam"}'

Starts the platform (`manage.py demo`, embedded unless DATABASE_URL/REDIS_URL are set) in a fresh data
folder, trains `chatbot` with its defaults on the built-in chatterbot-corpus (English) over REST, and
prints the per-epoch perplexities, the held-out BLEU and the sample replies (the book's prompts and
held-out questions), and times the predictor's decoding paths in this process. Then chatters connect to `/ws/chat/<id>/` (`websockets`' asyncio client, in this
process) and each sends `--messages` messages one after the other; for each message the time to the
first `token` and to the `reply` is recorded. The first message of all, which makes the inference
worker load the model, is timed apart. With a training run: a second chatbot run (`--busy-epochs`)
is submitted and the chatters are measured again while it trains on the training worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support.harness import HOST, download_model, running_platform, train  # noqa: E402
from tests.conftest import wait_for  # noqa: E402

PROMPTS = (
    "how are you?", "where are you?", "are you here?", "are you a chatbot?", "what is your name ?",
    "hello", "what is ai?", "do you like movies?", "tell me a joke", "what is python?",
)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


async def chatter(uri: str, messages: int, offset: int, results: list) -> None:
    from websockets.asyncio.client import connect

    async with connect(uri, max_size=None) as socket:
        for index in range(messages):
            prompt = PROMPTS[(offset + index) % len(PROMPTS)]
            started = time.perf_counter()
            first_token = None
            tokens = 0
            await socket.send(json.dumps({"message": prompt}))
            while True:
                message = json.loads(await socket.recv())
                if message["type"] == "token":
                    tokens += 1
                    first_token = first_token or time.perf_counter() - started
                    continue
                break
            results.append({"type": message["type"], "reply_ms": (time.perf_counter() - started) * 1000,
                            "first_token_ms": None if first_token is None else first_token * 1000, "tokens": tokens})


async def chat(uri: str, *, chatters: int, messages: int) -> list[dict]:
    results: list[dict] = []
    await asyncio.gather(*(chatter(uri, messages, offset, results) for offset in range(chatters)))
    return results


def latency_row(label: str, results: list[dict]) -> str:
    replies = [r["reply_ms"] for r in results if r["type"] == "reply"]
    firsts = [r["first_token_ms"] for r in results if r["first_token_ms"] is not None]
    errors = sum(r["type"] != "reply" for r in results)
    tokens = statistics.mean(r["tokens"] for r in results)
    first = f"{percentile(firsts, 0.5):.1f} / {percentile(firsts, 0.99):.1f}" if firsts else "-"
    return (f"| {label} | {len(results)} | {errors} | {tokens:.1f} | {first} | "
            f"{percentile(replies, 0.5):.1f} / {percentile(replies, 0.99):.1f} |")


def stream_all(predictor, batch) -> dict:
    """Stream replies to a batch that joins at once, as an inference worker does; the outputs by index."""
    stream = predictor.open_stream()
    for index, inputs in enumerate(batch):
        stream.add(str(index), inputs)
    outputs = {}
    while stream:
        outputs.update(stream.step()[1])
    return outputs


def decoder_timings(model_dir: Path, repeats: int = 30) -> list[str]:
    """Milliseconds per call of the predictor's decoding paths, in this process (no platform)."""
    from worker.pipelines.base import PredictInput
    from worker.pipelines.chatbot.pipeline import ChatbotPredictor

    predictor = ChatbotPredictor(model_dir)
    rows = []
    for label, size, call in (
        ("greedy, whole loop compiled (predict_batch)", 1, lambda batch: predictor.predict_batch(batch)),
        ("greedy, whole loop compiled (predict_batch)", 20, lambda batch: predictor.predict_batch(batch)),
        ("greedy, one-step decoder in a Python loop (a reply stream)", 1, lambda batch: stream_all(predictor, batch)),
        ("greedy, one-step decoder in a Python loop (a reply stream)", 20, lambda batch: stream_all(predictor, batch)),
    ):
        batch = [PredictInput(data={"sentence": PROMPTS[index % len(PROMPTS)]}) for index in range(size)]
        call(batch)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            call(batch)
            times.append((time.perf_counter() - started) * 1000)
        rows.append(f"| {label} | {size} | {percentile(times, 0.5):.1f} | {percentile(times, 0.9):.1f} |")
    beam = [PredictInput(data={"sentence": "how are you?", "decoding": "beam", "beam_width": 5})]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.predict_batch(beam)
        times.append((time.perf_counter() - started) * 1000)
    rows.append(f"| beam search, width 5 | 1 | {percentile(times, 0.5):.1f} | {percentile(times, 0.9):.1f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the pipeline's, 20)")
    parser.add_argument("--messages", type=int, default=20, help="messages per chatter")
    parser.add_argument("--busy-epochs", type=int, default=200, help="epochs of the training run chatted during")
    parser.add_argument("--params", default="{}", help="more params of the trained run, as JSON")
    args = parser.parse_args()
    params = json.loads(args.params) | ({} if args.epochs is None else {"epochs": args.epochs})

    with tempfile.TemporaryDirectory(prefix="dlsite-bench-chat-") as folder, running_platform(Path(folder)) as platform:
        client = platform.client()
        started = time.monotonic()
        run = train(client, params, pipeline="chatbot")
        print(f"trained run {run['id']} ({json.dumps(run['params'])}) in {time.monotonic() - started:.0f} s "
              f"(submit to success); summary {json.dumps(run.get('summary'))}")
        metrics = client.get(f"/api/v1/runs/{run['id']}/metrics/").json()
        print("| epoch | loss | perplexity | val_perplexity |\n|---:|---:|---:|---:|")
        for loss, perplexity, validation in zip(metrics["loss"], metrics["perplexity"], metrics["val_perplexity"]):
            print(f"| {loss['step']} | {loss['value']:.3f} | {perplexity['value']:.2f} | {validation['value']:.2f} |")
        print(f"val_bleu {metrics['val_bleu'][-1]['value']:.4f}")
        artifacts = {artifact["name"]: artifact for artifact in client.get(f"/api/v1/runs/{run['id']}/artifacts/").json()}
        samples = client.get(artifacts["sample_replies.json"]["download_url"]).json()
        for sample in samples:
            expected = f"  (held out: {sample['expected']!r})" if "expected" in sample else ""
            print(f"  > {sample['in']!r} -> {sample['out']!r}{expected}")

        print("| decoding, in process | batch | p50, ms | p90, ms |\n|---|---:|---:|---:|")
        print("\n".join(decoder_timings(download_model(client, run["id"], Path(folder) / "model"))))

        model_id = run["model_version"]["id"]
        uri = f"ws://{HOST}:{platform.port}/ws/chat/{model_id}/?token={platform.token}"
        loading = asyncio.run(chat(uri, chatters=1, messages=1))[0]
        print(f"first reply (the inference worker loads the model): {loading['reply_ms']:.0f} ms")
        rows = []
        for chatters in (1, 20):
            rows.append(latency_row(f"{chatters} chatter(s), idle", asyncio.run(chat(uri, chatters=chatters, messages=args.messages))))

        busy = client.post("/api/v1/runs/", json={"pipeline": "chatbot", "params": {"epochs": args.busy_epochs}}).json()
        wait_for(lambda: client.get(f"/api/v1/runs/{busy['id']}/").json()["current_step"] >= 1, timeout=600,
                 message="the busy run's first epoch")
        for chatters in (1, 20):
            rows.append(latency_row(f"{chatters} chatter(s), training", asyncio.run(chat(uri, chatters=chatters, messages=args.messages))))
        still_running = client.get(f"/api/v1/runs/{busy['id']}/").json()["status"] == "running"
        client.post(f"/api/v1/runs/{busy['id']}/cancel/")
        print("| chatters | replies | errors | tokens per reply | first token p50 / p99, ms | reply p50 / p99, ms |")
        print("|---|---:|---:|---:|---:|---:|")
        print("\n".join(rows))
        print(f"the training run was still running at the end: {still_running}")


if __name__ == "__main__":
    main()
