"""Batch re-index throughput: photos/s from JPEG files on disk vs the model's own batched rate.

Measured in paired rounds (bench/_measure.py), because this machine's speed drifts by tens of
percent within minutes: each round first times the model alone on the photos decoded and
preprocessed in memory beforehand (no files, no DB), then re-indexes the same photos to that
round's bundle through the whole pipeline (DB paging, file read, JPEG decode + preprocess in
threads, embed, chunked SQLite commits with the cursor, then index build, snapshot and flip).
The ratio reported is the median of the per-round ratios. Photos are SYNTHETIC
(training.synthetic) written as JPEG files. Target: re-index >= 0.85x the model rate.

`--engine ray` re-indexes on a local Ray Data cluster (started once, before the rounds, on
every CPU) and `--engine both` runs the in-process and the Ray runner in each round, back to
back, for a paired comparison. Ray's rate counts its fixed start-up per execution (actor
start, model load, ~10-20 s); the rate after its first commit shows the streaming part alone.

    .venv/bin/python bench/reindex.py --model dual --photos 96 --write-docs docs/benchmarks.md
    .venv/bin/python bench/reindex.py --model baseline --photos 2000 --engine both
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from app.db import migrate  # noqa: E402
from app.services import bulk_import, reindex  # noqa: E402
from app.services.job_exec import JobContext  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench._bundles import LABELS, PRESETS, bench_bundle  # noqa: E402
from bench._docs import write_section  # noqa: E402
from bench._measure import median_ratio, timed  # noqa: E402
from embedder import (  # noqa: E402
    Embedder,
    create_model,
    decode_image,
    default_bundle_path,
    model_config,
    save_bundle,
)

SECTION = "Batch re-index"


def target_bundle(kind: str, out: Path, round_no: int) -> Path:
    """A new bundle per round: a baseline variant, or a ViT model with random weights."""
    if kind != "baseline":
        return bench_bundle(kind, out, seed=round_no)
    cfg = model_config("baseline")
    branch = cfg.branches[0]
    params = {**branch.params, "hue_bins": 10 + 2 * round_no}  # a different vector space
    branches = [branch.model_copy(update={"params": params})]
    cfg = cfg.model_copy(update={"name": f"baseline-variant-{round_no}", "branches": branches})
    save_bundle(create_model(cfg).eval(), cfg, out)
    return out


def model_rate(emb: Embedder, tensors: torch.Tensor, batch: int) -> float:
    """The model's own throughput on preprocessed photos in memory, in batches, images/s."""
    emb.embed_tensors(tensors[:batch])  # warm-up

    def all_batches() -> None:
        for i in range(0, len(tensors), batch):
            emb.embed_tensors(tensors[i : i + batch])

    return len(tensors) / timed(all_batches)


def preprocessed(emb: Embedder, files: list[Path]) -> torch.Tensor:
    """The photos decoded and preprocessed ahead of time (what the model alone sees)."""
    return torch.stack(
        [emb.preprocess(decode_image(f.read_bytes(), max_pixels=10**8)) for f in files]
    )


def engines_of(args: argparse.Namespace) -> list[str]:
    return ["local", "ray"] if args.engine == "both" else [args.engine]


def reindex_once(ctx: JobContext, bundle: Path, args: argparse.Namespace, engine: str,
                 n: int) -> tuple[float, float, float, str]:  # fmt: skip
    """One re-index: (pipeline img/s, img/s after the first commit, incl. flip img/s, status)."""
    job = reindex.start_reindex(
        ctx, bundle, batch=args.batch, workers=args.workers, chunk=args.chunk, engine=engine
    )
    marks: list[tuple[float, int]] = []  # (time, done) at each commit: the last ends the pipeline

    def mark(done: int, failed: int, total: int) -> None:
        marks.append((time.perf_counter(), done + failed))

    t = time.perf_counter()
    status = reindex.run_reindex(ctx, job.id, mark)
    total_s = time.perf_counter() - t
    end = marks[-1][0] if marks else t + total_s
    steady = (
        (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])
        if len(marks) > 1 and marks[-1][0] > marks[0][0]
        else float("nan")
    )
    return n / (end - t), steady, n / total_s, status


