"""A small HTTP/1.1 load client: N keep-alive connections, each sending one prepared request after
another for a fixed time, recording each request's latency.

Deliberately minimal (a prepared byte string out, a Content-Length or chunked body in) so that the
client, which shares the machine's cores with the servers it measures, takes as little CPU as it can,
the same for every server.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from statistics import median


@dataclass
class HttpRequest:
    host: str
    port: int
    method: str
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 f"Content-Length: {len(self.body)}", *(f"{name}: {value}" for name, value in self.headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


@dataclass
class LoadResult:
    concurrency: int
    latencies: list[float]  # seconds, requests that started after the warm-up
    seconds: float
    errors: int
    load_average: float = float("nan")  # the machine's 1-minute load average at the end, others' work included

    @property
    def requests_per_second(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")

    @property
    def p50_ms(self) -> float:
        return median(self.latencies) * 1000 if self.latencies else float("nan")

    @property
    def p99_ms(self) -> float:
        return self.percentile(0.99) * 1000


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, b"".join(chunks)
            chunks.append(chunk[:-2])
    raise RuntimeError(f"response without a length: {head!r}")


async def _connection(request: HttpRequest, payload: bytes, warm_until: float, stop_at: float, result: LoadResult,
                      last_end: list[float]) -> None:
    reader, writer = await asyncio.open_connection(request.host, request.port)
    try:
        while (started := time.perf_counter()) < stop_at:
            writer.write(payload)
            status, _ = await read_response(reader)
            ended = time.perf_counter()
            if started >= warm_until:
                result.latencies.append(ended - started)
                result.errors += status != 200
                last_end[0] = max(last_end[0], ended)
    finally:
        writer.close()


async def _load(request: HttpRequest, concurrency: int, warmup: float, duration: float) -> LoadResult:
    payload = request.encode()
    result = LoadResult(concurrency, [], 0.0, 0)
    warm_until = time.perf_counter() + warmup
    stop_at = warm_until + duration
    last_end = [warm_until]
    await asyncio.gather(*(_connection(request, payload, warm_until, stop_at, result, last_end) for _ in range(concurrency)))
    result.seconds = last_end[0] - warm_until
    result.load_average = os.getloadavg()[0]
    return result


def run_load(request: HttpRequest, *, concurrency: int, warmup: float, duration: float) -> LoadResult:
    """`concurrency` connections for `warmup` + `duration` seconds; figures over `duration` only."""
    try:
        import uvloop

        return uvloop.run(_load(request, concurrency, warmup, duration))
    except ImportError:
        return asyncio.run(_load(request, concurrency, warmup, duration))


async def _once(request: HttpRequest) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(request.host, request.port)
    try:
        writer.write(request.encode())
        return await read_response(reader)
    finally:
        writer.close()


def send_once(request: HttpRequest) -> tuple[int, bytes]:
    return asyncio.run(_once(request))


def multipart(field_name: str, filename: str, content: bytes, content_type: str) -> tuple[bytes, str]:
    """(body, Content-Type) of a multipart/form-data request with one file field."""
    boundary = "dlsite-bench-boundary-7c1e"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; filename=\"{filename}\"\r\n"
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
