"""STOW-RS against the REST multipart upload: the same photos, one served process, paired rounds.

The photos are the real HyperKvasir photos scaled to 1920 x 1080 and saved as JPEG (quality
92), each copy with one changed pixel so that every upload is new. REST sends the JPEG files in
one `POST /v1/procedures/{id}/images` (multipart/form-data); STOW-RS sends the same JPEG bytes,
each encapsulated unchanged in a VL Endoscopic Image (JPEG Baseline, YBR_FULL_422), in one
`POST /dicomweb/studies` (multipart/related). Both paths then decode and embed the same JPEG.
Each round runs one REST request and one STOW request of `--photos` photos each, back to back
(the order alternates round by round); the figure is the median of the per-round ratios of
photos/s, STOW / REST (target >= 0.8x), plus the same for one photo per request.

    .venv/bin/python bench/stow.py --rounds 7 --photos 8 --write-docs docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, VLEndoscopicImageStorage, generate_uid

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._bundles import LABELS, MODELS, bench_bundle  # noqa: E402
from bench._docs import write_section  # noqa: E402
from bench._measure import median_ratio  # noqa: E402
from bench._photos import Photos  # noqa: E402
from bench._served import Served  # noqa: E402
from tests.app.dicom import factory  # noqa: E402

SECTION = "DICOM"
SUBSECTION = "STOW-RS vs REST upload"
SIZE = (1920, 1080)
BOUNDARY = "endoseek-bench-stow"


# -- inputs -----------------------------------------------------------------------------------
def vl_endoscopic(jpeg: bytes, study_uid: str) -> bytes:
    """The JPEG bytes as one frame of a VL Endoscopic Image, JPEG Baseline (Part 10 file)."""
    ds = Dataset()
    ds.SOPClassUID = VLEndoscopicImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "ES"
    ds.StudyDescription = "Colonoscopy"
    ds.ContentDate, ds.ContentTime = "20261130", "102233"
    ds.Rows, ds.Columns = SIZE[1], SIZE[0]
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate([jpeg])
    ds["PixelData"].VR = "OB"
    return factory.to_bytes(factory.with_meta(ds, JPEGBaseline8Bit))


def stow_body(instances: list[bytes]) -> bytes:
    parts = [
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
        for data in instances
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


# -- the measurement ---------------------------------------------------------------------------
def bench(args: argparse.Namespace, work: Path) -> dict[str, object]:
    photos = Photos(SIZE, args.quality, span=997)
    bundle = bench_bundle(args.model, work / "bundle")
    server = Served(work, ["ingest"], bundle=bundle, client_timeout_s=600)
    sizes: list[int] = []
    try:
        with server.client() as c:
            pid = c.post("/v1/procedures", json={"source": "bench", "external_id": "rest"})
            rest_path = f"/v1/procedures/{pid.json()['id']}/images"
            study = generate_uid()

            def rest(n: int) -> float:
                """Photos/s of one REST upload of n new photos."""
                files = [
                    ("files", (f"p{i}.jpg", d, "image/jpeg")) for i, d in enumerate(photos.take(n))
                ]
                sizes.extend(len(d) for _, (_, d, _) in files)
                start = time.perf_counter()
                r = c.post(rest_path, files=files)
                took = time.perf_counter() - start
                assert r.status_code == 201, (r.status_code, r.text[:300])
                return n / took

            def stow(n: int) -> float:
                """Photos/s of one STOW-RS request of n new instances of the same JPEGs."""
                body = stow_body([vl_endoscopic(d, study) for d in photos.take(n)])
                ctype = f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"'
                start = time.perf_counter()
                r = c.post("/dicomweb/studies", content=body, headers={"Content-Type": ctype})
                took = time.perf_counter() - start
                assert r.status_code == 200, (r.status_code, r.text[:300])
                return n / took

            for _ in range(2):  # warm-up: lazy imports, first batches, both paths
                rest(2)
                stow(2)
            out: dict[str, object] = {}
            for label, n in (("one", 1), ("many", args.photos)):
                rest_rates, stow_rates = [], []
                for k in range(args.rounds):  # alternate which path goes first
                    pair = [("rest", rest), ("stow", stow)][:: 1 if k % 2 == 0 else -1]
                    got = {name: fn(n) for name, fn in pair}
                    rest_rates.append(got["rest"])
                    stow_rates.append(got["stow"])
                out[label] = {
                    "n": n,
                    "rest": statistics.median(rest_rates),
                    "stow": statistics.median(stow_rates),
                    "ratio": median_ratio(stow_rates, rest_rates),
                }
                print(label, out[label], flush=True)
    finally:
        server.stop()
    out["jpeg_kb"] = statistics.median(sizes) / 1024
    return out


# -- report -----------------------------------------------------------------------------------
def render(args: argparse.Namespace, r: dict) -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                if "model name" in ln), platform.machine())  # fmt: skip
    lines = [
        f"### {SUBSECTION}",
        "",
        f"Command: `{args.command}`",
        "",
        f"Machine: {os.cpu_count()}-core CPU ({cpu}), SQLite, model {LABELS[args.model]}; "
        f"load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        f"One served process; real HyperKvasir photos scaled to {SIZE[0]} x {SIZE[1]}, JPEG "
        f"quality {args.quality} (median {r['jpeg_kb']:.0f} kB). REST: multipart/form-data "
        "upload of the JPEG files; STOW-RS: the same JPEG bytes, each encapsulated unchanged "
        "in a VL Endoscopic Image (JPEG Baseline), as multipart/related. Every photo is new "
        f"(no duplicate shortcut). {args.rounds} paired rounds per row, order alternating; "
        "ratio = median of the per-round ratios.",
        "",
        "| photos per request | REST upload | STOW-RS | STOW-RS / REST | target |",
        "|---:|---:|---:|---:|---|",
    ]
    for key in ("one", "many"):
        row = r[key]
        met = "met" if row["ratio"] >= 0.8 else "MISSED"
        lines.append(
            f"| {row['n']} | {row['rest']:.1f} photos/s | {row['stow']:.1f} photos/s "
            f"| **{row['ratio']:.2f}x** ({met}) | >= 0.8x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=MODELS, default="baseline")
    ap.add_argument("--photos", type=int, default=8, help="photos per request (batch row)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--quality", type=int, default=92)
    ap.add_argument("--write-docs", type=Path, default=None)
    args = ap.parse_args()
    args.command = ".venv/bin/python bench/stow.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="bench-stow-") as d:
        result = bench(args, Path(d))
    text = render(args, result)
    print(text)
    if args.write_docs:
        write_section(args.write_docs, SECTION, text, subsection=SUBSECTION)


if __name__ == "__main__":
    main()