def run(args: argparse.Namespace, work: Path) -> dict:
    from training.synthetic import write_class_folders

    per_class = max(args.photos // 8, 1)
    photos = write_class_folders(work / "photos", 8, per_class, size=args.size)
    files = sorted(photos.rglob("*.jpg"))
    url = f"sqlite:///{work / 'bench.db'}"
    migrate.upgrade(url)
    settings = Settings(
        database_url=url,
        storage_dir=work / "storage",
        index_dir=work / "index",
        bundle=str(default_bundle_path()),
        index_device="cpu",
        _env_file=None,
    )
    ctx = JobContext.from_settings(settings)
    seed = bulk_import.start_import(ctx, {"dir": str(photos), "workers": args.workers})
    t = time.perf_counter()
    bulk_import.run_import(ctx, seed.id)
    import_rate = len(files) / (time.perf_counter() - t)
    engines = engines_of(args)
    models: list[float] = []
    pipelines: dict[str, list[float]] = {e: [] for e in engines}
    steady: dict[str, list[float]] = {e: [] for e in engines}
    totals: dict[str, list[float]] = {e: [] for e in engines}
    statuses: list[str] = []
    ray_init_s = None
    with contextlib.ExitStack() as stack:
        if "ray" in engines:
            from indexer.pipeline.ray_runner import ray_session

            t = time.perf_counter()
            stack.enter_context(ray_session(num_cpus=os.cpu_count()))
            ray_init_s = time.perf_counter() - t
        for r in range(args.rounds):
            for e, engine in enumerate(engines):
                step = r * len(engines) + e
                bundle = target_bundle(args.model, work / f"bundle-{step}", step)
                emb = Embedder.from_bundle(bundle, device="cpu")
                if e == 0:
                    models.append(model_rate(emb, preprocessed(emb, files), args.batch))
                rate, after_first, total, status = reindex_once(
                    ctx, bundle, args, engine, len(files)
                )
                pipelines[engine].append(rate)
                steady[engine].append(after_first)
                totals[engine].append(total)
                statuses.append(status)
                print(
                    f"round {r + 1} {engine}: model {models[-1]:.1f}, re-index {rate:.1f} img/s "
                    f"({rate / models[-1]:.2f}x), after the first commit {after_first:.1f} img/s",
                    flush=True,
                )
    return {"photos": len(files), "dim": emb.dim, "statuses": sorted(set(statuses)),
            "models": models, "pipelines": pipelines, "steady": steady, "totals": totals,
            "import_rate": import_rate, "ray_init_s": ray_init_s}  # fmt: skip


def render(args: argparse.Namespace, r: dict) -> str:
    if engines_of(args) != ["local"]:
        return render_engines(args, r)
    r = {**r, "pipelines": r["pipelines"]["local"], "totals": r["totals"]["local"]}
    machine = f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()})"
    cmd = (f".venv/bin/python bench/reindex.py --model {args.model} --photos {args.photos} "
           f"--size {args.size} --batch {args.batch} --workers {args.workers} "
           f"--rounds {args.rounds}")  # fmt: skip
    label = LABELS.get(args.model, args.model) if args.model != "baseline" else (
        "baseline variants (colour-texture, other hue bins)")  # fmt: skip
    rows = [
        f"| {i + 1} | {m:.1f} | {p:.1f} | {p / m:.2f}x | {t:.1f} |"
        for i, (m, p, t) in enumerate(zip(r["models"], r["pipelines"], r["totals"], strict=True))
    ]
    ratio = median_ratio(r["pipelines"], r["models"])
    return "\n".join([
        f"### target model: {args.model}",
        "",
        f"Command: `{cmd} --write-docs docs/benchmarks.md`",
        "",
        f"Machine: {machine}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"load average {os.getloadavg()[0]:.1f} at the end. Model: {label}, {r['dim']}-d. "
        f"Data: {r['photos']} SYNTHETIC {args.size}x{args.size} JPEG photos "
        f"(training.synthetic), SQLite; job status {', '.join(r['statuses'])}.",
        "",
        f"| round | model alone, batch {args.batch} (img/s) | re-index pipeline: files -> "
        f"decode x{args.workers} -> embed -> DB (img/s) | pipeline / model "
        "| incl. index build, snapshot, flip (img/s) |",
        "|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Re-index / model, median of {args.rounds} paired rounds: **{ratio:.2f}x** "
        f"(target >= 0.85x; median rates: model {statistics.median(r['models']):.1f}, "
        f"pipeline {statistics.median(r['pipelines']):.1f} img/s). Bulk import of the same files "
        f"(baseline model, file copy + rows): {r['import_rate']:.1f} img/s.",
        "",
    ])  # fmt: skip


