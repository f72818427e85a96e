"""`endoseek dicom-listen`: the C-STORE receiver as its own process (no model, no torch).

It only checks, de-identifies and spools; the serving process (`endoseek serve`, sharing
ENDOSEEK_DICOM_SPOOL_DIR) ingests the spool. Starting fast and loading no model means a
receiver restart is a second, and the receiver keeps answering while `serve` restarts.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import typer


def dicom_listen(
    host: str | None = typer.Option(None, help="Default: ENDOSEEK_DICOM_HOST (127.0.0.1)."),
    port: int | None = typer.Option(None, help="Default: ENDOSEEK_DICOM_PORT (11112)."),
) -> None:
    """Run the DICOM C-STORE receiver (Storage SCP) into the spool that `serve` ingests."""
    from app.dicom.scp import DicomReceiver, quiet_pynetdicom
    from app.settings import get_settings

    settings = get_settings()
    updates = {k: v for k, v in (("dicom_host", host), ("dicom_port", port)) if v is not None}
    if updates:
        settings = settings.model_copy(update=updates)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    quiet_pynetdicom(logging.getLogger().getEffectiveLevel())
    settings.dicom_spool_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    receiver = DicomReceiver(settings)
    bound_host, bound_port = receiver.start()
    typer.echo(
        f"DICOM receiver AE title {settings.dicom_ae_title} at {bound_host}:{bound_port} "
        f"(spool: {settings.dicom_spool_dir})",
    )
    try:
        while not stop.wait(3600):
            pass
    finally:
        receiver.shutdown()
        typer.echo("DICOM receiver stopped")
