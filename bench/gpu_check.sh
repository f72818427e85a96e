#!/usr/bin/env bash
# GPU readiness in one go, under 8 minutes on one H100/H200:
#   env        nvidia-smi, python, torch and its CUDA build
#   deps       what the checks import; installs what is missing (pip, or wheels in ./.whl for
#              a machine without a registry) and a faiss with GPU support matching torch's CUDA
#   congruence CPU-vs-GPU faiss top-k: tests/indexer/test_placement.py -m gpu
#   bf16       bf16 embedding == fp32 CPU: tests/embedder/test_inference.py -m gpu
#   archive    JPEG files -> vectors, dual ViT-S, photos/s (bench/archive.py; target >= 2,700)
#   compiled   the same with torch.compile (optional: a failure here fails nothing)
# Every step is timed and time-limited; a failing step is reported and the next one runs.
# Figures go to $OUT (when set) else bench/out: gpu_check.md, gpu_check.json, archive.json,
# gpu_check.log. Exit 0 when every required step passed.
#
#   bash bench/gpu_check.sh                 # on the GPU machine
#   bash bench/gpu_check.sh --dry-run       # print the plan, run nothing
#   bash bench/gpu_check.sh --cpu-smoke     # everything at toy size on a CPU (GPU tests skip)
#   bash bench/gpu_check.sh --fetch-wheels  # here: wheels for an offline GPU box into ./.whl
#
# faiss vs torch CUDA: PyPI's GPU faiss wheels (faiss-gpu-cu12, faiss-gpu 1.15) are built for
# CUDA 12 and pull nvidia-cublas-cu12 + nvidia-cuda-runtime-cu12 (~0.6 GB). Beside a CUDA 12
# torch they share those libraries. Beside a CUDA 13 torch (e.g. torch 2.11+cu130) they still
# run, on their own CUDA 12 libraries (the driver serves both), installed into a separate
# folder used by the congruence step only; that needs a registry, so an offline CUDA 13 box
# reports the congruence test as skipped with this reason rather than passing it.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=run
case "${1:-}" in
  "") ;;
  --dry-run) MODE=dry ;;
  --cpu-smoke) MODE=smoke ;;
  --fetch-wheels) MODE=fetch ;;
  *) echo "usage: $0 [--dry-run|--cpu-smoke|--fetch-wheels]" >&2; exit 2 ;;
esac

OUTDIR=${OUT:-bench/out}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
SITE=${GPU_CHECK_SITE:-/tmp/gpu_check_site}      # missing packages go here
FAISS_SITE=${GPU_CHECK_FAISS_SITE:-/tmp/gpu_check_faiss}  # a CUDA 12 faiss beside CUDA 13 torch
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
NEEDED="pydantic safetensors scipy timm PIL faiss pytest torchvision"
export MODE PYTHON SITE FAISS_SITE NEEDED

if [[ $MODE == fetch ]]; then
  # the pydantic stack at the versions of this venv, for python 3.12 on x86-64 Linux
  mkdir -p .whl
  pins=$("$PYTHON" -m pip show pydantic pydantic-core annotated-types typing-inspection |
    awk '/^Name:/{n=$2} /^Version:/{print n"=="$2}')
  # shellcheck disable=SC2086
  "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_28_x86_64 -d .whl $pins
  ls -la .whl
  exit 0
fi

mkdir -p "$OUTDIR"
LOG=$OUTDIR/gpu_check.log
STEPLOG=$(mktemp)
trap 'rm -f "$STEPLOG"' EXIT
: >"$LOG"
declare -a NAMES=() STATUS=() SECS=() NOTES=()

# step NAME LIMIT_S REQUIRED(yes|no) CMD...: run CMD under `timeout`, never abort the script
step() {
  local name=$1 limit=$2 required=$3
  shift 3
  echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
  NAMES+=("$name")
  if [[ $MODE == dry ]]; then
    STATUS+=(planned) SECS+=(0) NOTES+=("required: $required")
    return 0
  fi
  local t0=$SECONDS rc=0 status=ok note=""
  # a bash child runs the step's function (exported below), so `timeout` can end all of it
  timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@" >"$STEPLOG" 2>&1 || rc=$?
  cat "$STEPLOG" >>"$LOG"
  if ((rc == 124 || rc == 137)); then
    status=timeout
  elif ((rc != 0)); then
    status="failed (rc $rc)"
  elif grep -qE '^[0-9]+ skipped|[^0-9]0 passed| [0-9]+ skipped' "$STEPLOG" &&
    ! grep -qE '[1-9][0-9]* passed' "$STEPLOG"; then
    status=skipped
    note=$(grep -m1 -E '^SKIPPED' "$STEPLOG" | cut -c1-200 || true)
  fi
  [[ $required == no && $status != ok ]] && note="optional; $note"
  STATUS+=("$status") SECS+=($((SECONDS - t0))) NOTES+=("$note")
  echo "--- $name: $status in $((SECONDS - t0))s" | tee -a "$LOG"
}

env_info() {
  (nvidia-smi || echo "nvidia-smi: not available")
  "$PYTHON" - <<'EOF'
import platform, sys
import torch
print("python", sys.version.split()[0], platform.machine())
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
EOF
}

missing() { # the modules of NEEDED that do not import (faiss without GPUs counts as missing)
  "$PYTHON" - "$@" <<'EOF'
import importlib, sys
out = []
for name in sys.argv[1:]:
    try:
        mod = importlib.import_module(name)
        if name == "faiss" and getattr(mod, "get_num_gpus", lambda: 0)() == 0:
            out.append("faiss-gpu")
    except Exception:
        out.append(name)
print(" ".join(out))
EOF
}

