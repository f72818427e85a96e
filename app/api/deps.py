"""Annotated dependencies so routes read like sentences: SessionDep, RuntimeDep, require_scope."""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.services.errors import ProblemError
from app.services.keys import Principal, authenticate
from app.services.runtime import Runtime
from app.settings import Settings

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer esk_...`")


async def get_runtime(request: Request) -> Runtime:
    """The runtime built by the app's lifespan (async: FastAPI runs a plain `def` dependency
    in the thread pool, a hop through the event loop that this attribute read does not need)."""
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(rt: RuntimeDep) -> Iterator[Session]:
    """One session per request, closed afterwards (services commit explicitly)."""
    with rt.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


class RateLimiter:
    """Sliding one-minute window per key, counted in this process; 0 disables it."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        if self.per_minute <= 0:
            return True
        now = time.monotonic()
        with self._lock:
            hits = self._hits[key]
            while hits and now - hits[0] > 60:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return False
            hits.append(now)
            return True

    def retry_after(self, key: str) -> int:
        """Whole seconds until the oldest hit of `key` leaves the window (at least 1)."""
        with self._lock:
            hits = self._hits.get(key)
            oldest = hits[0] if hits else time.monotonic()
        return max(1, math.ceil(60 - (time.monotonic() - oldest)))


# One atomic step per request: drop hits older than the window, count, add this one if under
# the limit. Redis's own clock, so workers on several machines share one window.
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000000)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], 61000)
return 1
"""


class RedisRateLimiter(RateLimiter):
    """The same window shared by every worker through Redis (setting redis_url).

    Redis down or unreachable: the request is let through (logged once a minute): a limiter
    outage must not take the service down with it.
    """

    def __init__(self, per_minute: int, url: str, prefix: str = "endoseek:rate:") -> None:
        import redis

        super().__init__(per_minute)
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._script = self._redis.register_script(_SLIDING_WINDOW)
        self._prefix = prefix
        self._warned = 0.0

    def allow(self, key: str) -> bool:
        if self.per_minute <= 0:
            return True
        import redis

        try:
            ok = self._script(keys=[self._prefix + key], args=[self.per_minute, uuid.uuid4().hex])
        except redis.RedisError as exc:
            self._warn(exc)
            return True
        return bool(ok)

    def retry_after(self, key: str) -> int:
        import redis

        try:
            oldest = self._redis.zrange(self._prefix + key, 0, 0, withscores=True)
            sec, usec = self._redis.time()
        except redis.RedisError:
            return 60
        if not oldest:
            return 1
        now_us = sec * 1_000_000 + usec
        return max(1, math.ceil(60 - (now_us - oldest[0][1]) / 1e6))

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned > 60:
            self._warned = now
            log.warning("rate limiter: Redis unreachable (%s); not limiting", type(exc).__name__)


def rate_limiter_for(settings: Settings) -> RateLimiter:
    """Redis-backed when redis_url is set (several workers), else in-process."""
    url = settings.redis_url.get_secret_value() if settings.redis_url else ""
    if url and settings.rate_limit_per_minute > 0:
        # one namespace per installation (its database): key ids repeat across installations
        site = hashlib.sha256(settings.database_url.encode()).hexdigest()[:12]
        return RedisRateLimiter(settings.rate_limit_per_minute, url, f"endoseek:rate:{site}:")
    return RateLimiter(settings.rate_limit_per_minute)


def current_key(
    request: Request,
    rt: RuntimeDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller's key, or 401 (own short session: no connection held during the request)."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise ProblemError(401, "missing_key", "Send an API key as 'Authorization: Bearer <key>'.")
    with rt.sessions() as session:
        principal = authenticate(session, creds.credentials)
    if principal is None:
        raise ProblemError(401, "invalid_key", "The API key is unknown or revoked.")
    limiter: RateLimiter = request.app.state.rate_limiter
    if not limiter.allow(str(principal.key_id)):
        wait = limiter.retry_after(str(principal.key_id))
        raise ProblemError(
            429, "rate_limited", "Too many requests for this key; slow down.", retry_after=wait
        )
    return principal


CurrentKey = Annotated[Principal, Depends(current_key)]


def require_scope(scope: str) -> Callable[[Principal], Principal]:
    """A dependency that lets the request through only with `scope` (admin implies all)."""

    async def check(principal: CurrentKey) -> Principal:  # async: no I/O, no thread hop
        if not principal.allows(scope):
            raise ProblemError(403, "insufficient_scope", f"This key lacks the '{scope}' scope.")
        return principal

    return check


IngestKey = Annotated[Principal, Depends(require_scope("ingest"))]
SearchKey = Annotated[Principal, Depends(require_scope("search"))]
LabelKey = Annotated[Principal, Depends(require_scope("label"))]
AdminKey = Annotated[Principal, Depends(require_scope("admin"))]
