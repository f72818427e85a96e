"""C-STORE receive rate against DCMTK's own storescp, and time from Success to searchable.

Receive rate: `--files` 1920 x 1080 VL Endoscopic instances (JPEG Baseline, quality 92, made
from the real HyperKvasir photos with tests/app/dicom/factory.py, patient attributes included)
are sent by DCMTK `storescu -xy` in one association, once to DCMTK `storescp +xa` (writes each
file, no fsync) and once to `endoseek dicom-listen` (checks the header, de-identifies, writes the
spool file, fsyncs file and directory, then answers Success), back to back in each round, the
order alternating; both receivers run the whole time and their output is emptied between
rounds. DCMTK runs twice over: as packaged (Nagle on) and with TCP_NODELAY=1 (its fastest).
Figure: instances/s of the whole storescu process, medians, and the median of the per-round
ratios EndoSeek / storescp (target >= 0.5x).

Success to searchable: `endoseek serve` with the receiver inside (ENDOSEEK_DICOM_LISTEN=true: the
receiver wakes the spool worker) and, on the same spool, a separate `endoseek dicom-listen`
(the worker finds its files by polling every dicom_spool_poll_s, default 1 s). A pynetdicom SCU
sends one new study at a time, each at a random moment (0-1 s after the last one was seen);
the clock runs from the C-STORE Success to the first answer of GET /v1/procedures/{id}/images
that lists the photo (polled every 10 ms).

    .venv/bin/python bench/dicom_receive.py --rounds 5 --files 50 --write-docs docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image
from pydicom import dcmread
from pydicom.uid import JPEGBaseline8Bit, VLEndoscopicImageStorage, generate_uid
from pynetdicom import AE

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._docs import write_section  # noqa: E402
from bench._measure import median_ratio  # noqa: E402
from bench._served import CLI, Served, free_port, service_env, stop  # noqa: E402
from tests.app.dicom import factory  # noqa: E402

SECTION = "DICOM"
SUBSECTION = "C-STORE receiver"
SIZE = (1920, 1080)
AET = "ENDOSEEK"
MAX_PDU = 65536  # announced by both receivers (EndoSeek's default; storescp's is 16384)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} not found: install DCMTK (apt-get install dcmtk)")
    return path


# -- inputs -----------------------------------------------------------------------------------
def make_files(out: Path, n: int, quality: int) -> list[Path]:
    """n distinct 1080p JPEG VL Endoscopic Part 10 files (real photos where available)."""
    photos = factory.hyperkvasir_photos()[:16]
    base = [Image.open(p).convert("RGB").resize(SIZE) for p in photos]
    if not base:
        base = [factory.synthetic_photo(i, size=SIZE) for i in range(4)]
    out.mkdir(parents=True)
    paths = []
    for i in range(n):
        img = base[i % len(base)].copy()
        img.putpixel((i % 997, (i // 997) % 997), (i % 256, 7, 7))  # every file distinct
        ds = factory.vl_endoscopic(img, transfer_syntax=JPEGBaseline8Bit, quality=quality)
        paths.append(factory.write(ds, out / f"i{i:04d}.dcm"))
    return paths


# -- the receivers ----------------------------------------------------------------------------
def _wait_port(port: int, proc: subprocess.Popen, what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} not listening within {limit_s} s")


def _empty(directory: Path, pattern: str) -> None:
    for p in directory.glob(pattern):
        if p.is_file():
            p.unlink()


# storescu/storescp as Debian packages them leave Nagle's algorithm on (each small DIMSE message
# then waits for a delayed ACK: ~20 instances/s on loopback); TCP_NODELAY=1 in DCMTK's
# environment turns it off. Both set-ups are measured; the sender is the same for both receivers.
DCMTK_SETUPS = {"packaged": {}, "nodelay": {"TCP_NODELAY": "1"}}


def receive_rates(args: argparse.Namespace, work: Path, files: list[Path]) -> dict[str, dict]:
    """Paired rounds of storescu -xy -> storescp and -> endoseek dicom-listen, per DCMTK set-up."""
    storescu = _tool("storescu")
    spool = work / "spool"
    es_port = free_port()
    procs: list[subprocess.Popen] = []
    scp: dict[str, tuple[int, Path]] = {}
    for name, extra in DCMTK_SETUPS.items():
        out, port = work / f"storescp-{name}", free_port()
        out.mkdir()
        cmd = [_tool("storescp"), "+xa", "-pdu", str(MAX_PDU), "-dhl", "-aet", "STORESCP",
               "-od", str(out), str(port)]  # fmt: skip
        procs.append(subprocess.Popen(cmd, env=os.environ | extra, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))  # fmt: skip
        scp[name] = (port, out)
    env = service_env(work, ENDOSEEK_DICOM_AE_TITLE=AET, ENDOSEEK_DICOM_PORT=str(es_port),
                      ENDOSEEK_DICOM_MAX_PDU=str(MAX_PDU))  # fmt: skip
    listen = subprocess.Popen(
        [*CLI, "dicom-listen"], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    procs.append(listen)
    results: dict[str, dict] = {}
    try:
        for proc, (name, (port, _)) in zip(procs, scp.items(), strict=False):
            _wait_port(port, proc, f"storescp ({name})")
        _wait_port(es_port, listen, "endoseek dicom-listen")

        def send(port: int, aec: str, setup: str) -> float:
            cmd = [storescu, "-xy", "-aec", aec, "127.0.0.1", str(port), *map(str, files)]
            env = os.environ | DCMTK_SETUPS[setup]
            start = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            took = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"storescu to {aec} failed: {done.stderr[-1000:]}")
            return len(files) / took

        def dcmtk_round(setup: str) -> float:
            port, out = scp[setup]
            rate = send(port, "STORESCP", setup)
            got = len(list(out.glob("*")))
            assert got == len(files), f"storescp wrote {got} files"
            _empty(out, "*")
            return rate

        def endoseek_round(setup: str) -> float:
            rate = send(es_port, AET, setup)
            got = len(list(spool.glob("*.spool")))
            assert got == len(files), f"spool holds {got} files"
            _empty(spool, "*.spool")  # every round writes every file anew
            return rate

        for setup in DCMTK_SETUPS:
            dcmtk_round(setup), endoseek_round(setup)  # warm-up: page cache, lazy imports
            results[setup] = {"dcmtk": [], "endoseek": []}
        for k in range(args.rounds):
            for setup in DCMTK_SETUPS:
                pair = [("dcmtk", dcmtk_round), ("endoseek", endoseek_round)]
                for who, fn in pair[:: 1 if k % 2 == 0 else -1]:
                    results[setup][who].append(fn(setup))
                r = results[setup]
                print(f"round {k + 1} {setup}: storescp {r['dcmtk'][-1]:.1f}/s, endoseek "
                      f"{r['endoseek'][-1]:.1f}/s", flush=True)  # fmt: skip
    finally:
        for proc in procs:
            stop(proc, 60)
    for r in results.values():
        r["ratio"] = median_ratio(r["endoseek"], r["dcmtk"])
    results["_mb"] = {"mb": statistics.median(p.stat().st_size for p in files) / 1e6}
    return results


# -- Success to searchable ---------------------------------------------------------------------
def to_searchable(args: argparse.Namespace, work: Path, files: list[Path]) -> dict[str, list]:
    """Seconds from C-STORE Success to the photo listed by the procedure API, both set-ups."""
    work = work / "served"
    work.mkdir()
    inside_port, outside_port = free_port(), free_port()
    with (work / "serve.log").open("wb") as log, Served(
        work, ["search"], ready_s=300, client_timeout_s=30, stop_s=60, log=log,
        ENDOSEEK_DICOM_AE_TITLE=AET, ENDOSEEK_DICOM_LISTEN="true",
        ENDOSEEK_DICOM_PORT=str(inside_port),
    ) as served:  # fmt: skip
        listen = subprocess.Popen(
            [*CLI, "dicom-listen"], cwd=REPO,
            env=served.env | {"ENDOSEEK_DICOM_PORT": str(outside_port)}, stdout=log, stderr=log,
        )  # fmt: skip
        try:
            _wait_port(outside_port, listen, "endoseek dicom-listen")
            ports = {"inside": inside_port, "outside": outside_port}
            with served.client() as client:
                return _time_to_searchable(client, ports, files[: args.latency + 1])
        finally:
            stop(listen, 60)


def _time_to_searchable(
    client: httpx.Client, ports: dict[str, int], files: list[Path]
) -> dict[str, list]:
    """Per receiver port: one new study per file, each sent at a random moment; the first is
    the warm-up, not counted."""
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(VLEndoscopicImageStorage, JPEGBaseline8Bit)

    def visible(study: str) -> bool:
        r = client.get("/v1/procedures", params={"source": "BENCH", "external_id": study})
        items = r.json()["items"]
        if not items:
            return False
        r = client.get(f"/v1/procedures/{items[0]['id']}/images")
        return bool(r.json()["items"])

    sources = [dcmread(p) for p in files]
    jitter = random.Random(15)
    out: dict[str, list] = {label: [] for label in ports}
    for label, port in ports.items():
        for i, ds in enumerate(sources):
            time.sleep(jitter.uniform(0, 1.0))  # arrive at any moment of a poll cycle
            ds = ds.copy()
            ds.StudyInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            assoc = ae.associate("127.0.0.1", port, ae_title=AET)
            status = assoc.send_c_store(ds)
            start = time.perf_counter()
            assoc.release()
            if status.Status != 0:
                raise RuntimeError(f"C-STORE answered 0x{status.Status:04X}")
            while not visible(ds.StudyInstanceUID):
                if time.perf_counter() - start > 120:
                    raise RuntimeError("instance not searchable within 120 s")
                time.sleep(0.01)
            took = time.perf_counter() - start
            if i > 0:  # the first one loads pydicom and the ingest path: warm-up
                out[label].append(took)
            print(f"{label} {i}: {took * 1000:.0f} ms", flush=True)
    return out


# -- report -----------------------------------------------------------------------------------
def render(args: argparse.Namespace, rates: dict, latency: dict) -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                if "model name" in ln), platform.machine())  # fmt: skip
    dcmtk_version = subprocess.run([_tool("storescp"), "--version"], capture_output=True,
                                   text=True).stdout.splitlines()[0].strip("$ ")  # fmt: skip

    def ms(values: list[float]) -> str:
        if not values:
            return "-"
        return f"**{statistics.median(values) * 1000:.0f} ms** (max {max(values) * 1000:.0f})"

    def runs(values: list[float]) -> str:
        return ", ".join(f"{v:.1f}" for v in values)

    lines = [
        f"### {SUBSECTION}",
        "",
        f"Command: `{args.command}`",
        "",
        f"Machine: {os.cpu_count()}-core CPU ({cpu}), ext4 disk, SQLite, {dcmtk_version}, "
        f"baseline model; load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        f"Receive rate: {args.files} VL Endoscopic instances, {SIZE[0]} x {SIZE[1]} JPEG "
        f"Baseline (median {rates['_mb']['mb']:.2f} MB), sent by `storescu -xy` in one "
        "association. `storescp +xa` writes each file without fsync; `endoseek dicom-listen` "
        "checks the header, de-identifies, writes the spool file and fsyncs it and its "
        f"directory before answering Success. Both announce a {MAX_PDU}-byte maximum PDU. "
        "Two DCMTK set-ups: as packaged (Nagle's algorithm on, so every small DIMSE message "
        "waits for a delayed ACK) and with `TCP_NODELAY=1` in the environment of storescu and "
        f"storescp. {args.rounds} paired rounds each, order alternating; instances/s of the "
        "whole storescu process; ratio = median of the per-round ratios.",
        "",
        "| DCMTK set-up | storescp (instances/s) | EndoSeek, durable spool (instances/s) "
        "| EndoSeek / storescp | target |",
        "|---|---:|---:|---:|---|",
    ]
    for setup in DCMTK_SETUPS:
        r = rates[setup]
        met = "met" if r["ratio"] >= 0.5 else "MISSED"
        label = "as packaged" if setup == "packaged" else "`TCP_NODELAY=1`"
        lines.append(
            f"| {label} | {statistics.median(r['dcmtk']):.1f} ({runs(r['dcmtk'])}) "
            f"| {statistics.median(r['endoseek']):.1f} ({runs(r['endoseek'])}) "
            f"| **{r['ratio']:.2f}x** ({met}) | >= 0.5x |"
        )
    lines += [
        "",
        "Success to searchable (one new study per instance; photo listed by "
        f"GET /v1/procedures/{{id}}/images, polled every 10 ms; median of {args.latency}):",
        "",
        "| set-up | Success -> searchable |",
        "|---|---:|",
        f"| receiver inside `serve` (ENDOSEEK_DICOM_LISTEN; wakes the spool worker) "
        f"| {ms(latency['inside'])} |",
        "| separate `dicom-listen`, `serve` polls the spool (dicom_spool_poll_s = 1 s) "
        f"| {ms(latency['outside'])} |",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--latency", type=int, default=10, help="instances timed per set-up")
    ap.add_argument("--quality", type=int, default=92)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    ap.add_argument("--write-docs", type=Path, default=None)
    args = ap.parse_args()
    args.command = ".venv/bin/python bench/dicom_receive.py " + " ".join(
        a for a in sys.argv[1:] if not a.startswith("--write-docs") and a != str(args.write_docs)
    )
    with tempfile.TemporaryDirectory(prefix="bench-dicom-", dir=args.work) as d:
        work = Path(d)
        files = make_files(work / "files", args.files, args.quality)
        rates = receive_rates(args, work, files)
        latency = to_searchable(args, work, files)
    text = render(args, rates, latency)
    print(text)
    if args.write_docs:
        write_section(args.write_docs, SECTION, text, subsection=SUBSECTION)


if __name__ == "__main__":
    main()