def render_engines(args: argparse.Namespace, r: dict) -> str:
    """The in-process and/or the Ray runner per round, against the model alone."""
    engines = engines_of(args)
    machine = f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()})"
    cmd = (f".venv/bin/python bench/reindex.py --model {args.model} --photos {args.photos} "
           f"--size {args.size} --batch {args.batch} --workers {args.workers} "
           f"--chunk {args.chunk} --rounds {args.rounds} --engine {args.engine}")  # fmt: skip
    label = LABELS.get(args.model, args.model) if args.model != "baseline" else (
        "baseline variants (colour-texture, other hue bins)")  # fmt: skip
    head = ["round", f"model alone, batch {args.batch} (img/s)"]
    for e in engines:
        head += [f"{e}: files -> DB (img/s)", f"{e} / model", f"{e}: after its first commit*",
                 f"{e}: incl. index build + flip"]  # fmt: skip
    rows = []
    for i, m in enumerate(r["models"]):
        cells = [str(i + 1), f"{m:.1f}"]
        for e in engines:
            p = r["pipelines"][e][i]
            cells += [f"{p:.1f}", f"{p / m:.2f}x", f"{r['steady'][e][i]:.1f}",
                      f"{r['totals'][e][i]:.1f}"]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    medians = ", ".join(
        f"{e} {statistics.median(r['pipelines'][e]):.1f} img/s "
        f"({median_ratio(r['pipelines'][e], r['models']):.2f}x the model)"
        for e in engines
    )
    ray_note = (
        f" A local Ray cluster on all {os.cpu_count()} CPUs started once before the rounds "
        f"in {r['ray_init_s']:.1f} s (not counted); each Ray run counts its own actor start."
        if r["ray_init_s"] is not None
        else ""
    )
    return "\n".join([
        f"### target model: {args.model}, engine {args.engine}",
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {machine}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"load average {os.getloadavg()[0]:.1f} at the end. Model: {label}, {r['dim']}-d. "
        f"Data: {r['photos']} SYNTHETIC {args.size}x{args.size} JPEG photos "
        f"(training.synthetic), SQLite; job status {', '.join(r['statuses'])}.{ray_note}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---:|" * len(head),
        *rows,
        "",
        f"Median of {args.rounds} paired rounds: {medians}. *From the first commit to the "
        "last: leaves out start-up, but counts work finished before the first commit, so it "
        "is an upper bound on the streaming rate (loose for small runs).",
        "",
    ])  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["baseline", *PRESETS], default="dual")
    p.add_argument("--photos", type=int, default=96)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--engine", choices=["local", "ray", "both"], default="local")
    p.add_argument("--write-docs", type=Path, default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-reindex-") as tmp:
        result = run(args, Path(tmp))
    body = render(args, result)
    print(body)
    if args.write_docs:
        sub = f"target model: {args.model}" + (
            "" if args.engine == "local" else f", engine {args.engine}"
        )
        write_section(args.write_docs, SECTION, body, subsection=sub)


if __name__ == "__main__":
    main()
