"""Service benchmark: ingest latency, concurrent uploads and search by id, against their references.

Each figure is set against the component the service wraps, measured in the same run and paired
round by round (bench/_measure.py) so that the machine's drift cancels out:
  1. one photo per request over HTTP (real server, real HyperKvasir photos): latency / the
     model's own forward time for one image                                   (target <= 1.25x)
  2. N concurrent uploaders: images/s / the model's own batched throughput    (target >= 0.7x)
  3. search by image id at each --vectors size: the service call - FAISS's own search inside
     it (cross-checked against FAISS alone on the same query)                 (target <= 3 ms)

The references run in this process with the same bundle and torch threads as the server; the
server is idle while they run, and they are idle while the server works.

Usage:
    .venv/bin/python bench/ingest.py --models baseline vits dual --vectors 100000 1000000 \
        --write-docs docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import sqlalchemy as sa
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.db import migrate  # noqa: E402
from app.db.models import Embedding, Model, Procedure  # noqa: E402
from app.db.models import Image as ImageRow  # noqa: E402
from app.db.session import create_db_engine  # noqa: E402
from app.db.types import utcnow  # noqa: E402
from bench._bundles import LABELS, MODELS, bench_bundle  # noqa: E402
from bench._docs import write_section  # noqa: E402
from bench._measure import median_diff, median_ratio, paired, timed  # noqa: E402
from bench._photos import Photos  # noqa: E402
from bench._served import Served, api_key  # noqa: E402
from bench._vectors import clustered_vectors  # noqa: E402
from embedder import Embedder, decode_image  # noqa: E402
from indexer.faiss_index import omp_threads  # noqa: E402

SECTION = "Service"
INGEST = "Ingest"
SEARCH = "Search by image id"
MS = 1000.0


# -- 1 + 2: ingest ----------------------------------------------------------------------------
def bench_ingest(kind: str, work: Path, args: argparse.Namespace) -> dict[str, float]:
    """Paired single-photo latency and concurrent throughput for one model."""
    bundle = bench_bundle(kind, work / "bundle")
    emb = Embedder.from_bundle(bundle, device="cpu")
    photos = Photos()
    sample = photos.take(32)
    tensors = torch.stack([emb.preprocess(decode_image(p, max_pixels=10**8)) for p in sample])
    one = tensors[:1]
    emb.embed_tensors(tensors[: args.batch])  # warm-up
    server = Served(work, ["ingest", "search"], bundle=bundle)
    try:
        with server.client() as c:
            pid = c.post("/v1/procedures", json={"source": "bench", "external_id": kind}).json()
            path = f"/v1/procedures/{pid['id']}/images"

            def post(data: bytes, client: httpx.Client = c) -> None:
                r = client.post(path, files={"files": ("p.jpg", data)})
                assert r.status_code == 201, (r.status_code, r.text)

            for data in photos.take(3):  # warm-up: first requests load lazy parts
                post(data)
            fwd, lat = paired(
                lambda: timed(lambda: emb.embed_tensors(one)),
                lambda: timed(lambda d=photos.take(1)[0]: post(d)),
                args.uploads,
            )
        n = args.concurrency * args.per_client
        many = tensors.repeat((n + len(tensors) - 1) // len(tensors), 1, 1, 1)[:n]

        def model_rate() -> float:
            def run() -> None:
                for s in range(0, n, args.batch):
                    emb.embed_tensors(many[s : s + args.batch])

            return n / timed(run)

        def service_rate() -> float:
            blobs = photos.take(n)
            chunks = [blobs[i :: args.concurrency] for i in range(args.concurrency)]
            barrier = threading.Barrier(args.concurrency + 1)

            def worker(chunk: list[bytes]) -> None:
                with server.client() as cc:
                    barrier.wait()
                    for data in chunk:
                        r = cc.post(path, files={"files": ("p.jpg", data)})
                        assert r.status_code == 201, (r.status_code, r.text)

            with ThreadPoolExecutor(args.concurrency) as pool:
                futures = [pool.submit(worker, ch) for ch in chunks]
                barrier.wait()
                start = time.perf_counter()
                for f in futures:
                    f.result()
                return n / (time.perf_counter() - start)

        model_rates, service_rates = paired(model_rate, service_rate, args.rounds)
    finally:
        server.stop()
    return {
        "fwd_ms": statistics.median(fwd) * MS,
        "lat_ms": statistics.median(lat) * MS,
        "lat_ratio": median_ratio(lat, fwd),
        "model_rate": statistics.median(model_rates),
        "service_rate": statistics.median(service_rates),
        "rate_ratio": median_ratio(service_rates, model_rates),
        "dim": emb.dim,
    }


# -- 3: search by image id --------------------------------------------------------------------
def _fill(url: str, emb: Embedder, n: int) -> None:
    """n clustered unit vectors of `emb`'s model (the active one), bulk-inserted with rows."""
    engine = create_db_engine(url)
    now = utcnow()
    pid = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            sa.insert(Model).values(
                id=emb.bundle_id,
                name=emb.name,
                dim=emb.dim,
                config={},
                metrics={},
                active=True,
                created_at=now,
            )
        )
        conn.execute(sa.insert(Procedure).values(id=pid, source="bench", external_id="big",
                                                 kind="other", created_at=now))  # fmt: skip
    step = 50_000
    for start in range(0, n, step):
        m = min(step, n - start)
        vecs = clustered_vectors(m, emb.dim, seed=0, points_seed=start + 1)
        ids = range(start + 1, start + m + 1)
        images = [{"id": i, "uid": uuid.uuid4(), "procedure_id": pid, "sha256": f"{i:064x}",
                   "storage_key": "x", "mime": "image/jpeg", "width": 1, "height": 1,
                   "bytes": 1, "created_at": now} for i in ids]  # fmt: skip
        rows = [{"image_id": i, "model_id": emb.bundle_id, "vector": v.astype("<f4").tobytes(),
                 "created_at": now} for i, v in zip(ids, vecs, strict=True)]  # fmt: skip
        with engine.begin() as conn:
            conn.execute(sa.insert(ImageRow), images)
            conn.execute(sa.insert(Embedding), rows)
        print(f"  filled {start + m:,} / {n:,}", flush=True)
    engine.dispose()


