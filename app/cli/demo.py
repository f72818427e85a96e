"""`endoseek demo`: seed a clearly labelled SYNTHETIC archive so every UI page has content.

The demo goes through the same path as a device: it starts a service runtime on the
configured database and uploads every photo through the core IngestService (vectors, index,
the documentation hook's predictions), labels the reference gallery through the label
service and fits thresholds with the calibration code on that live gallery. What the UI then
shows is exactly what real uploads would get from the shipped model.

Generated images (training.synthetic) stand in for photos. The weight-free baseline model
separates four generated classes well enough to recognise them (measured: 0.6-0.7 of new
photos documented at the demo's target precision, three photos per view), so they play two
landmarks per procedure kind and, with two findings, make up the reference gallery. The
third landmark of each kind is played by a class
the baseline cannot tell apart: it has no reference photos, so the model never documents it;
in two procedures a QA reviewer's label documents it (as the QA workflow would), elsewhere
it stays missing and the checklist says why. Most demo procedures therefore come out
complete or one item short, honestly. Every demo procedure has source "synthetic-demo" and
an external id starting with SYNTHETIC-; the UI shows a banner.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import sqlalchemy as sa
import typer

from app.settings import Settings, get_settings
from app.ui.queries import DEMO_SOURCE

if TYPE_CHECKING:
    import numpy as np

    from app.services.runtime import Runtime

# synthetic class -> landmark label it plays, recognised by the model (reference photos).
# Chosen by measurement (baseline model, 40 references per label, votes within the
# procedure's reach, target precision 0.8, the gallery below): share of new photos
# documented z-line 0.70, pylorus 0.62, cecum 0.72, ileum 0.60 (per photo; three photos per
# view), photos of other classes documented as a landmark 0-5 %.
LANDMARKS = {
    "synthetic-z-line": "z-line",
    "synthetic-bleeding": "pylorus",
    "synthetic-dyed": "cecum",
    "synthetic-folds": "ileum",
}
# findings (labels no standard asks for, in every procedure's reach) with reference photos:
# they give a photo that shows no landmark somewhere else to vote (the model keeps them below
# threshold; their documented share stays near 0)
FINDINGS = {"synthetic-polyp": "polyp", "synthetic-ulcer": "ulcer"}
GALLERY = {**LANDMARKS, **FINDINGS}
# views the baseline cannot recognise: no reference photos; documented only by a QA label
UNRECOGNISED = {"synthetic-lumen": "retroflex-stomach", "synthetic-retroflex": "retroflex-rectum"}
# (kind, classes photographed, classes a QA reviewer labelled): complete thanks to a QA label,
# one view short, with a finding photo, and one undocumented example (an ulcer only). Each
# class is photographed PHOTOS_PER_VIEW times, as an endoscopist takes more than one shot.
PROCEDURES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "upper_gi",
        ("synthetic-z-line", "synthetic-bleeding", "synthetic-lumen"),
        ("synthetic-lumen",),
    ),
    ("upper_gi", ("synthetic-z-line", "synthetic-bleeding", "synthetic-lumen"), ()),
    (
        "colonoscopy",
        ("synthetic-dyed", "synthetic-folds", "synthetic-retroflex"),
        ("synthetic-retroflex",),
    ),
    ("colonoscopy", ("synthetic-dyed", "synthetic-folds", "synthetic-polyp"), ()),
    ("upper_gi", ("synthetic-z-line", "synthetic-bleeding"), ()),
    ("upper_gi", ("synthetic-ulcer",), ()),
)
PHOTOS_PER_VIEW = 3
HELDOUT = 20  # calibration photos per class (gallery labels and unrecognised views)
TARGET_PRECISION = 0.8  # the baseline's vote scores crowd near 1: 0.95 documents almost nothing
SEED = 7
SYSTEM = uuid.UUID(int=0)  # who labelled the demo's reference gallery (the audit trail)
# item numbers of the generated photos: references, calibration photos, procedure photos
_HELDOUT_START, _PHOTOS_START = 1000, 2000


@dataclass(frozen=True)
class DemoResult:
    """What was seeded; `key` is a new QA key (shown once) or None."""

    procedures: list[uuid.UUID]
    references: int
    photos: int
    key: str | None


def _jpeg(image) -> bytes:  # noqa: ANN001 - a PIL image
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _images(name: str, start: int, count: int, size: int) -> list[bytes]:
    """Deterministic synthetic photos `start..start+count` of class `name`."""
    from training.synthetic import CLASS_NAMES, _image_rng, generate_image

    ci = CLASS_NAMES.index(name)
    return [
        _jpeg(generate_image(ci, _image_rng(SEED, ci, i), size))
        for i in range(start, start + count)
    ]


def _chunks(items: list[bytes], size: int) -> Iterator[list[bytes]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _upload(rt: Runtime, procedure_id: uuid.UUID, photos: list[bytes]) -> list[int]:
    """Ingest photos as a device would (IngestService, in request-sized batches); image ids."""
    from app.services.ingest import IngestService, Upload

    service, ids = IngestService(rt), []
    for chunk in _chunks(photos, rt.settings.max_files_per_request):
        results = service.ingest(procedure_id, [Upload(None, data) for data in chunk])
        ids += [r.image.id for r in results]
    return ids


def _embed(rt: Runtime, photos: list[bytes]) -> np.ndarray:
    """Vectors of photos that are never stored, decoded and embedded as uploads are."""
    import numpy as np

    from app.services.ingest import IngestService, Serving, Upload

    serving, out = Serving.of(rt), []
    for chunk in _chunks(photos, rt.settings.max_files_per_request):
        decoded = IngestService(rt).validate([Upload(None, d) for d in chunk], serving)
        futures = [serving.batcher.submit(d.tensor) for d in decoded]
        out += [f.result() for f in futures]
    return np.stack(out)


def _new_procedure(rt: Runtime, external_id: str, kind: str, when: datetime) -> uuid.UUID:
    from app.services import procedures

    with rt.sessions() as db:
        proc, _ = procedures.create(db, DEMO_SOURCE, external_id, kind, when)
        return proc.id


def _reference_gallery(rt: Runtime, references: int, size: int, when: datetime) -> int:
    """Upload `references` photos per gallery label and make them its reference photos."""
    from app.db.models import Image
    from app.documentation import labels

    gallery = _new_procedure(rt, "SYNTHETIC-REFERENCE-GALLERY", "other", when)
    for name, label in GALLERY.items():
        ids = _upload(rt, gallery, _images(name, 0, references, size))
        with rt.sessions() as db:
            for image in db.scalars(sa.select(Image).where(Image.id.in_(ids))):
                labels.set_label(db, image, label, reference=True, key_id=SYSTEM)
            db.commit()
    return len(GALLERY) * references


def _qa_label(rt: Runtime, image_id: int, label: str) -> None:
    """A QA reviewer's label on a photo the model cannot recognise (the label service)."""
    from app.db.models import Image
    from app.documentation import labels

    with rt.sessions() as db:
        image = db.get(Image, image_id)
        assert image is not None
        labels.set_label(db, image, label, reference=False, key_id=SYSTEM)
        db.commit()


