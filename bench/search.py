"""Vector search benchmark: FAISS flat vs HNSW vs a numpy matrix product, on synthetic vectors.

Measures, per size (clustered *synthetic* unit vectors, see bench/_vectors.py): build time and
resident-memory growth, FAISS's own search time for one query (flat and HNSW), the same through
``FaissIndex.search`` (what the service calls), batched flat search per query, numpy's matrix
product + argpartition for comparison, and HNSW recall@10 against exact search. The HNSW
index is built once per size and then searched at each ``--ef-sweep`` efSearch (recall@10 and
latency: what a higher efSearch costs), and with id filters (``--filter-fractions``: the share of
ids allowed; filtered recall is against brute force over the allowed ids). A probe runs the
batched flat search under several OPENBLAS_CORETYPE values in subprocesses. The result replaces
the "## Vector search" section of docs/benchmarks.md. Defaults for M / efConstruction /
efSearch are FaissIndex's own.

    .venv/bin/python bench/search.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from _vectors import clustered_vectors  # noqa: E402

from bench._docs import write_section  # noqa: E402
from indexer import FaissIndex, IdFilter  # noqa: E402
from indexer.faiss_index import EF_CONSTRUCTION, EF_SEARCH, HNSW_M  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Vector search"
K = 10


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def median_ms(fn: Callable[[int], object], n: int) -> float:
    """Median wall time of fn(i) over i in range(n), after one warm-up call."""
    fn(0)
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def numpy_topk(x: np.ndarray, q: np.ndarray, k: int = K) -> np.ndarray:
    """Exact top-k ids by inner product with one matrix product and argpartition."""
    scores = q @ x.T
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def exact_topk(x: np.ndarray, q: np.ndarray, chunk: int = 131_072) -> np.ndarray:
    """Ground truth top-k over a large base, chunked so memory stays small."""
    best_s = np.full((len(q), K), -np.inf, np.float32)
    best_i = np.zeros((len(q), K), np.int64)
    for start in range(0, len(x), chunk):
        s = q @ x[start : start + chunk].T
        part = np.argpartition(-s, K, axis=1)[:, :K]
        cand_s = np.hstack([best_s, np.take_along_axis(s, part, axis=1)])
        cand_i = np.hstack([best_i, part + start])
        top = np.argsort(-cand_s, axis=1)[:, :K]
        best_s = np.take_along_axis(cand_s, top, axis=1)
        best_i = np.take_along_axis(cand_i, top, axis=1)
    return best_i


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth, strict=True)]))


def sweep_hnsw(index: FaissIndex, q: np.ndarray, truth: np.ndarray, efs: list[int]) -> list:
    """Recall@10 and FaissIndex 1-query latency at each efSearch, on the already built graph."""
    inner = index._store.inner
    before = inner.hnsw.efSearch
    out = []
    for ef in efs:
        inner.hnsw.efSearch = ef
        ms = median_ms(lambda i: index.search(q[i : i + 1], K), len(q))
        out.append({"ef": ef, "recall10": recall(index.search(q, K)[1], truth), "ms": ms})
    inner.hnsw.efSearch = before
    return out


def bench_filters(
    index: FaissIndex, x: np.ndarray, q: np.ndarray, fractions: list[float], nq: int
) -> list:
    """Filtered search: recall@10 against brute force over the allowed ids, and 1q latency."""
    out = []
    rng = np.random.default_rng(3)
    for frac in fractions:
        allowed = np.sort(rng.choice(len(x), max(K, int(frac * len(x))), replace=False))
        flt = IdFilter.of(allowed)
        truth = allowed[exact_topk(x[allowed], q[:nq])]
        ms = median_ms(lambda i, f=flt: index.search(q[i : i + 1], K, allowed=f), nq)
        found = index.search(q[:nq], K, allowed=flt)[1]
        out.append({"fraction": frac, "recall10": recall(found, truth), "ms": ms})
    return out


def bench_size(n: int, args: argparse.Namespace) -> dict:
    """All measurements for one base size."""
    t = time.perf_counter()
    x = clustered_vectors(n, args.dim, seed=0)
    gen_s = time.perf_counter() - t
    q = clustered_vectors(args.queries, args.dim, seed=0, points_seed=7)
    ids = np.arange(n, dtype=np.int64)
    truth = exact_topk(x, q)
    nq_slow = min(args.queries, args.slow_queries)
    row: dict = {"n": n, "dim": args.dim, "generate_s": gen_s}

    row["numpy_1q_ms"] = median_ms(lambda i: numpy_topk(x, q[i : i + 1]), nq_slow)
    b = q[: args.batch]
    row["numpy_batch_per_q_ms"] = median_ms(lambda _: numpy_topk(x, b), 5) / len(b)

    for kind, threshold in (("flat", n), ("hnsw", 0)):
        gc.collect()
        before = rss_bytes()
        index = FaissIndex(
            args.dim,
            device="cpu",
            hnsw_threshold=threshold,
            hnsw_m=args.hnsw_m,
            ef_search=args.ef_search,
            ef_construction=args.ef_construction,
        )
        t = time.perf_counter()
        index.add(ids, x)
        row[f"{kind}_build_s"] = time.perf_counter() - t
        row[f"{kind}_rss_mb"] = (rss_bytes() - before) / 2**20
        assert index.kind == kind
        raw = index._store.index  # FAISS's own index object, to time FAISS alone
        nq = nq_slow if kind == "flat" else args.queries
        row[f"{kind}_faiss_1q_ms"] = median_ms(lambda i, r=raw: r.search(q[i : i + 1], K), nq)
        row[f"{kind}_wrapper_1q_ms"] = median_ms(lambda i, ix=index: ix.search(q[i : i + 1], K), nq)
        found = index.search(q, K)[1]
        row[f"{kind}_recall10"] = recall(found, truth)
        if kind == "flat":
            row["flat_batch_per_q_ms"] = median_ms(lambda _, r=raw: r.search(b, K), 5) / len(b)
        else:
            row["hnsw_sweep"] = sweep_hnsw(index, q, truth, args.ef_sweep)
        row[f"{kind}_filtered"] = bench_filters(index, x, q, args.filter_fractions, nq_slow)
        del index, raw
    row["ratio_flat_batch_vs_numpy"] = row["flat_batch_per_q_ms"] / row["numpy_batch_per_q_ms"]
    row["ratio_flat_1q_vs_hnsw_1q"] = row["flat_faiss_1q_ms"] / row["hnsw_faiss_1q_ms"]
    row["wrapper_overhead_hnsw_ms"] = row["hnsw_wrapper_1q_ms"] - row["hnsw_faiss_1q_ms"]
    return row


def probe_openblas(n: int, dim: int, batch: int) -> float:
    """Batched flat search per query (ms) in this process, for the OPENBLAS_CORETYPE probe."""
    x = clustered_vectors(n, dim, seed=0)
    q = clustered_vectors(batch, dim, seed=0, points_seed=7)
    index = FaissIndex(dim, device="cpu", hnsw_threshold=n)
    index.add(np.arange(n), x)
    raw = index._store.index
    return median_ms(lambda _: raw.search(q, K), 5) / batch


def openblas_core() -> str:
    """The kernel set faiss's bundled OpenBLAS picked (it reads OPENBLAS_CORETYPE at load)."""
    import ctypes

    import faiss

    libs = sorted((Path(faiss.__file__).parents[1] / "faiss_cpu.libs").glob("libopenblas*"))
    if not libs:
        return "unknown"
    lib = ctypes.CDLL(str(libs[0]))
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return lib.openblas_get_corename().decode()