def bench_search(work: Path, kind: str, n: int, args: argparse.Namespace) -> dict[str, object]:
    """Paired per query: FAISS alone, the service call, the HTTP route (in-process client)."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.services.search import SearchFilters, SearchService
    from app.settings import Settings

    bundle = bench_bundle(kind, work / "bundle")
    emb = Embedder.from_bundle(bundle, device="cpu")
    url = f"sqlite:///{work / 'search.db'}"
    migrate.upgrade(url)
    t0 = time.perf_counter()
    _fill(url, emb, n)
    fill_s = time.perf_counter() - t0
    hdr = {"Authorization": f"Bearer {api_key(url, ['search'])}"}
    settings = Settings(
        _env_file=None,
        database_url=url,
        storage_dir=work / "storage",
        index_dir=work / "index",
        bundle=str(bundle),
        index_device="cpu",
    )
    app = create_app(settings, with_ui=False)
    t0 = time.perf_counter()
    with TestClient(app) as client:
        start_s = time.perf_counter() - t0
        rt = app.state.runtime
        svc = SearchService(rt)
        raw = rt.index.index._store.index  # FAISS's own index object (bench-only access)
        inner: list[float] = []
        store = rt.index.index._store  # the innermost call: FAISS's own index.search
        live_search = store.search

        def timed_search(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            t = time.perf_counter()
            out = live_search(q, k)
            inner.append(time.perf_counter() - t)
            return out

        store.search = timed_search  # instance attribute: times FAISS inside the service's call
        rng = np.random.default_rng(1)
        picks = [int(p) + 1 for p in rng.choice(n, args.queries, replace=False)]
        with rt.sessions() as s:
            uid_of = dict(s.execute(sa.select(ImageRow.id, ImageRow.uid)
                                    .where(ImageRow.id.in_(picks))).all())  # fmt: skip
        k = args.k
        threads = rt.index.index.search_threads  # the reference runs as the service's FAISS does
        faiss_t, every_core_t, svc_t, http_t = [], [], [], []
        for image_id in picks:
            uid = uid_of[image_id]
            with rt.sessions() as s:
                vec, _ = svc.vector_for_image(s, uid)
            raw.search(vec[None, :], k + 1)  # untimed: every timed search finds the same caches
            refs = [(threads, faiss_t), (None, every_core_t)][:: 1 if image_id % 2 else -1]
            for cap, out in refs:  # order by the id's parity: neither reference always first
                with omp_threads(cap):
                    out.append(timed(lambda v=vec: raw.search(v[None, :], k + 1)))
            with rt.sessions() as s:
                t = time.perf_counter()
                v2, img = svc.vector_for_image(s, uid)
                hits = svc.search(s, v2, k, SearchFilters(), exclude_image_id=img.id)
                svc_t.append(time.perf_counter() - t)
            assert len(hits) == k
            t = time.perf_counter()
            r = client.post("/v1/search", json={"image_id": str(uid), "k": k}, headers=hdr)
            http_t.append(time.perf_counter() - t)
            assert r.status_code == 200 and len(r.json()["results"]) == k, r.text
        index_kind = rt.index.index.kind
    in_call = inner[0::2]  # service call, then the HTTP route: two index searches per query
    return {
        "n": n, "kind": index_kind, "dim": emb.dim, "fill_s": fill_s, "start_s": start_s,
        "threads": threads or "every core",
        "faiss_ms": statistics.median(faiss_t) * MS,
        "every_core_ms": statistics.median(every_core_t) * MS,
        "svc_ms": statistics.median(svc_t) * MS,
        "http_ms": statistics.median(http_t) * MS,
        "diff_ms": median_diff(svc_t, faiss_t) * MS,
        "in_call_ms": median_diff(svc_t, in_call) * MS,
        "http_diff_ms": median_diff(http_t, faiss_t) * MS,
    }  # fmt: skip


# -- report -----------------------------------------------------------------------------------
def _machine(args: argparse.Namespace) -> list[str]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                if "model name" in ln), platform.machine())  # fmt: skip
    return [
        f"Command: `{args.command}`",
        "",
        f"Machine: {os.cpu_count()}-core CPU ({cpu}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), SQLite; load average {os.getloadavg()[0]:.1f} "
        "at the end.",
        "",
    ]


def render_ingest(args: argparse.Namespace, ingest: dict[str, dict]) -> str:
    lines = [
        f"### {INGEST}",
        "",
        *_machine(args),
        f"Real server over HTTP, real HyperKvasir photos: {args.uploads} paired single uploads; "
        f"{args.rounds} paired rounds of {args.concurrency} uploaders x {args.per_client} photos "
        f"vs the model on the same photos in batches of {args.batch}.",
        "",
        "| model | forward, 1 image | ingest, 1 photo | ingest / forward | target "
        f"| model batched | {args.concurrency} uploaders | uploaders / model | target |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for kind, r in ingest.items():
        lines.append(
            f"| {LABELS[kind]}, {r['dim']}-d | {r['fwd_ms']:.1f} ms | {r['lat_ms']:.1f} ms "
            f"| **{r['lat_ratio']:.2f}x** | <= 1.25x | {r['model_rate']:.1f} img/s "
            f"| {r['service_rate']:.1f} img/s | **{r['rate_ratio']:.2f}x** | >= 0.7x |"
        )
    return "\n".join(lines) + "\n"


def render_search(args: argparse.Namespace, search: list[dict]) -> str:
    lines = [
        f"### {SEARCH}",
        "",
        *_machine(args),
        f"k={args.k}, {args.queries} queries; SYNTHETIC clustered vectors (bench/_vectors.py) of "
        "the `--search-model` dimension. **Service overhead** = the service call (stored "
        "vector, FAISS, filters and rows, every wrapper) minus FAISS's own `index.search` inside "
        "that same call: the target figure, free of the scan-to-scan noise of timing FAISS "
        "separately. The separate references (FAISS alone with the service's OpenMP threads per "
        "search, `ENDOSEEK_INDEX_SEARCH_THREADS`, default 1; FAISS's own default, every core) "
        "run on the same query just before, paired per query, as a cross-check.",
        "",
        "| vectors | index | FAISS alone | FAISS, every core | service call | service overhead | "
        "service - FAISS alone | HTTP route (in-process client) | target |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in search:
        lines.append(
            f"| {r['n']:,} x {r['dim']} | {r['kind']} | {r['faiss_ms']:.2f} ms "
            f"({r['threads']} thr.) | {r['every_core_ms']:.2f} ms "
            f"| {r['svc_ms']:.2f} ms | **+{r['in_call_ms']:.2f} ms** | +{r['diff_ms']:.2f} ms "
            f"| {r['http_ms']:.2f} ms (+{r['http_diff_ms']:.2f}) | within 3 ms |"
        )
    setup = "; ".join(
        f"{r['n']:,}: DB fill {r['fill_s']:.0f} s, service start incl. index build "
        f"{r['start_s']:.0f} s"
        for r in search
    )
    return "\n".join([*lines, "", f"Set-up per size (not part of any figure): {setup}.", ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", choices=MODELS, default=["baseline", "dual"])
    ap.add_argument("--vectors", type=int, nargs="*", default=[100_000])
    ap.add_argument("--search-model", choices=MODELS, default="dual")
    ap.add_argument("--uploads", type=int, default=30)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--per-client", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--write-docs", type=Path, default=None)
    args = ap.parse_args()
    args.command = ".venv/bin/python bench/ingest.py " + " ".join(sys.argv[1:])
    ingest, search = {}, []
    for kind in args.models:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as d:
            ingest[kind] = bench_ingest(kind, Path(d), args)
            print(kind, ingest[kind], flush=True)
    for n in args.vectors:
        with tempfile.TemporaryDirectory(prefix="bench-search-") as d:
            search.append(bench_search(Path(d), args.search_model, n, args))
            print(search[-1], flush=True)
    parts = []
    if ingest:
        parts.append((INGEST, render_ingest(args, ingest)))
    if search:
        parts.append((SEARCH, render_search(args, search)))
    for name, text in parts:
        print(text)
        if args.write_docs:
            write_section(args.write_docs, SECTION, text, subsection=name)


if __name__ == "__main__":
    main()
