"""A finished, SYNTHETIC video analysis written straight into the database for the UI tests:
the frame rows of a scripted clip and its Video row, so page tests need no analysis job."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from app.db.models import Video, VideoFrame

SCRIPT = [("plain", 2), ("cecum", 4), ("blur", 2), ("ileum", 4)]  # (kind, seconds)
RATE = 2.0  # analysed frames per second


def analysed_frames(video_id: uuid.UUID) -> list[VideoFrame]:
    """One row per grid point at RATE, with the verdict and votes of its script interval."""
    rows, t = [], 0.0
    for kind, seconds in SCRIPT:
        end = t + seconds
        while t < end - 1e-9:
            bad = kind == "blur"
            rows.append(
                VideoFrame(
                    video_id=video_id,
                    index=round(t * RATE),
                    t_ms=round(t * 1000),
                    ok=not bad,
                    reason="blur" if bad else None,
                    quality=0.2 if bad else 0.8,
                    features={"sharpness": 0.1 if bad else 0.7},
                    labels=[] if bad or kind == "plain" else [[kind, 0.9], ["polyp", 0.1]],
                )
            )
            t += 1 / RATE
    return rows


def done_video(procedure_id: uuid.UUID, *, sha256: str, file_key: str, size: int) -> Video:
    """The Video row of a 12 s 320x240 H.264 clip whose colonoscopy analysis finished."""
    return Video(
        procedure_id=procedure_id,
        sha256=sha256,
        container="mp4",
        codec="h264",
        width=320,
        height=240,
        fps=10.0,
        duration_s=12.0,
        bytes=size,
        file_key=file_key,
        status="done",
        finished_at=datetime.now(UTC),
        analysis={
            "config": {
                "rate": RATE,
                "smooth_s": 2.0,
                "k": 3,
                "min_score": 0.5,
                "standard": "landmarks-colonoscopy",
            },
            "missing": ["retroflex-rectum"],
        },
    )