def run_probe(core: str | None, args: argparse.Namespace) -> tuple[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    if core:
        env["OPENBLAS_CORETYPE"] = core
    cmd = [sys.executable, __file__, "--probe", str(args.probe_size), "--dim", str(args.dim)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    name, ms = out.strip().splitlines()[-1].split()
    return name, float(ms)


def render(rows: list[dict], probes: dict[str, tuple[str, float]], args: argparse.Namespace) -> str:
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if "model name" in ln), "?"
    )
    lines = [
        SECTION,
        "",
        "Synthetic data: clustered unit vectors (bench/_vectors.py: 200 clusters, rank-16",
        "variation + isotropic noise), not real embeddings. Medians; all numbers of one run.",
        "",
        f"Command: `{args.command}`",
        "",
        f"Machine: {os.cpu_count()}-core CPU ({cpu}), Python {platform.python_version()}, "
        f"faiss {__import__('faiss').__version__}, numpy {np.__version__}. "
        f"HNSW M={args.hnsw_m}, efConstruction={args.ef_construction}, "
        f"efSearch={args.ef_search} (FaissIndex defaults: M={HNSW_M}, "
        f"efConstruction={EF_CONSTRUCTION}, efSearch={EF_SEARCH}); k={K}; {args.queries} queries "
        f"({args.slow_queries} for the slow single-query flat/numpy timings); batch {args.batch}.",
        "",
        "| vectors | build flat s | build HNSW s | RSS growth flat MB | RSS growth HNSW MB "
        "| FAISS flat 1q ms | FAISS HNSW 1q ms | FaissIndex HNSW 1q ms | numpy 1q ms "
        "| flat batch ms/q | numpy batch ms/q | flat/numpy batch | flat/HNSW 1q "
        "| HNSW recall@10 |",
        "|" + "---:|" * 14,
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['flat_build_s']:.2f} | {r['hnsw_build_s']:.1f} "
            f"| {r['flat_rss_mb']:.0f} | {r['hnsw_rss_mb']:.0f} "
            f"| {r['flat_faiss_1q_ms']:.2f} | {r['hnsw_faiss_1q_ms']:.3f} "
            f"| {r['hnsw_wrapper_1q_ms']:.3f} | {r['numpy_1q_ms']:.2f} "
            f"| {r['flat_batch_per_q_ms']:.3f} | {r['numpy_batch_per_q_ms']:.3f} "
            f"| {r['ratio_flat_batch_vs_numpy']:.1f}x | {r['ratio_flat_1q_vs_hnsw_1q']:.0f}x "
            f"| {r['hnsw_recall10']:.3f} |"
        )
    sweeps = [r for r in rows if r.get("hnsw_sweep")]
    if sweeps:
        lines += [
            "",
            "HNSW efSearch: recall@10 / FaissIndex 1-query ms on the same graph "
            "(what a higher efSearch costs):",
            "",
            "| vectors | " + " | ".join(f"ef {e['ef']}" for e in sweeps[0]["hnsw_sweep"]) + " |",
            "|" + "---:|" * (1 + len(sweeps[0]["hnsw_sweep"])),
        ]
        for r in sweeps:
            cells = " | ".join(f"{e['recall10']:.3f} / {e['ms']:.2f}" for e in r["hnsw_sweep"])
            lines.append(f"| {r['n']:,} | {cells} |")
    if rows and rows[0].get("flat_filtered"):
        lines += [
            "",
            "Id-filtered search (IdFilter of a random share of the ids): recall@10 against brute "
            "force over the allowed ids / 1-query ms:",
            "",
            "| vectors | index | "
            + " | ".join(f"{f['fraction']:.1%} allowed" for f in rows[0]["flat_filtered"])
            + " |",
            "|---:|---|" + "---:|" * len(rows[0]["flat_filtered"]),
        ]
        for r in rows:
            for kind in ("flat", "hnsw"):
                cells = " | ".join(
                    f"{f['recall10']:.3f} / {f['ms']:.2f}" for f in r[f"{kind}_filtered"]
                )
                lines.append(f"| {r['n']:,} | {kind} | {cells} |")
    if probes:
        lines += [
            "",
            f"OPENBLAS_CORETYPE probe (batched flat search, {args.probe_size:,} synthetic "
            f"vectors, batch {args.batch}, ms per query): "
            + "; ".join(f"{k} (core {c}): {v:.3f}" for k, (c, v) in probes.items()),
        ]
    if rows:
        r = rows[0]
        lines += [
            "",
            f"Reading: batched FAISS flat search costs {r['ratio_flat_batch_vs_numpy']:.1f}x a "
            f"numpy matrix product + argpartition at {r['n']:,} vectors; the probe shows whether "
            "an OPENBLAS_CORETYPE override changes that (indexer/__init__.py sets none).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--slow-queries", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hnsw-m", type=int, default=HNSW_M)
    parser.add_argument("--ef-search", type=int, default=EF_SEARCH)
    parser.add_argument("--ef-construction", type=int, default=EF_CONSTRUCTION)
    parser.add_argument("--ef-sweep", type=int, nargs="*", default=[64, 128, 256, 512])
    parser.add_argument("--filter-fractions", type=float, nargs="*", default=[0.01, 0.2])
    parser.add_argument("--probe-size", type=int, default=100_000)
    parser.add_argument("--probe-cores", nargs="*", default=["default", "Haswell", "SkylakeX"])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--probe", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(openblas_core(), probe_openblas(args.probe, args.dim, args.batch))
        return
    args.command = ".venv/bin/python bench/search.py " + " ".join(sys.argv[1:])
    probes = {c: run_probe(None if c == "default" else c, args) for c in args.probe_cores}
    rows = []
    for n in args.sizes:
        rows.append(bench_size(n, args))
        print(json.dumps(rows[-1]), flush=True)
    text = render(rows, probes, args)
    print(text)
    if not args.no_write:
        write_section(args.out, SECTION.removeprefix("## "), text)


if __name__ == "__main__":
    main()
