"""Start-up time: whole `endoseek` processes, from exec to exit (or to /ready for serve).

Each verb runs as a new process under `/usr/bin/time -f %e` (wall seconds), `--runs` times,
and the median is reported: `--help`; the verbs that need no model, `migrate` (a new empty
SQLite DB each run), `keys list` and `jobs list` (a migrated DB); and `serve` with the shipped
baseline bundle on a new empty (migrated) SQLite DB, timed from exec to the first 200 from
GET /ready, then stopped. With `--compare DIR` (another checkout, e.g. the previous commit
unpacked by `git archive`), each run times that tree's process right before this one's, so
drift of this shared machine hits both columns alike. The CLI runs as
`python -m app.cli.main` in the tree measured: the `endoseek` console script does the same.
Targets: --help < 1 s, model-free verbs < 2 s, serve to /ready < 8 s.

    .venv/bin/python bench/startup.py --runs 5 --write-docs docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere
from bench._docs import write_section  # noqa: E402

SECTION = "Start-up"
TIME = "/usr/bin/time"
# label, arguments, target (s), what the DB must be before the run ("" | "migrated")
VERBS = (
    ("endoseek --help", ["--help"], 1.0, ""),
    ("endoseek migrate", ["migrate"], 2.0, ""),
    ("endoseek keys list", ["keys", "list"], 2.0, "migrated"),
    ("endoseek jobs list", ["jobs", "list"], 2.0, "migrated"),
)
SERVE = ("endoseek serve -> /ready 200", 8.0)


def _env(work: Path, port: int = 8000) -> dict[str, str]:
    """A private DB, storage and index under `work`; the baseline bundle (the default)."""
    env = os.environ | {
        "ENDOSEEK_DATABASE_URL": f"sqlite:///{work / 'endoseek.db'}",
        "ENDOSEEK_STORAGE_DIR": str(work / "storage"),
        "ENDOSEEK_INDEX_DIR": str(work / "index"),
        "ENDOSEEK_PORT": str(port),
        "ENDOSEEK_LOG_LEVEL": "WARNING",
    }
    env.pop("ENDOSEEK_BUNDLE", None)
    return env


def _cli() -> list[str]:
    """`endoseek` as `python -m app.cli.main`: run with cwd=tree, it imports that tree's code."""
    return [sys.executable, "-m", "app.cli.main"]


