"""Embedder throughput on this machine: decode+preprocess and model forward, batch 1 and 32.

Models: the shipped colour/texture baseline, DINOv2 ViT-S/14-reg4 alone and the dual
ViT-S model (DINOv2 ViT-S/14-reg4 + ViT-S/16, 512-d head), both with random weights (the
forward cost does not depend on the weight values). Inputs to the model are random tensors;
decode+preprocess is timed separately on the real HyperKvasir JPEGs (if present).

    .venv/bin/python bench/embed.py --runs 5 --write-docs docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from bench._docs import write_section  # noqa: E402
from embedder import (  # noqa: E402
    Embedder,
    create_model,
    decode_image,
    default_bundle_path,
    model_config,
)

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "hyperkvasir" / "ileum"
SECTION = "## Embedder"


def median_rate(fn: Callable[[], int], runs: int) -> float:
    """Images/s: one warm-up call, then the median over `runs` timed calls."""
    fn()
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def bench_decode(embedder: Embedder, runs: int) -> float | None:
    """Decode + preprocess of real JPEG bytes, one thread, images/s."""
    blobs = [p.read_bytes() for p in sorted(PHOTOS.glob("*.jpg"))]
    if not blobs:
        return None

    def work() -> int:
        for _ in range(5):  # 45 images a run: less noise on a shared machine
            for data in blobs:
                embedder.preprocess(decode_image(data, max_pixels=50_000_000))
        return 5 * len(blobs)

    return median_rate(work, runs)


def bench_model(embedder: Embedder, batch: int, runs: int, repeat: int) -> float:
    size = embedder.config.preprocess.input_size
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))

    def work() -> int:
        for _ in range(repeat):
            embedder.embed_tensors(x)
        return batch * repeat

    return median_rate(work, runs)


def random_embedder(preset: str) -> Embedder:
    """A full-size model with random weights wrapped like a loaded bundle."""
    torch.manual_seed(0)
    config = model_config(preset)
    model = create_model(config).eval()
    return Embedder("random-" + preset, config.name, model.dim, config, model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write-docs", type=Path, default=None)
    args = parser.parse_args()
    baseline = Embedder.from_bundle(default_bundle_path(), device="cpu")
    models = [
        ("baseline-colour-texture (shipped bundle)", baseline, 10),
        ("dinov2-vits14-reg4 (random weights)", random_embedder("dinov2-vits14-reg4"), 1),
        (
            "dual-dinov2-gastronet ViT-S (random weights)",
            random_embedder("dual-dinov2-gastronet"),
            1,
        ),
    ]
    rows = []
    for label, emb, repeat in models:
        b1 = bench_model(emb, 1, args.runs, repeat=10 * repeat if repeat > 1 else 4)
        b8 = bench_model(emb, 8, args.runs, repeat=repeat)
        b32 = bench_model(emb, 32, args.runs, repeat=repeat)
        rows.append((label, emb.dim, b1, b8, b32))
        print(f"{label}: batch 1 / 8 / 32: {b1:.1f} / {b8:.1f} / {b32:.1f} img/s", flush=True)
    decode = bench_decode(baseline, args.runs)
    table = render(rows, decode, args.runs)
    print(table)
    if args.write_docs:
        write_section(args.write_docs, SECTION.removeprefix("## "), table)


def render(
    rows: list[tuple[str, int, float, float, float]], decode: float | None, runs: int
) -> str:
    machine = f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()})"
    lines = [
        SECTION,
        "",
        "Command: `.venv/bin/python bench/embed.py --runs 5 --write-docs docs/benchmarks.md`",
        "",
        f"Machine: {machine}, torch {torch.__version__}, {torch.get_num_threads()} threads. "
        f"Images/s, median of {runs} timed runs after one warm-up, all measured in the same "
        "run. Model inputs are random 224x224 tensors (the forward cost does not depend on "
        "pixel or weight values). The machine is shared with other jobs: load average "
        f"{os.getloadavg()[0]:.1f} at the end of the run, so repeated runs vary.",
        "",
        "| model | dim | batch 1 img/s | batch 8 img/s | batch 32 img/s | batch 32 / batch 1 |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {m} | {d} | {b1:.1f} | {b8:.1f} | {b32:.1f} | {b32 / b1:.2f}x |"
        for m, d, b1, b8, b32 in rows
    ]
    base32 = rows[0][4]
    lines += ["", f"Baseline model forward, batch 32: {base32:.0f} img/s (target >= 100 img/s)."]
    if decode is not None:
        lines.append(
            f"Decode + preprocess (9 real HyperKvasir JPEGs x 5, Pillow, 1 thread, black-border "
            f"crop and resize to 224): {decode:.1f} img/s; ratio model batch-32 / decode = "
            f"{base32 / decode:.2f}x for the baseline."
        )
    for m, _, _, _, b32 in rows[1:]:
        lines.append(f"Ratio baseline / {m.split(' ')[0]} at batch 32: {base32 / b32:.1f}x.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