install_deps() {
  local miss torch_cuda
  # shellcheck disable=SC2086
  miss=$(missing $NEEDED)
  echo "missing: ${miss:-nothing}"
  [[ $MODE == smoke ]] && { echo "cpu smoke: no installs"; return 0; }
  if [[ -d .whl ]] && compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" .whl/*.whl
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  local pkgs=()
  # shellcheck disable=SC2086
  for m in $(missing $NEEDED); do
    case $m in
      PIL) pkgs+=(pillow) ;;
      faiss | faiss-gpu) ;;
      *) pkgs+=("$m") ;;
    esac
  done
  if ((${#pkgs[@]})); then "$PYTHON" -m pip install -q --retries 1 --timeout 20 --target "$SITE" "${pkgs[@]}"; fi
  torch_cuda=$("$PYTHON" -c 'import torch; print((torch.version.cuda or "").split(".")[0])')
  if [[ " $(missing faiss) " == *" faiss"* ]]; then
    case $torch_cuda in
      12) "$PYTHON" -m pip install -q --retries 1 --timeout 20 --target "$SITE" faiss-gpu-cu12 ;;
      13) echo "torch is CUDA 13: faiss GPU wheels are CUDA 12; installing them with their own"
          echo "CUDA 12 libraries into $FAISS_SITE for the congruence step only"
          "$PYTHON" -m pip install -q --retries 1 --timeout 20 --target "$FAISS_SITE" faiss-gpu-cu12 ;;
      *) echo "torch has no CUDA build: no GPU faiss to install" ;;
    esac
  fi
  PYTHONPATH="$FAISS_SITE:$PYTHONPATH" "$PYTHON" -c \
    'import faiss; print("faiss", faiss.__version__, "gpus", faiss.get_num_gpus())'
}

pytest_gpu() {
  PYTHONPATH="$FAISS_SITE:$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m pytest -q -rs \
    -p no:cacheprovider -p no:randomly -m gpu "$@"
}

archive() {
  PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" bench/archive.py "$@"
}

export -f env_info missing install_deps pytest_gpu archive

if [[ $MODE == smoke ]]; then
  ARCHIVE=(--device cpu --photos 16 --size 64x48 --model baseline --batch 8 --workers 1)
else
  ARCHIVE=(--photos 16384 --size 720x576 --model dual --batch 256)
fi

step env 60 yes env_info
step deps 300 yes install_deps
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
step congruence 120 yes pytest_gpu tests/indexer/test_placement.py
step bf16 120 yes pytest_gpu tests/embedder/test_inference.py
step archive 300 yes archive "${ARCHIVE[@]}" --out "$OUTDIR/archive.json"
if [[ $MODE != smoke ]]; then
  step compiled 180 no archive --photos 8192 --size 720x576 --model dual --batch 256 \
    --paths model,nvjpeg --compile --out "$OUTDIR/archive_compiled.json"
fi

# the report: one table of steps, then the archive figures
failed=0
{
  echo "# GPU check ($MODE) $(date -u +%FT%TZ)"
  echo
  echo "| step | status | seconds | note |"
  echo "|---|---|---:|---|"
  for i in "${!NAMES[@]}"; do
    echo "| ${NAMES[$i]} | ${STATUS[$i]} | ${SECS[$i]} | ${NOTES[$i]} |"
    if [[ ${STATUS[$i]} != ok && ${STATUS[$i]} != planned && ${NOTES[$i]} != optional* ]]; then
      [[ $MODE == smoke && ${STATUS[$i]} == skipped ]] || failed=1
    fi
  done
  echo
  for f in "$OUTDIR/archive.json" "$OUTDIR/archive_compiled.json"; do
    [[ -f $f && $MODE != dry ]] || continue
    "$PYTHON" - "$f" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"Archive ({sys.argv[1].rsplit('/', 1)[-1]}): {r['photos']} SYNTHETIC {r['jpeg_size'][0]}x"
      f"{r['jpeg_size'][1]} JPEGs ({r['mb_per_photo'] * 1000:.0f} kB), model {r['model']} "
      f"({r['dim']}-d), {r['device']} {r['gpu'] or ''}, torch {r['torch']}, batch {r['batch']}, "
      f"{r['workers']} decode workers, compiled {r['compiled']}")
for k, v in r["rates"].items():
    print(f"- {k}: {v:,.0f} photos/s")
if "cosine_pil_vs_nvjpeg" in r:
    c = r["cosine_pil_vs_nvjpeg"]
    print(f"- cosine pil vs nvjpeg vectors: mean {c['mean']:.4f}, min {c['min']:.4f}")
print(f"- best decode path {r['best_path']}: {r['best_rate'] or 0:,.0f} photos/s; "
      f"target {r['target_photos_per_s']:,.0f}: {'met' if r['target_met'] else 'MISSED'}")
print()
EOF
  done
} >"$OUTDIR/gpu_check.md"
"$PYTHON" - "$OUTDIR" "$MODE" "$failed" "${NAMES[@]}" -- "${STATUS[@]}" -- "${SECS[@]}" <<'EOF'
import json, sys
out, mode, failed, rest = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4:]
i = rest.index("--"); names, rest = rest[:i], rest[i + 1:]
j = rest.index("--"); status, secs = rest[:j], rest[j + 1:]
steps = [{"step": n, "status": s, "seconds": int(t)} for n, s, t in zip(names, status, secs)]
json.dump({"mode": mode, "failed": failed, "steps": steps}, open(f"{out}/gpu_check.json", "w"), indent=2)
EOF
cat "$OUTDIR/gpu_check.md"
exit "$failed"
