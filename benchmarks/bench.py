"""`make bench`: memberwise at scale, every figure measured in one run on this machine.

Usage: python benchmarks/bench.py [--members 100000 1000000] [--out bench-out]

For each size it generates a synthetic shop (``memberwise generate``), then measures:

- ``memberwise run``, stage by stage (ingest, tags, materialize, each model, register):
  wall time and peak resident memory of the process in that stage (sampled every 0.1 s);
- ``memberwise score``: wall time and peak memory;
- the decision API (``GET /v1/members/{id}/recommendations``, one uvicorn worker) against a
  bare FastAPI endpoint returning a body of the same size with the same server settings
  (benchmarks/bare_api.py): requests per second at ``--concurrency`` open connections for
  ``--seconds``, then p50 / p99 latency at half of each one's own maximum rate (open loop:
  requests leave on a fixed schedule and latency counts from the scheduled moment). The
  ratio of the two throughputs is the figure that counts; the load generator (httpx, in
  this process) shares the machine with the server, which caps both sides alike.

Writes ``OUT/bench.json`` and prints a table. Run stages and scoring run in child
processes, so each one's memory is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# run's progress lines that open each stage (pipelines/run.py), in order
STAGES: list[tuple[str, str]] = [
    ("reading ", "ingest"),
    ("computing member tags", "tags"),
    ("applying the Feast repo", "materialize"),
    ("training products", "model: products"),
    ("training churn", "model: churn"),
    ("training coupon", "model: coupon"),
    ("training similar", "model: similar"),
    ("training send time", "model: send_time"),
    ("logging to MLflow", "register"),
]


class Sampler:
    """Peak resident memory of this process between marks (a thread samples every 0.1 s)."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.wait(0.1):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def take(self) -> int:
        """The peak since the last take, in bytes; starts the next interval."""
        peak = max(self.peak, self.proc.memory_info().rss)
        self.peak = self.proc.memory_info().rss
        return peak


def _child_run(data: Path, home: Path, as_of: date, out: Path) -> None:
    """In a child process: `memberwise run`, timing and sampling memory stage by stage."""
    from features.settings import MemberwiseSettings
    from pipelines.run import run_pipeline

    sampler = Sampler()
    stages: list[dict[str, Any]] = []
    current: dict[str, Any] = {}

    def close() -> None:
        if current:
            stages.append({"stage": current["stage"], "seconds": time.perf_counter() - current["t0"],
                           "peak_rss_mb": sampler.take() / 2**20})  # fmt: skip

    def progress(msg: str) -> None:
        for prefix, name in STAGES:
            if msg.startswith(prefix):
                close()
                current.clear()
                current.update(stage=name, t0=time.perf_counter())
                sampler.take()
                break

    t0 = time.perf_counter()
    report = run_pipeline(data, as_of, MemberwiseSettings(home=home), progress=progress)
    close()
    total = time.perf_counter() - t0
    out.write_text(json.dumps({"stages": stages, "seconds": total,
                               "members": report["members"]}))  # fmt: skip


def _child_score(home: Path, out: Path) -> None:
    """In a child process: `memberwise score` into HOME/scores.parquet."""
    from features.settings import MemberwiseSettings
    from pipelines.score import write_scores

    sampler = Sampler()
    t0 = time.perf_counter()
    df = write_scores(
        MemberwiseSettings(home=home), home / "scores.parquet", progress=lambda m: None
    )
    out.write_text(json.dumps({"seconds": time.perf_counter() - t0, "rows": len(df),
                               "peak_rss_mb": sampler.take() / 2**20}))  # fmt: skip


def _in_child(args: list[str]) -> dict[str, Any]:
    out = Path(args[args.index("--result") + 1])
    subprocess.run([sys.executable, __file__, *args], check=True, cwd=ROOT)
    return json.loads(out.read_text())


# ------------------------------------------------------------------------------ the API


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    import httpx

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", *args, "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--log-level", "warning", "--no-access-log"],
        env={**os.environ, **env}, cwd=ROOT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/readyz", timeout=5).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server {args} exited with {proc.returncode}")
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"the server {args} did not become ready")


async def _closed_loop(base: str, paths: list[str], concurrency: int, seconds: float) -> dict:
    """Requests per second with ``concurrency`` connections each sending back to back."""
    import httpx

    done: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        for p in paths[:50]:  # warm-up
            await client.get(p)
        end = time.perf_counter() + seconds

        async def worker(k: int) -> None:
            nonlocal errors
            i = k
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                r = await client.get(paths[i % len(paths)])
                errors += r.status_code != 200
                done.append(time.perf_counter() - t0)
                i += concurrency

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {"rps": len(done) / elapsed, "requests": len(done), "errors": errors,
            **_percentiles(done)}  # fmt: skip


async def _open_loop(base: str, paths: list[str], rate: float, seconds: float) -> dict:
    """Latency at a fixed arrival rate, counted from each request's scheduled moment."""
    import httpx

    lat: list[float] = []
    n = max(int(rate * seconds), 1)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        start = time.perf_counter() + 0.05

        async def one(i: int) -> None:
            due = start + i / rate
            await asyncio.sleep(max(due - time.perf_counter(), 0))
            await client.get(paths[i % len(paths)])
            lat.append(time.perf_counter() - due)

        await asyncio.gather(*(one(i) for i in range(n)))
    return {"rate": rate, "requests": n, **_percentiles(lat)}