def time_process(tree: Path, args: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one whole `endoseek ARGS` process, as /usr/bin/time reports them."""
    out = subprocess.run(
        [TIME, "-f", "%e", *_cli(), *args],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{args} failed in {tree}:\n{out.stderr[-2000:]}")
    return float(out.stderr.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_serve(tree: Path, work: Path, limit_s: float = 300.0) -> float:
    """Seconds from exec of `endoseek serve` to its first 200 on /ready (polled every 10 ms)."""
    port = _free_port()
    env = _env(work, port)
    subprocess.run([*_cli(), "migrate"], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    log = (work / "serve.log").open("wb")
    start = time.perf_counter()
    proc = subprocess.Popen([*_cli(), "serve"], cwd=tree, env=env, stdout=log, stderr=log)
    try:
        with httpx.Client(timeout=1.0) as client:
            while time.perf_counter() - start < limit_s:
                if proc.poll() is not None:
                    raise RuntimeError(f"serve exited: {(work / 'serve.log').read_text()[-2000:]}")
                try:
                    if client.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                        return time.perf_counter() - start
                except httpx.HTTPError:
                    pass
                time.sleep(0.01)
        raise RuntimeError(f"serve not ready within {limit_s} s")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def measure_trees(
    trees: list[Path], runs: int, scratch: Path, warmup: int = 1
) -> list[dict[str, list[float]]]:
    """Round-robin: in each run, every verb is timed in each tree, one right after the other.

    The first `warmup` runs are not counted: they compile the tree's bytecode and bring the
    libraries into the page cache, as any later start on a deployed host finds them.
    """
    results: list[dict[str, list[float]]] = [{} for _ in trees]
    migrated = []
    for i, tree in enumerate(trees):  # one migrated DB per tree for the read-only verbs
        work = scratch / f"tree{i}-ready"
        work.mkdir()
        subprocess.run([*_cli(), "migrate"], cwd=tree, env=_env(work), check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        migrated.append(work)
    for run in range(-warmup, runs):
        for label, args, _, needs in VERBS:
            for i, tree in enumerate(trees):
                work = migrated[i] if needs == "migrated" else scratch / f"tree{i}-{label}-{run}"
                work.mkdir(exist_ok=True)
                results[i].setdefault(label, []).append(time_process(tree, args, _env(work)))
        for i, tree in enumerate(trees):
            work = scratch / f"tree{i}-serve-{run}"
            work.mkdir()
            results[i].setdefault(SERVE[0], []).append(time_serve(tree, work))
        figures = ", ".join(
            f"{label.removeprefix('endoseek ')} " + "/".join(f"{r[label][-1]:.2f}" for r in results)
            for label in results[0]
        )
        print(f"{'warm-up' if run < 0 else f'run {run + 1}'}: {figures}", flush=True)
    return [{label: times[warmup:] for label, times in r.items()} for r in results]


def render(args: argparse.Namespace, after: dict[str, list[float]],
           before: dict[str, list[float]] | None) -> str:  # fmt: skip
    cores = os.cpu_count()
    machine = f"{cores}-core CPU ({platform.processor() or platform.machine()})"
    cmd = f".venv/bin/python bench/startup.py --runs {args.runs} --warmup {args.warmup}"
    if args.compare:
        cmd += " --compare DIR"
    targets = {label: target for label, _, target, _ in VERBS} | {SERVE[0]: SERVE[1]}
    head = "| process | target | median (s) | runs (s) |"
    rule = "|---|---:|---:|---|"
    if before is not None:
        head = "| process | target | before: median (s) | median (s) | runs (s) |"
        rule = "|---|---:|---:|---:|---|"
    rows = []
    for label, times in after.items():
        med = statistics.median(times)
        mark = "met" if med < targets[label] else "MISSED"
        runs = ", ".join(f"{t:.2f}" for t in times)
        old = f" {statistics.median(before[label]):.2f} |" if before is not None else ""
        target = f"< {targets[label]:g} s"
        rows.append(f"| `{label}` | {target} |{old} **{med:.2f}** ({mark}) | {runs} |")
    note = ""
    if args.compare:
        note = (f" Before: DIR = {args.compare_label}, timed right before this tree in each "
                "run (same machine, same load).")  # fmt: skip
    return "\n".join([
        f"## {SECTION}",
        "",
        f"Command: `{cmd} --write-docs docs/benchmarks.md`",
        "",
        f"Machine: {machine}, Python {platform.python_version()}; load average "
        f"{os.getloadavg()[0]:.1f} at the end. Whole processes: each CLI run is "
        "`/usr/bin/time -f %e python -m app.cli.main ARGS` (wall seconds, exec to exit) on a "
        "private SQLite DB (`migrate`: a new empty one each run; `keys list`, `jobs list`: a "
        "migrated one); serve is timed from exec to the first 200 from GET /ready with the "
        "shipped baseline bundle on a new empty, migrated SQLite DB. Medians of "
        f"{args.runs} runs after {args.warmup} uncounted warm-up run(s).{note}",
        "",
        head,
        rule,
        *rows,
        "",
    ])  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1, help="uncounted runs first")
    p.add_argument("--compare", type=Path, default=None, help="another checkout to time first")
    p.add_argument("--compare-label", default="", help="how the docs name --compare's tree")
    p.add_argument("--write-docs", type=Path, default=None)
    args = p.parse_args()
    if not Path(TIME).exists():
        sys.exit(f"{TIME} is missing: apt-get install time (scripts/ensure-test-tools.sh)")
    args.compare_label = args.compare_label or (str(args.compare) if args.compare else "")
    trees = [args.compare.resolve(), REPO] if args.compare else [REPO]
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        results = measure_trees(trees, args.runs, Path(tmp), args.warmup)
    before, after = (results[0], results[1]) if args.compare else (None, results[0])
    body = render(args, after, before)
    print(body)
    if args.write_docs:
        write_section(args.write_docs, SECTION, body)


if __name__ == "__main__":
    main()
