# syntax=docker/dockerfile:1
# EndoSeek service image, CPU or CUDA:
#   docker build -t endoseek:cpu .
#   docker build -t endoseek:cuda --build-arg ACCELERATOR=cuda .
# Offline build from a wheelhouse made by `pip download` (see docs/deploy.md):
#   docker build --build-context wheelhouse=./wheelhouse \
#       --build-arg PIP_ARGS="--no-index --find-links /wheelhouse" .
# Two stages: the build stage makes a virtualenv in /opt/venv and the source tree in /app; the
# runtime stage copies only those two (no compilers, no pip cache, no wheels).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Empty unless the build is given `--build-context wheelhouse=DIR`; bind-mounted, so the
# wheels never land in an image layer.
FROM scratch AS wheelhouse

FROM ${PYTHON_IMAGE} AS build

# cpu: torch from the CPU wheel index + faiss-cpu. cuda: torch's CUDA build + faiss-gpu-cu12.
ARG ACCELERATOR=cpu
# Empty means: the CPU index for cpu, PyPI's default (CUDA) build for cuda. Set it to a
# download.pytorch.org/whl/cuXYZ index to match an older NVIDIA driver.
ARG TORCH_INDEX_URL=""
ARG FAISS_GPU_PACKAGE=faiss-gpu-cu12==1.14.1.post1
# Extra pip arguments, e.g. "--no-index --find-links /wheelhouse" for an offline build.
ARG PIP_ARGS=""
# Extras of the endoseek package, e.g. "[ray]" (compose profile ray).
ARG EXTRAS=""

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

RUN case "${ACCELERATOR}" in cpu|cuda) ;; \
      *) echo "ACCELERATOR must be cpu or cuda, got '${ACCELERATOR}'" >&2; exit 1 ;; esac \
    && python -m venv /opt/venv

WORKDIR /src

# Dependencies first, from pyproject alone, so a source change does not re-download torch.
COPY pyproject.toml README.md ./
# torch and torchvision pins are read from pyproject.toml so they cannot drift from it (hadolint
# cannot see pins held in variables, hence DL3013).
# hadolint ignore=DL3013,SC2086
RUN --mount=type=bind,from=wheelhouse,target=/wheelhouse \
    pins=$(python -c 'import re, tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; print(" ".join(d for d in deps if re.match(r"torch(vision)?==", d)))') \
    && index="${TORCH_INDEX_URL}" \
    && if [ -z "${index}" ] && [ "${ACCELERATOR}" = cpu ]; then index=https://download.pytorch.org/whl/cpu; fi \
    && if [ -n "${index}" ] && [[ "${PIP_ARGS}" != *--no-index* ]]; then \
         pip install ${PIP_ARGS} --index-url "${index}" --extra-index-url https://pypi.org/simple ${pins}; \
       else \
         pip install ${PIP_ARGS} ${pins}; \
       fi \
    && mkdir -p app embedder indexer training \
    && touch app/__init__.py embedder/__init__.py indexer/__init__.py training/__init__.py \
    && pip install ${PIP_ARGS} ".${EXTRAS}" \
    && pip uninstall -y endoseek \
    && if [ "${ACCELERATOR}" = cuda ]; then \
         pip uninstall -y faiss-cpu && pip install ${PIP_ARGS} "${FAISS_GPU_PACKAGE}"; \
       fi \
    && rm -rf app embedder indexer training

# The service runs from its source tree (an editable install at /app): `endoseek migrate` reads
# alembic.ini and migrations/ next to the packages, which a plain wheel install would not ship.
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY migrations ./migrations
COPY app ./app
COPY embedder ./embedder
COPY indexer ./indexer
COPY training ./training
# hadolint ignore=SC2086
RUN --mount=type=bind,from=wheelhouse,target=/wheelhouse \
    pip install ${PIP_ARGS} --no-deps --editable . \
    && python -c "import app, embedder, indexer, torch, faiss; print('torch', torch.__version__, 'faiss', faiss.__version__)"


FROM ${PYTHON_IMAGE} AS runtime

ARG ACCELERATOR=cpu
LABEL org.opencontainers.image.title="EndoSeek" \
      org.opencontainers.image.description="Content-based image retrieval for GI endoscopy" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.endoseek.accelerator="${ACCELERATOR}"

# Fixed uid/gid so volume ownership is predictable across hosts and image rebuilds.
RUN groupadd --system --gid 10001 endoseek \
    && useradd --system --uid 10001 --gid endoseek --home-dir /app --shell /usr/sbin/nologin endoseek \
    && mkdir -p /data/storage /data/index /data/bundles /data/weights \
    && chown -R endoseek:endoseek /data

# Same paths as in the build stage: the editable install points at /app.
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
COPY scripts/prestart.sh ./scripts/prestart.sh

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENDOSEEK_HOST=0.0.0.0 \
    ENDOSEEK_PORT=8000 \
    ENDOSEEK_STORAGE_DIR=/data/storage \
    ENDOSEEK_INDEX_DIR=/data/index \
    ENDOSEEK_INDEX_DEVICE=auto

USER 10001:10001
EXPOSE 8000
VOLUME ["/data/storage", "/data/index", "/data/bundles"]

# /health needs no key and no database; python instead of curl keeps the image smaller, and an
# unanswered request raises, so python exits 1 (unhealthy).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('ENDOSEEK_PORT', '8000'), timeout=4)"]

# prestart.sh waits for the database, migrates, ensures an admin key, then execs the command.
ENTRYPOINT ["/app/scripts/prestart.sh"]
CMD ["endoseek", "serve"]
