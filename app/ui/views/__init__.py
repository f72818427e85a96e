"""All UI routes under /ui."""

from fastapi import APIRouter

from app.ui.security import PREFIX
from app.ui.views import auth, gallery, labels, media, procedures, quality, search, system, videos

router = APIRouter(prefix=PREFIX, include_in_schema=False)
for _module in (auth, procedures, search, labels, media, system, videos, quality, gallery):
    router.include_router(_module.router)
