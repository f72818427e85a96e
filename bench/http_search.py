"""Search by image id over HTTP under concurrent clients: vector backend x API workers.

One database of SYNTHETIC clustered vectors (filled like bench/ingest.py, bench/_vectors.py)
is served in turn by real `endoseek serve` processes (bench/_served.py):
  a. FAISS in-process index, 1 worker (the embedded default);
  b. a real Milvus 2.3.5 server on loopback (tests/milvus_server.py), 1 worker;
  c. the same Milvus server, 2 workers (`ENDOSEEK_WORKERS=2`, what `serve --workers 2` reads).
FAISS with 2 workers is refused by design (each worker would hold its own index); the script
asks `endoseek serve` for it anyway and reports the refusal it gets.

Per config: `--clients` async httpx clients (one connection each) POST /v1/search
{"image_id", "k"} with random stored images for `--warmup` seconds (discarded), then for
`--duration` seconds (measured). Reported: requests/s over the window (and the median of its
1-second windows), p50/p99 latency of the successful requests, and errors (non-200, fewer
than k results, or transport errors). Rate limiting is off (ENDOSEEK_RATE_LIMIT_PER_MINUTE=0).

The clients run in this process on the same machine as the server(s), so they take CPU from
them; on a small machine that caps every config alike.

Usage:
    nice .venv/bin/python bench/http_search.py --vectors 100000 --duration 60 \
        --write-docs docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.db import migrate  # noqa: E402
from app.db.models import Image as ImageRow  # noqa: E402
from app.db.session import create_db_engine  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench._bundles import LABELS, MODELS, bench_bundle  # noqa: E402
from bench._docs import write_section  # noqa: E402
from bench._measure import timed  # noqa: E402
from bench._served import CLI, Served, free_port, service_env  # noqa: E402
from bench.ingest import SECTION, _fill, _machine  # noqa: E402
from bench.load import _pct  # noqa: E402
from embedder import Embedder  # noqa: E402

SUBSECTION = "Search over HTTP: workers and backends"
CONFIGS = {"faiss-1": ("faiss", 1), "milvus-1": ("milvus", 1), "milvus-2": ("milvus", 2)}
MS = 1000.0


@dataclass
class Window:
    """What the clients saw in one measured window."""

    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    done_at: list[float] = field(default_factory=list)  # monotonic end of each success
    errors: list[str] = field(default_factory=list)
    start: float = field(default_factory=time.monotonic)


# -- load -------------------------------------------------------------------------------------
async def _client(n: int, srv: Served, uids: list[str], k: int, end: float, out: Window) -> None:
    rng = random.Random(n)
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(
        base_url=srv.base, headers=srv.headers, timeout=60, limits=limits
    ) as c:
        while time.monotonic() < end:
            body = {"image_id": rng.choice(uids), "k": k}
            t0 = time.perf_counter()
            try:
                r = await c.post("/v1/search", json=body)
                ok = r.status_code == 200 and len(r.json()["results"]) == k
                err = f"{r.status_code} {r.text[:200]}"
            except httpx.HTTPError as exc:
                ok, err = False, f"{type(exc).__name__}: {exc}"
            if ok:
                out.latencies.append(time.perf_counter() - t0)
                out.done_at.append(time.monotonic())
            else:
                out.errors.append(err)


async def _load(srv: Served, uids: list[str], clients: int, k: int, seconds: float) -> Window:
    out = Window()
    end = time.monotonic() + seconds
    await asyncio.gather(*(_client(n, srv, uids, k, end, out) for n in range(clients)))
    return out


def _figures(w: Window, seconds: float) -> dict[str, float | int | str]:
    """Throughput, median per-second throughput, p50/p99 (ms), errors."""
    per_s = [0] * max(1, int(seconds))
    for t in w.done_at:
        per_s[min(len(per_s) - 1, int(t - w.start))] += 1
    lat_ms = [x * MS for x in w.latencies]
    return {
        "requests": len(w.latencies),
        "rate": len(w.latencies) / seconds,
        "rate_median_1s": statistics.median(per_s),
        "p50_ms": _pct(lat_ms, 50),
        "p99_ms": _pct(lat_ms, 99),
        "errors": len(w.errors),
        "error_sample": w.errors[0] if w.errors else "",
    }


# -- configs ----------------------------------------------------------------------------------
def _refusal(work: Path, bundle: Path) -> str:
    """What `endoseek serve --workers 2` says with the FAISS backend (it must refuse)."""
    env = service_env(work, bundle, ENDOSEEK_PORT=str(free_port()), ENDOSEEK_VECTOR_BACKEND="faiss")
    out = subprocess.run(
        [*CLI, "serve", "--workers", "2"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    first = out.stderr.strip().splitlines()[0] if out.stderr.strip() else "(no message)"
    if out.returncode == 0:
        return f"NOT refused (exit 0): {first}"
    return f"refused by design (exit {out.returncode}): {first.split(' (')[0].split(', but ')[0]}"


def _serve_env(backend: str, workers: int, milvus_uri: str, prefix: str) -> dict[str, str]:
    env = {
        "ENDOSEEK_VECTOR_BACKEND": backend,
        "ENDOSEEK_WORKERS": str(workers),
        "ENDOSEEK_RATE_LIMIT_PER_MINUTE": "0",
        "ENDOSEEK_JOBS_AUTO_RESUME": "false",
    }
    if backend == "milvus":
        env |= {"ENDOSEEK_MILVUS_URI": milvus_uri, "ENDOSEEK_MILVUS_PREFIX": prefix}
    return env


def run_config(
    name: str, work: Path, bundle: Path, uids: list[str], milvus_uri: str, args: argparse.Namespace
) -> dict[str, object]:
    backend, workers = CONFIGS[name]
    log = (work / f"serve-{name}.log").open("wb")
    t0 = time.perf_counter()
    with Served(
        work, ["search"], bundle=bundle, log=log, ready_s=args.ready_s,
        **_serve_env(backend, workers, milvus_uri, args.prefix),
    ) as srv:  # fmt: skip
        start_s = time.perf_counter() - t0
        procs = _serving_processes(srv.proc.pid)
        asyncio.run(_load(srv, uids, args.clients, args.k, args.warmup))
        load0 = os.getloadavg()[0]
        window = asyncio.run(_load(srv, uids, args.clients, args.k, args.duration))
        load1 = os.getloadavg()[0]
    log.close()
    res = {
        **{"name": name, "backend": backend, "workers": workers, "processes": procs},
        **{"start_s": start_s, "load": (load0, load1)},
        **_figures(window, args.duration),
    }
    print(res, flush=True)
    return res


def _serving_processes(pid: int) -> int:
    """Processes answering HTTP: the server itself, or uvicorn's spawned workers (not its
    multiprocessing resource tracker)."""
    kids = psutil.Process(pid).children()
    workers = [p for p in kids if "spawn_main" in " ".join(p.cmdline())]
    return len(workers) or 1


def milvus_alone(uri: str, prefix: str, model_id: str, k: int, queries: int) -> dict[str, float]:
    """Median ms of sequential top-(k+1) searches (as the route: k + the query image) straight
    through pymilvus on the service's collection, per consistency level: where a Milvus
    search's time goes, without HTTP."""
    from indexer.backends import collection_name, connect
    from indexer.milvus_index import MilvusIndex

    client = connect(uri)
    try:
        index = MilvusIndex(client, collection_name(model_id, prefix))
        rng = np.random.default_rng(2)
        q = rng.standard_normal((queries, index.dim)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        out = {}
        for level in ("Strong", "Session", "Bounded"):
            index.consistency = level
            index.search(q[:1], k + 1)  # untimed
            out[level] = statistics.median(timed(lambda v=v: index.search(v[None, :], k + 1))
                                           for v in q) * MS  # fmt: skip
        return out
    finally:
        client.close()


def drop_collections(uri: str, prefix: str) -> None:
    """Leave a server that outlives the benchmark as it was: drop the alias and collections
    of this run's `prefix`."""
    from indexer.backends import MilvusGenerations, connect

    client = connect(uri)
    try:
        alias = MilvusGenerations(client, prefix).alias
        if alias in client.list_aliases().get("aliases", []):
            client.drop_alias(alias)
        for name in client.list_collections():
            if name.startswith(prefix + "_"):
                client.drop_collection(name)
    finally:
        client.close()


def _pick_uids(url: str, n: int, count: int) -> list[str]:
    rng = random.Random(1)
    picks = rng.sample(range(1, n + 1), min(count, n))
    engine = create_db_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ImageRow.uid).where(ImageRow.id.in_(picks))).all()
    engine.dispose()
    return [str(r[0]) for r in rows]


