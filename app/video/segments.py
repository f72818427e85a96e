"""Similar moments: an index of video segment vectors per model, and the search over it.

The index is derived: VideoSegment rows are the source of truth and the index is built from
them on first use and caught up on every use with one cheap query (count and newest id of the
model's rows), so segments committed by another process (a CLI analysis) or removed with
their video (ON DELETE CASCADE) reach the next search without notifications. Segments live
in their own index, never in the photo index: a segment id is not an image id, and a pooled
segment vector must not crowd photos out of photo search.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Video, VideoSegment
from app.services.runtime import Runtime
from indexer import FaissIndex

_LOAD_CHUNK = 5_000


@dataclass(frozen=True)
class SegmentHit:
    """One similar moment: a window of a video and its cosine similarity to the query."""

    segment_id: int
    video_id: uuid.UUID
    procedure_id: uuid.UUID
    start_ms: int
    end_ms: int
    score: float


@dataclass
class _State:
    index: FaissIndex
    newest: int  # highest row id in the index


class SegmentIndex:
    """One FaissIndex of segment vectors per model, caught up from the DB; thread-safe."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._lock = threading.Lock()
        self._by_model: dict[str, _State] = {}

    def add(self, model_id: str, dim: int) -> int:
        """Bring the model's index up to the committed rows (after an analysis stored its
        segments); returns its size."""
        with self._lock:
            return len(self._current(model_id, dim).index)

    def search(self, model_id: str, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(segment id, score) best first; ties go to the lower id (the earlier segment)."""
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        with self._lock:
            index = self._current(model_id, query.shape[1]).index
        scores, ids = index.search(query, k)
        hits = [(int(i), float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
        return sorted(hits, key=lambda h: (-round(h[1], 6), h[0]))

    def _current(self, model_id: str, dim: int) -> _State:
        with self.sessions() as session:
            count, newest = session.execute(
                sa.select(sa.func.count(VideoSegment.id), sa.func.max(VideoSegment.id)).where(
                    VideoSegment.model_id == model_id
                )
            ).one()
            count, newest = int(count), int(newest or 0)
            state = self._by_model.get(model_id)
            if state is not None and state.index.dim != dim:
                raise ValueError(f"model {model_id[:12]} has dim {state.index.dim}, not {dim}")
            if state is not None and newest > state.newest:
                self._load(session, model_id, state, after=state.newest)
            if state is None or len(state.index) != count:  # first use, or rows removed
                state = _State(FaissIndex(dim, device="cpu"), 0)
                self._load(session, model_id, state, after=0)
                self._by_model[model_id] = state
        return state

    def _load(self, session: Session, model_id: str, state: _State, *, after: int) -> None:
        dim = state.index.dim
        while True:
            rows = session.execute(
                sa.select(VideoSegment.id, VideoSegment.vector)
                .where(VideoSegment.model_id == model_id, VideoSegment.id > after)
                .order_by(VideoSegment.id)
                .limit(_LOAD_CHUNK)
            ).all()
            if not rows:
                return
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(-1, dim)
            state.index.add(ids, vecs.astype(np.float32))
            after = state.newest = int(ids[-1])


_registry_lock = threading.Lock()


def segment_index_of(rt: Runtime) -> SegmentIndex:
    """The runtime's segment index (one per runtime, built lazily)."""
    with _registry_lock:
        found = rt.__dict__.get("_segment_index")
        if found is None:
            found = rt.__dict__["_segment_index"] = SegmentIndex(rt.sessions)
        return found


def search_segments(
    rt: Runtime,
    session: Session,
    *,
    vector: np.ndarray,
    k: int = 10,
    exclude_segment: int | None = None,
) -> list[SegmentHit]:
    """The `k` segments of the serving model most similar to `vector` (a unit vector)."""
    assert rt.index is not None
    found = segment_index_of(rt).search(
        rt.index.model_id, vector, k + (exclude_segment is not None)
    )
    found = [(i, s) for i, s in found if i != exclude_segment][:k]
    if not found:
        return []
    rows = {
        r.id: r
        for r in session.execute(
            sa.select(
                VideoSegment.id,
                VideoSegment.video_id,
                Video.procedure_id,
                VideoSegment.start_ms,
                VideoSegment.end_ms,
            )
            .join(Video, Video.id == VideoSegment.video_id)
            .where(VideoSegment.id.in_([i for i, _ in found]))
        )
    }
    return [
        SegmentHit(i, rows[i].video_id, rows[i].procedure_id, rows[i].start_ms, rows[i].end_ms, s)
        for i, s in found
        if i in rows
    ]


def segment_vector(session: Session, segment_id: int, model_id: str) -> np.ndarray | None:
    """The stored vector of a segment of `model_id` (None: no such segment of that model)."""
    raw = session.scalar(
        sa.select(VideoSegment.vector).where(
            VideoSegment.id == segment_id, VideoSegment.model_id == model_id
        )
    )
    return None if raw is None else np.frombuffer(raw, dtype="<f4").astype(np.float32)