def _calibrate(rt: Runtime, size: int) -> None:
    """Fit thresholds on held-out photos (incl. look-alikes) against the live gallery, as
    `endoseek calibrate` fits them, and store them where the service reads them."""
    import numpy as np

    from app.documentation import fit_calibration, save_calibration
    from app.documentation.references import reference_vectors

    assert rt.index is not None
    with rt.sessions() as db:
        ids, gallery, by_id = reference_vectors(db, rt.index.model_id, rt.index.dim)
    q_vecs, q_labels = [], []
    for name, label in {**GALLERY, **UNRECOGNISED}.items():
        q_vecs.append(_embed(rt, _images(name, _HELDOUT_START, HELDOUT, size)))
        q_labels += [label] * HELDOUT
    calibration, _ = fit_calibration(
        gallery,
        [by_id[int(i)] for i in ids],
        np.concatenate(q_vecs),
        q_labels,
        model_id=rt.index.model_id,
        target_precision=TARGET_PRECISION,
    )
    calibration.meta.update({"synthetic": True, "data": "endoseek demo"})
    save_calibration(rt.settings.calibration_path, calibration)


def _exists(rt: Runtime) -> bool:
    from app.db.models import Procedure

    with rt.sessions() as db:
        return bool(db.scalar(sa.select(sa.exists().where(Procedure.source == DEMO_SOURCE))))