def run(args: argparse.Namespace, work: Path) -> dict[str, object]:
    bundle = bench_bundle(args.model, work / "bundle")
    emb = Embedder.from_bundle(bundle, device="cpu")
    dim, model_id = emb.dim, emb.bundle_id
    url = f"sqlite:///{work / 'service.db'}"  # the database Served opens under `work`
    migrate.upgrade(url)
    t0 = time.perf_counter()
    _fill(url, emb, args.vectors)
    fill_s = time.perf_counter() - t0
    del emb
    gc.collect()
    uids = _pick_uids(url, args.vectors, args.pool)
    results = []
    if "faiss-1" in args.configs:
        results.append(run_config("faiss-1", work, bundle, uids, "", args))
    refusal = _refusal(work, bundle)
    milvus_start_s, alone = 0.0, {}
    wanted = [name for name in ("milvus-1", "milvus-2") if name in args.configs]
    if wanted:
        from tests.milvus_server import MilvusServer

        t0 = time.perf_counter()
        server = None
        uri = args.milvus_uri
        if not uri:
            server = MilvusServer(work / "milvus", free_port())
            server.start()
            uri = server.uri
        milvus_start_s = time.perf_counter() - t0
        try:
            for name in wanted:
                results.append(run_config(name, work, bundle, uids, uri, args))
            alone = milvus_alone(uri, args.prefix, model_id, args.k, args.alone_queries)
            print("Milvus alone, median ms:", alone, flush=True)
        finally:
            if server is not None:
                server.stop()
            else:
                drop_collections(uri, args.prefix)
    settings = Settings(_env_file=None)
    return {
        "dim": dim, "fill_s": fill_s, "milvus_start_s": milvus_start_s, "refusal": refusal,
        "faiss_kind": "flat" if args.vectors <= settings.flat_index_limit else "HNSW",
        "milvus_kind": settings.milvus_index, "results": results, "alone": alone,
    }  # fmt: skip


