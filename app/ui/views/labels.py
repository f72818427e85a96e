"""Label a photo from the vocabulary (scope label); the label choices and shortcut keys.

A label is picked, never typed: the form offers the vocabulary (the standard's landmarks
first, each with a shortcut key, then the general labels) and the label service refuses
anything else.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException
from fastapi.responses import RedirectResponse, Response

from app.documentation import labels
from app.documentation.schema import Standard
from app.documentation.vocabulary import shipped_standards, shipped_vocabulary, shortcuts
from app.ui import queries
from app.ui.security import PREFIX, CsrfUser, ensure_scope, safe_next
from app.ui.templating import templates
from app.ui.views.common import Ctx, Db

router = APIRouter()


def label_choices(standard: Standard | str | None = None) -> list[tuple[str, str]]:
    """(label, shortcut key or '') in the order the form lists them: the labels of
    `standard` (or of the default standard of a procedure kind) first."""
    if isinstance(standard, str):
        standard = shipped_standards().default_for(standard)
    ordered = shipped_vocabulary().for_standard(standard)
    keys = {label: key for key, label in shortcuts(ordered)}
    return [(label, keys.get(label, "")) for label in ordered]


# the label form partial (_labelling.html) asks for its choices wherever it is included
templates.env.globals["label_choices"] = label_choices


@router.post("/images/{uid}/label")
def label_image(
    ctx: Ctx,
    db: Db,
    user: CsrfUser,
    uid: uuid.UUID,
    label: Annotated[str, Form(max_length=64)],
    next: Annotated[str, Form(max_length=512)] = "",  # noqa: A002 - the form field's name
) -> Response:
    ensure_scope(user, "label")
    image = queries.image_by_uid(db, uid)
    if image is None:
        raise HTTPException(404, "no such image")
    try:
        labels.set_label(db, image, label.strip().lower(), reference=True, key_id=user.key_id)
    except labels.LabelError as exc:
        raise HTTPException(422, str(exc)) from exc
    db.commit()
    target = safe_next(next) if next else f"{PREFIX}/procedures/{image.procedure_id}"
    anchor = "" if "#" in target else f"#img-{image.uid}"
    return RedirectResponse(target + anchor, status_code=303)