def _real_procedures(rt: Runtime) -> int:
    """Procedures that are not the demo's: the demo must never seed into a real archive (its
    start-up sweep and its calibration file would touch the hospital's data)."""
    from app.db.models import Procedure

    with rt.sessions() as db:
        count = sa.select(sa.func.count()).where(Procedure.source != DEMO_SOURCE)
        return int(db.scalar(count) or 0)


class RealArchiveError(RuntimeError):
    """The configured database already holds real procedures."""


def _qa_key(rt: Runtime) -> str:
    """A QA key for the demo (printed once by the command)."""
    from app.services import keys

    with rt.sessions() as db:
        _, key = keys.create_key(db, "synthetic-demo-qa", ["search", "ingest", "label"])
        db.commit()
    return key


def _seed(rt: Runtime, references: int, size: int, create_key: bool) -> DemoResult:
    from app.db.models import Job

    now = datetime.now(UTC)
    key = _qa_key(rt) if create_key else None
    n_refs = _reference_gallery(rt, references, size, now - timedelta(days=30))
    _calibrate(rt, size)
    made, photos = [], 0
    for n, (kind, classes, reviewed) in enumerate(PROCEDURES, start=1):
        pid = _new_procedure(rt, f"SYNTHETIC-{n:04d}", kind, now - timedelta(days=n))
        start = _PHOTOS_START + n * 10
        for name in classes:
            ids = _upload(rt, pid, _images(name, start, PHOTOS_PER_VIEW, size))
            photos += len(ids)
            if name in reviewed:
                _qa_label(rt, ids[0], UNRECOGNISED[name])
        made.append(pid)
    with rt.sessions() as db:
        db.add(
            Job(
                kind="reindex",
                status="done",
                params={"synthetic": True},
                total=photos,
                done=photos,
                started_at=now,
                finished_at=now,
            )
        )
        db.commit()
    return DemoResult(made, n_refs, photos, key)


def seed_demo(
    settings: Settings, *, references: int = 40, size: int = 224, create_key: bool = True
) -> DemoResult:
    """Seed the demo archive into the (migrated) database of `settings` through a started
    service runtime; idempotent: reseeding adds nothing."""
    from app.documentation.hooks import get_ingest_hooks
    from app.services.runtime import Runtime

    rt = Runtime.create(settings)
    real = _real_procedures(rt)
    if real:
        rt.engine.dispose()
        raise RealArchiveError(
            f"this database holds {real} real procedure(s): the demo only seeds an archive of "
            "its own (set ENDOSEEK_DATABASE_URL, ENDOSEEK_STORAGE_DIR, ENDOSEEK_INDEX_DIR and "
            "ENDOSEEK_CALIBRATION_PATH to new places)"
        )
    if _exists(rt):
        rt.engine.dispose()
        return DemoResult([], 0, 0, None)
    rt.start()
    try:
        rt.hooks.extend(get_ingest_hooks(rt))  # as the app's lifespan installs them
        return _seed(rt, references, size, create_key)
    finally:
        rt.stop()


def demo(
    references: Annotated[
        int, typer.Option(min=2, max=100, help="reference photos per landmark")
    ] = 40,
) -> None:
    """Seed a SYNTHETIC demo archive (generated photos, reference gallery, a QA key)."""
    from app.db.migrate import upgrade

    settings = get_settings()
    settings.ensure_dirs()
    upgrade(settings.database_url)
    try:
        result = seed_demo(settings, references=references)
    except RealArchiveError as exc:
        typer.echo(f"Refusing to seed the demo: {exc}.", err=True)
        raise typer.Exit(1) from exc
    if not result.procedures:
        typer.echo("The synthetic demo archive already exists; nothing added.")
        return
    typer.echo(
        f"Seeded SYNTHETIC demo data: {len(result.procedures)} procedures, {result.photos} "
        f"photos, {result.references} reference photos (generated images, not patients)."
    )
    if result.key:
        typer.echo("QA key (scopes search, ingest, label; shown once, keep it private):")
        typer.echo(f"  {result.key}")
    base = f"http://{settings.host}:{settings.port}/ui"
    typer.echo(f"Open {base}/ and sign in with that key; {base}/gallery shows the reference")
    typer.echo("gallery, why items are missing and the photos worth labelling next.")


def register(app: typer.Typer) -> None:
    """Add the `demo` verb to the `endoseek` CLI."""
    app.command("demo")(demo)