# -- report -----------------------------------------------------------------------------------
def render(args: argparse.Namespace, out: dict) -> str:
    kinds = {"faiss": f"FAISS in-process ({out['faiss_kind']})",
             "milvus": f"Milvus 2.3.5 server, loopback ({out['milvus_kind']}, Strong)"}  # fmt: skip
    lines = [
        f"### {SUBSECTION}",
        "",
        *_machine(args),
        f"{args.vectors:,} SYNTHETIC clustered vectors x {out['dim']} "
        f"({LABELS[args.model]}), k={args.k}; {args.clients} concurrent async httpx clients "
        f"(one connection each, in the bench process on the same CPUs) POST /v1/search by "
        f"stored image id for {args.warmup:g} s of warm-up, then {args.duration:g} s measured, "
        "per config; rate limiting off. Requests/s = successful requests / window (median of "
        "its 1-second windows beside it); p50/p99 of the successful requests; an error is a "
        "non-200, fewer than k results or a transport error. One run; configs measured one "
        "after the other, load average (1 min) at the start and end of each window.",
        "",
        "| backend | workers (processes) | requests/s (1 s median) | p50 | p99 | errors "
        "| load avg | server start |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in out["results"]:
        lines.append(
            f"| {kinds[r['backend']]} | {r['workers']} ({r['processes']}) "
            f"| **{r['rate']:.1f}** ({r['rate_median_1s']:.0f}) | {r['p50_ms']:.1f} ms "
            f"| {r['p99_ms']:.1f} ms | {r['errors']} | {r['load'][0]:.1f} -> {r['load'][1]:.1f} "
            f"| {r['start_s']:.0f} s |"
        )
        if r["backend"] == "faiss":
            lines.append(f"| {kinds['faiss']} | 2 | {out['refusal']} | | | | | |")
    errs = [f"{r['name']}: `{r['error_sample']}`" for r in out["results"] if r["error_sample"]]
    setup = (
        f"Set-up (not part of any figure): DB fill {out['fill_s']:.0f} s; Milvus server start "
        f"{out['milvus_start_s']:.0f} s. Server start = until GET /ready answers 200; the first "
        "Milvus config's includes upserting every vector into the empty collection, a later "
        "one only reconciles the collection with the database."
    )
    if out["alone"]:
        levels = ", ".join(f"{lvl} **{ms:.1f} ms**" for lvl, ms in out["alone"].items())
        setup += (
            f" Milvus alone (the same server and collection straight through pymilvus from the "
            f"bench process, one search at a time, {args.alone_queries} queries, median): "
            f"{levels}; the service reads with Strong."
        )
        strong, bounded = out["alone"]["Strong"], out["alone"]["Bounded"]
        if strong > 2 * bounded:
            setup += (
                f" Strong waits for the server's time tick: {strong - bounded:.0f} ms of each "
                "Milvus search here is that wait, not the scan."
            )
    return "\n".join(
        [*lines, "", setup, *(["", "First error: " + "; ".join(errs)] if errs else [])]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=100_000)
    ap.add_argument("--model", choices=MODELS, default="dual")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=60.0, help="measured seconds per config")
    ap.add_argument("--warmup", type=float, default=10.0, help="discarded seconds per config")
    ap.add_argument("--pool", type=int, default=2000, help="distinct query images")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--ready-s", type=float, default=600.0, help="server start limit")
    ap.add_argument("--milvus-uri", default="", help="use this server instead of starting one")
    ap.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    ap.add_argument("--alone-queries", type=int, default=30, help="Milvus-alone reference")
    ap.add_argument("--write-docs", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work folder (server logs)")
    args = ap.parse_args(argv)
    args.prefix = f"bench_{uuid.uuid4().hex[:8]}"  # this run's collections on the Milvus server
    nice = f"nice -n {os.nice(0)} " if os.nice(0) else ""
    args.command = f"{nice}.venv/bin/python bench/http_search.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    work = Path(tempfile.mkdtemp(prefix="bench-http-search-"))
    try:
        out = run(args, work)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    text = render(args, out)
    print(text)
    if args.write_docs:
        write_section(args.write_docs, SECTION, text, subsection=SUBSECTION)
    return 1 if any(r["errors"] for r in out["results"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