def _percentiles(xs: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(xs) * 1000 if xs else np.zeros(1)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def _api(home: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    import httpx
    import numpy as np
    import pandas as pd

    from features import repo
    from features.settings import MemberwiseSettings
    from pipelines.score import latest_as_of

    settings = MemberwiseSettings(home=home)
    snap = repo.snapshot_path(settings, latest_as_of(settings))
    ids = pd.read_parquet(snap, columns=["member_id"])["member_id"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    paths = [f"/v1/members/{m}/recommendations" for m in rng.choice(ids, size=5000)]
    out: dict[str, Any] = {}
    proc, base = _serve(["serving.main:app"], {"MEMBERWISE_HOME": str(home)})
    try:
        body = httpx.get(base + paths[0], timeout=30)
        body.raise_for_status()
        size = len(body.content)
        out["decision"] = asyncio.run(_closed_loop(base, paths, concurrency, seconds))
        half = out["decision"]["rps"] / 2
        out["decision_at_half_rate"] = asyncio.run(_open_loop(base, paths, half, seconds))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    proc, base = _serve(
        ["--app-dir", "benchmarks", "bare_api:app"], {"BENCH_BODY_BYTES": str(size)}
    )
    try:
        out["bare"] = asyncio.run(_closed_loop(base, paths, concurrency, seconds))
        half = out["bare"]["rps"] / 2
        out["bare_at_half_rate"] = asyncio.run(_open_loop(base, paths, half, seconds))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    out["body_bytes"] = size
    out["concurrency"] = concurrency
    out["rps_ratio"] = out["decision"]["rps"] / out["bare"]["rps"]
    return out


# ------------------------------------------------------------------------------ driver


def bench_size(members: int, work: Path, as_of: date, seed: int, concurrency: int,
               seconds: float) -> dict[str, Any]:  # fmt: skip
    data, home = work / f"data-{members}", work / f"home-{members}"
    result: dict[str, Any] = {"members": members}
    t0 = time.perf_counter()
    if not (data / "order_lines.parquet").exists():
        subprocess.run([sys.executable, "-m", "pipelines.cli", "generate", "--out", str(data),
                        "--members", str(members), "--seed", str(seed)],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)  # fmt: skip
        result["generate_seconds"] = time.perf_counter() - t0
    print(f"[{members:,}] run ...", file=sys.stderr, flush=True)
    result["run"] = _in_child(["_run", "--data", str(data), "--home", str(home),
                               "--as-of", as_of.isoformat(),
                               "--result", str(work / f"run-{members}.json")])  # fmt: skip
    print(f"[{members:,}] score ...", file=sys.stderr, flush=True)
    result["score"] = _in_child(["_score", "--home", str(home),
                                 "--result", str(work / f"score-{members}.json")])  # fmt: skip
    print(f"[{members:,}] API ...", file=sys.stderr, flush=True)
    result["api"] = _api(home, concurrency, seconds)
    return result


def table(results: list[dict[str, Any]]) -> str:
    """The results as a Markdown table, one column per size."""
    sizes = [f"{r['members']:,} members" for r in results]
    rows: list[tuple[str, list[str]]] = []
    names = list(dict.fromkeys(s["stage"] for r in results for s in r["run"]["stages"]))
    for name in names:
        cells = []
        for r in results:
            s = next((s for s in r["run"]["stages"] if s["stage"] == name), None)
            cells.append("" if s is None else f"{s['seconds']:.1f} s / {s['peak_rss_mb']:,.0f} MB")
        rows.append((f"run: {name}", cells))
    rows.append(("run: total", [f"{r['run']['seconds']:.1f} s / "
                                f"{max(s['peak_rss_mb'] for s in r['run']['stages']):,.0f} MB"
                                for r in results]))  # fmt: skip
    rows.append(("score", [f"{r['score']['seconds']:.1f} s / {r['score']['peak_rss_mb']:,.0f} MB "
                           f"({r['score']['rows']:,} rows)" for r in results]))  # fmt: skip
    for key, label in (("decision", "decision API"), ("bare", "bare FastAPI")):
        rows.append((f"{label}: req/s (p50 / p99 ms at max)",
                     [f"{r['api'][key]['rps']:,.0f} ({r['api'][key]['p50_ms']:.1f} / "
                      f"{r['api'][key]['p99_ms']:.1f})" for r in results]))  # fmt: skip
        half = key + "_at_half_rate"
        rows.append((f"{label}: p50 / p99 ms at half its max rate",
                     [f"{r['api'][half]['p50_ms']:.1f} / {r['api'][half]['p99_ms']:.1f}"
                      for r in results]))  # fmt: skip
    rows.append(("decision / bare req/s", [f"{r['api']['rps_ratio']:.2f}" for r in results]))
    lines = ["| | " + " | ".join(sizes) + " |", "|---|" + "---|" * len(sizes)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_run", "_score"):
        ap = argparse.ArgumentParser()
        ap.add_argument("--data", type=Path)
        ap.add_argument("--home", type=Path)
        ap.add_argument("--as-of", type=date.fromisoformat)
        ap.add_argument("--result", type=Path)
        a = ap.parse_args(argv[1:])
        if argv[0] == "_run":
            _child_run(a.data, a.home, a.as_of, a.result)
        else:
            _child_score(a.home, a.result)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    ap.add_argument("--as-of", type=date.fromisoformat, default=date(2025, 12, 31))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--concurrency", type=int, default=16, help="open connections at max rate")
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each load phase")
    a = ap.parse_args(argv)
    a.out = a.out.resolve()
    a.out.mkdir(parents=True, exist_ok=True)
    results = []
    for n in a.members:
        results.append(bench_size(n, a.out, a.as_of, a.seed, a.concurrency, a.seconds))
        doc = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                           "load_average": os.getloadavg()},
               "command": "python benchmarks/bench.py " + " ".join(argv), "results": results}  # fmt: skip
        (a.out / "bench.json").write_text(json.dumps(doc, indent=2))
    print(table(results))
    print(f"\nJSON: {a.out / 'bench.json'}")


if __name__ == "__main__":
    main()
