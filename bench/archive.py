"""Archive embedding throughput: JPEG files on disk -> unit vectors, photos/s, one machine.

What an archive re-embed (GastroNet-5M: 4.8M photos) costs per GPU. Target on an H100/H200:
>= 2,700 photos/s for the dual ViT-S model (4.8M photos in under 30 minutes).

Paths, each timed over every photo after a warm-up batch:
  * model   - the model alone on random tensors already on the device (the ceiling);
  * pil     - the service's own decode: `decode_image` + `image_to_tensor` (Pillow) in
              `--workers` DataLoader processes, uint8 to the device, then the model;
  * nvjpeg  - `torchvision.io.decode_jpeg` on the model's device (nvJPEG on a GPU; on a CPU,
              libjpeg-turbo, for the smoke run), an antialiased bilinear resize there, the model.
The model runs through `embedder.inference.run_model` (bf16 autocast on CUDA), as in the
service. Photos are SYNTHETIC (training.synthetic) written as JPEG files, or `--photos-dir`.
GPU decode resizes with torch, not Pillow, so its vectors differ slightly from the service's:
the mean/min cosine between the two paths on the same photos is reported beside the rates.

    python bench/archive.py --photos 8192 --size 720x576 --model dual --out bench/out/archive.json
    python bench/archive.py --device cpu --photos 16 --size 64x48 --model baseline --batch 8
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from embedder import create_model, decode_image, image_to_tensor, model_config  # noqa: E402
from embedder.inference import run_model  # noqa: E402

PRESETS = {"baseline": "baseline", "vits": "dinov2-vits14-reg4", "dual": "dual-dinov2-gastronet"}
TARGET = 2_700.0  # photos/s: 4.8M photos in under 30 minutes
DISTINCT = 64  # distinct synthetic photos; the files repeat them (decode cost is the same)


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h or w)


def _synthetic_jpeg(args: tuple[int, int, int]) -> bytes:
    from training.synthetic import generate_image

    i, w, h = args
    img = generate_image(i % 8, np.random.default_rng(i), size=max(w, h))
    left, top = (img.width - w) // 2, (img.height - h) // 2
    buf = io.BytesIO()
    img.crop((left, top, left + w, top + h)).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def write_photos(folder: Path, n: int, size: tuple[int, int], procs: int) -> list[Path]:
    """`n` JPEG files (DISTINCT synthetic photos, repeated) under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(i, *size) for i in range(min(n, DISTINCT))]
    with Pool(max(1, procs)) as pool:
        blobs = pool.map(_synthetic_jpeg, jobs)
    paths = []
    for i in range(n):
        path = folder / f"{i:07d}.jpg"
        path.write_bytes(blobs[i % len(blobs)])
        paths.append(path)
    return paths


class PilPhotos(torch.utils.data.Dataset):
    """The service's decode + preprocess per file, returned as uint8 (4x less to move).

    `image_to_tensor` gives k/255 floats, so `round(x * 255)` is lossless and the device's
    `/ 255` gives back exactly the service's tensor.
    """

    def __init__(self, paths: list[Path], input_size: int, crop_border: bool) -> None:
        self.paths, self.input_size, self.crop_border = paths, input_size, crop_border

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        img = decode_image(self.paths[i].read_bytes(), max_pixels=10**8)
        x = image_to_tensor(img, size=self.input_size, crop_border=self.crop_border)
        return x.mul_(255.0).round_().to(torch.uint8)


def pil_batches(paths: list[Path], args: argparse.Namespace, input_size: int, crop: bool,
                device: torch.device) -> Iterator[torch.Tensor]:  # fmt: skip
    loader = torch.utils.data.DataLoader(
        PilPhotos(paths, input_size, crop),
        batch_size=args.batch,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if args.workers else None,
        persistent_workers=False,
    )
    for batch in loader:
        yield batch.to(device, non_blocking=True).float().div_(255.0)


def nvjpeg_batches(paths: list[Path], args: argparse.Namespace, input_size: int,
                   device: torch.device) -> Iterator[torch.Tensor]:  # fmt: skip
    """File bytes read ahead in threads; decode + resize on `device` in one batched call."""
    from torchvision.io import ImageReadMode, decode_jpeg

    def read(chunk: list[Path]) -> list[torch.Tensor]:
        return [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in chunk]

    chunks = [paths[i : i + args.batch] for i in range(0, len(paths), args.batch)]
    with ThreadPoolExecutor(max(1, min(8, args.workers or 1))) as pool:
        for raw in pool.map(read, chunks):  # map reads ahead of the consumer
            images = decode_jpeg(raw, mode=ImageReadMode.RGB, device=device)
            yield resize_batch(images, input_size)


