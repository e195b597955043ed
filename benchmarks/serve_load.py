"""Load test of `elmo serve`: N concurrent clients sending single sentences, against offline `encode`.

Starts `elmo serve` (the bundled model unless --model) on 127.0.0.1, then alternates rounds of
(a) offline `Embedder.encode` over the sentences in a separate process with the same thread count,
and (b) N clients, each on its own keep-alive connection, posting one sentence at a time to
/v1/embeddings for --seconds. Reports requests/s, tokens/s, p50/p99 latency and the ratio of the
served tokens/s to the offline tokens/s of the same round (medians over rounds).

The clients are raw asyncio sockets in this process (a few us of CPU per request), so that the
load generator takes as little as possible from the server on a small machine; they still share
its cores, as does anything else running: on a shared machine the figures are noisy. So both sides
are also measured per CPU-second (the server's process CPU time from /proc, the offline process's
own), a ratio that other jobs on the machine disturb much less than wall-clock rates.

Run: python benchmarks/serve_load.py [--clients 32] [--seconds 10] [--rounds 3] [--threads 1] [--token-cache]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared/bench/bench_sentences.json"

OFFLINE = """
import json, sys, time, torch
from elmo_lm import Embedder
torch.set_num_threads(int(sys.argv[1]))
texts = json.load(open(sys.argv[2]))
embedder = Embedder(sys.argv[3] or None, token_cache=sys.argv[5] == "cache")
embedder.encode(texts[:32], layers="average", output="sentence")  # warm-up
tokens = sum(len(t.split()) for t in texts)
start, cpu = time.perf_counter(), time.process_time(); passes = 0
while time.perf_counter() - start < float(sys.argv[4]) or passes == 0:
    embedder.encode(texts, layers="average", output="sentence"); passes += 1
print(json.dumps({"tokens_per_s": passes * tokens / (time.perf_counter() - start),
                  "tokens_per_cpu_s": passes * tokens / (time.process_time() - cpu)}))
"""


def load_texts() -> list[str]:
    if BENCH.is_file():
        return [" ".join(tokens) for tokens in json.loads(BENCH.read_text())]
    return [line.strip() for line in (ROOT / "examples/sentences.txt").read_text().splitlines() if line.strip()]


def start_server(arguments: list[str], threads: int) -> tuple[subprocess.Popen, str, int]:
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    process = subprocess.Popen([sys.executable, "-m", "elmo_lm", "serve", "--port", "0", "--threads", str(threads),
                                *arguments], stderr=subprocess.PIPE, text=True, env=environment)
    for line in process.stderr:
        if line.startswith("elmo: serving on "):
            host, port = line.split()[-1].removeprefix("http://").rsplit(":", 1)
            for _ in range(600):  # bound before uvicorn accepts: wait until it does
                try:
                    socket.create_connection((host, int(port)), timeout=1).close()
                    return process, host, int(port)
                except OSError:
                    time.sleep(0.05)
    raise SystemExit(f"the server did not start (exit {process.wait()})")


async def one_client(host: str, port: int, texts: list[str], counts: list[int], first: int, step: int,
                     stop: float, latencies: list[float], tokens: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = first
    while time.monotonic() < stop:
        body = json.dumps({"input": texts[i % len(texts)]}).encode()
        started = time.perf_counter()
        writer.write(b"POST /v1/embeddings HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"server answered {head.splitlines()[0]!r}")
        latencies.append(time.perf_counter() - started)
        tokens.append(counts[i % len(texts)])
        i += step
    writer.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load_round(host: str, port: int, texts: list[str], counts: list[int], clients: int,
                     seconds: float, pid: int) -> dict:
    latencies: list[float] = []
    tokens: list[int] = []
    start, cpu = time.monotonic(), cpu_seconds(pid)
    await asyncio.gather(*(one_client(host, port, texts, counts, c, clients, start + seconds, latencies, tokens)
                           for c in range(clients)))
    elapsed, cpu = time.monotonic() - start, cpu_seconds(pid) - cpu
    latencies.sort()
    return {"requests_per_s": len(latencies) / elapsed, "tokens_per_s": sum(tokens) / elapsed,
            "tokens_per_cpu_s": sum(tokens) / cpu,
            "p50_ms": 1000 * latencies[len(latencies) // 2], "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)]}


def offline_round(texts_file: Path, model: str, threads: int, seconds: float, cache: bool) -> dict:
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    output = subprocess.run([sys.executable, "-c", OFFLINE, str(threads), str(texts_file), model, str(seconds),
                             "cache" if cache else "none"],
                            check=True, capture_output=True, text=True, env=environment).stdout
    return json.loads(output.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[32])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="Torch threads on each side (1: two threads collapse when other jobs share the cores).")
    parser.add_argument("--model", default="", help="A model folder (default: the bundled model).")
    parser.add_argument("--token-cache", action="store_true",
                        help="The token cache on both sides (elmo serve --token-cache, Embedder(token_cache=True)).")
    parser.add_argument("--server-args", default="", help="More `elmo serve` options, e.g. '--max-wait-ms 10'.")
    args = parser.parse_args()

    from elmo_lm.tokenize import tokenize

    texts = load_texts()
    counts = [len(tokenize(text)) for text in texts]
    texts_file = ROOT / "benchmarks" / ".serve_load_texts.json"
    texts_file.write_text(json.dumps(texts))
    server_args = (["--model", args.model] if args.model else []) + args.server_args.split()
    server_args += ["--token-cache"] if args.token_cache else []
    process, host, port = start_server(server_args, args.threads)
    try:
        asyncio.run(load_round(host, port, texts, counts, 8, 2.0, process.pid))  # warm-up
        for clients in args.clients:
            rows = []
            for _ in range(args.rounds):
                offline = offline_round(texts_file, args.model, args.threads, args.seconds, args.token_cache)
                served = asyncio.run(load_round(host, port, texts, counts, clients, args.seconds, process.pid))
                rows.append({**served, "offline_tokens_per_s": offline["tokens_per_s"],
                             "ratio": served["tokens_per_s"] / offline["tokens_per_s"],
                             "cpu_ratio": served["tokens_per_cpu_s"] / offline["tokens_per_cpu_s"]})
            median = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
            print(f"| {clients} | {median['requests_per_s']:,.0f} | {median['tokens_per_s']:,.0f} | "
                  f"{median['offline_tokens_per_s']:,.0f} | {median['ratio']:.0%} | {median['cpu_ratio']:.0%} | "
                  f"{median['p50_ms']:.0f} | {median['p99_ms']:.0f} |  (rounds: "
                  + ", ".join(f"{row['ratio']:.0%}/{row['cpu_ratio']:.0%}" for row in rows) + ")", flush=True)
    finally:
        process.terminate()
        process.wait(timeout=60)
        texts_file.unlink(missing_ok=True)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads, "
          f"{len(texts)} sentences, {sum(counts):,} tokens, token cache {'on' if args.token_cache else 'off'}, {args.seconds:.0f} s rounds; load average at the end "
          f"{os.getloadavg()[0]:.1f} (other jobs on the machine)")


if __name__ == "__main__":
    print("| clients | requests/s | tokens/s | offline tokens/s | ratio | ratio per CPU-second | p50 ms | p99 ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    main()
