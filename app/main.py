"""create_app(settings) -> FastAPI: the composition root of the HTTP service."""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from app.api import errors
from app.api.deps import rate_limiter_for
from app.api.limits import BodyLimit
from app.api.routes import (
    dicomweb,
    documentation,
    health,
    images,
    jobs,
    models,
    procedures,
    quality,
    search,
    segments,
    videos,
)
from app.api.schemas import Problem
from app.dicom.spool_worker import SpoolWorker
from app.services.ingest_hooks import IngestHook
from app.services.job_threads import threads_of
from app.services.leader import Leadership
from app.services.model_switch import ModelWatcher
from app.services.runtime import Runtime
from app.settings import Settings, get_settings

if TYPE_CHECKING:
    from app.dicom.scp import DicomReceiver

log = logging.getLogger(__name__)

# optional parts built by other packages: (module, attribute); a missing one is skipped
HOOK_PROVIDER = ("app.documentation.hooks", "get_ingest_hooks")
UI_INSTALLER = ("app.ui", "install")

DESCRIPTION = """Content-based image retrieval for GI endoscopy.

Every request except `/health` needs an API key: `Authorization: Bearer esk_...`
(scopes: ingest, search, label, admin; admin implies all). Errors are
`application/problem+json` with a stable `code`."""


def _optional(spec: tuple[str, str]) -> object | None:
    try:
        return getattr(importlib.import_module(spec[0]), spec[1])
    except (ImportError, AttributeError):
        return None


def _hooks(runtime: Runtime) -> list[IngestHook]:
    provider = _optional(HOOK_PROVIDER)
    return list(provider(runtime)) if callable(provider) else []


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    rt: Runtime = app.state.runtime
    await run_in_threadpool(rt.start)
    rt.hooks.extend(_hooks(rt))
    app.state.embedder = rt.embedder
    app.state.job_threads = threads = threads_of(rt)
    watcher = ModelWatcher(rt, rt.settings.model_check_interval_s)  # every worker: own check
    watcher.start()
    app.state.spool_worker = spool_worker = SpoolWorker(rt)  # C-STORE spool -> ingest
    singletons = _Singletons(rt, spool_worker)
    leadership = Leadership(rt.settings.index_dir / "leader.lock")
    try:
        if leadership.try_acquire():  # one worker (or the only one) runs the singletons
            await run_in_threadpool(singletons.start)  # a failure here (port taken) stops all
        else:
            log.info("another worker runs the DICOM receiver, spool and job resume")
            leadership.wait_in_background(singletons.start)
        yield
    finally:
        leadership.stop_trying()
        await run_in_threadpool(singletons.stop)
        leadership.release()
        threads.shutdown()
        watcher.stop()
        await run_in_threadpool(rt.stop)


class _Singletons:
    """What runs once per installation, in the elected worker (app/services/leader.py)."""

    def __init__(self, rt: Runtime, spool_worker: SpoolWorker) -> None:
        self.rt, self.spool_worker = rt, spool_worker
        self.receiver: DicomReceiver | None = None
        self.started = False

    def start(self) -> None:
        rt = self.rt
        self.started = True
        if rt.settings.jobs_auto_resume:
            threads_of(rt).resume_interrupted()
        videos.on_start(rt)  # retention, leftovers, queued video jobs
        self.spool_worker.start()
        if rt.settings.dicom_listen:
            self.receiver = _start_receiver(rt, self.spool_worker)

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.shutdown()
        if self.started:
            self.spool_worker.stop()


def _start_receiver(rt: Runtime, worker: SpoolWorker) -> DicomReceiver:
    """The Storage SCP beside `serve` (setting dicom_listen); pynetdicom loads only here."""
    from app.dicom.scp import DicomReceiver, quiet_pynetdicom

    quiet_pynetdicom(logging.getLogger("app").getEffectiveLevel())
    receiver = DicomReceiver(rt.settings, worker.spool, on_stored=worker.wake)
    receiver.start()
    return receiver


def create_app(settings: Settings | None = None, *, with_ui: bool = True) -> FastAPI:
    """Build the app; components start in the lifespan (model, index, batcher)."""
    settings = settings or get_settings()
    logging.getLogger("app").setLevel(settings.log_level.upper())
    app = FastAPI(
        title="EndoSeek",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=_lifespan,
        responses={"default": {"model": Problem, "description": "problem+json"}},
    )
    rt = Runtime.create(settings)
    app.state.runtime = rt
    app.state.settings = settings
    app.state.sessions = rt.sessions
    app.state.storage = rt.storage
    app.state.rate_limiter = rate_limiter_for(settings)  # shared via Redis when set
    errors.install(app)
    routes = (
        health,
        procedures,
        images,
        search,
        models,
        jobs,
        documentation,
        quality,
        videos,
        segments,
    )
    for module in routes:
        app.include_router(module.router)
    app.include_router(dicomweb.router)  # STOW-RS (app/dicom/stow.py)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_request_bytes,
        idle_timeout_s=settings.body_idle_timeout_s,
        min_rate_bps=settings.body_min_rate_bps,
        path_limits={
            dicomweb.PREFIX: settings.stow_max_request_bytes,
            videos.UPLOAD_PATH: settings.video_max_bytes + videos.FORM_OVERHEAD,
        },
    )
    installer = _optional(UI_INSTALLER) if with_ui else None
    if callable(installer):
        try:
            installer(app)
        except Exception:  # noqa: BLE001 - the API must come up even if the UI cannot
            log.exception("web UI not mounted")
    return app