def resize_batch(images: list[torch.Tensor], size: int) -> torch.Tensor:
    """uint8 CHW images -> (n, 3, size, size) floats in [0, 1], antialiased bilinear."""
    out = []
    same = len({tuple(i.shape) for i in images}) == 1
    groups = [torch.stack(images)] if same else [i[None] for i in images]
    for g in groups:
        x = torch.nn.functional.interpolate(
            g.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out.append(x.div_(255.0).clamp_(0.0, 1.0))
    return torch.cat(out)


def timed_rate(batches: Callable[[], Iterator[torch.Tensor]], embed: Callable, n: int,
               device: torch.device) -> tuple[float, np.ndarray]:  # fmt: skip
    """Photos/s of embed(batch) over every batch (the first one is the warm-up)."""
    vectors, start, warm = [], 0.0, 0
    for i, batch in enumerate(batches()):
        vectors.append(embed(batch))  # run_model returns host arrays: the device is synced
        if i == 0:
            start, warm = time.perf_counter(), len(batch)
    elapsed = time.perf_counter() - start
    rate = (n - warm) / elapsed if n > warm and elapsed > 0 else float("nan")
    return rate, np.concatenate(vectors)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=list(PRESETS), default="dual")
    p.add_argument("--photos", type=int, default=8192)
    p.add_argument("--photos-dir", type=Path, default=None, help="real JPEGs instead")
    p.add_argument("--size", type=parse_size, default=(720, 576), help="JPEG WxH")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--paths", default="model,pil,nvjpeg")
    p.add_argument("--compile", action="store_true", help="torch.compile the model first")
    p.add_argument("--out", type=Path, default=None, help="JSON figures")
    args = p.parse_args()
    paths_asked = [s.strip() for s in args.paths.split(",") if s.strip()]
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    torch.manual_seed(0)
    cfg = model_config(PRESETS[args.model])
    model = create_model(cfg).eval().to(device)
    if args.compile:
        model = torch.compile(model)
    size, crop = cfg.preprocess.input_size, cfg.preprocess.crop_black_border

    def embed(x: torch.Tensor) -> np.ndarray:
        return run_model(model, x, device=device, batch_size=args.batch)

    result: dict = {
        "model": args.model, "dim": model.dim, "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "torch": torch.__version__, "cpus": os.cpu_count(), "machine": platform.machine(),
        "batch": args.batch, "workers": args.workers, "jpeg_size": list(args.size),
        "compiled": args.compile, "target_photos_per_s": TARGET, "rates": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        t = time.perf_counter()
        if args.photos_dir:
            files = sorted(args.photos_dir.rglob("*.jp*g"))[: args.photos]
        else:
            files = write_photos(Path(tmp), args.photos, args.size, args.workers)
        result["photos"] = len(files)
        result["mb_per_photo"] = sum(f.stat().st_size for f in files) / len(files) / 1e6
        result["write_s"] = time.perf_counter() - t
        vecs: dict[str, np.ndarray] = {}
        if "model" in paths_asked:
            gen = torch.Generator(device="cpu").manual_seed(0)
            x = torch.rand(args.batch, 3, size, size, generator=gen).to(device)
            rounds = max(2, len(files) // args.batch)
            rate, _ = timed_rate(lambda: iter([x] * rounds), embed, rounds * args.batch, device)
            result["rates"]["model"] = rate
        if "pil" in paths_asked:
            rate, vecs["pil"] = timed_rate(
                lambda: pil_batches(files, args, size, crop, device), embed, len(files), device
            )
            result["rates"]["pil"] = rate
        if "nvjpeg" in paths_asked:
            if crop:
                result["nvjpeg_note"] = "this model crops black borders; the GPU path does not"
            rate, vecs["nvjpeg"] = timed_rate(
                lambda: nvjpeg_batches(files, args, size, device), embed, len(files), device
            )
            result["rates"]["nvjpeg"] = rate
        if "pil" in vecs and "nvjpeg" in vecs:
            cos = (vecs["pil"] * vecs["nvjpeg"]).sum(axis=1)
            result["cosine_pil_vs_nvjpeg"] = {"mean": float(cos.mean()), "min": float(cos.min())}
    decode = {k: v for k, v in result["rates"].items() if k != "model"}
    best = max(decode, key=decode.get) if decode else None
    result["best_path"], result["best_rate"] = best, decode.get(best) if best else None
    result["target_met"] = bool(best and decode[best] >= TARGET)
    for k, v in result["rates"].items():
        print(f"{k:>7}: {v:,.1f} photos/s", flush=True)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
