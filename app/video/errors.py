"""The one error a probe raises: input the service will not analyse, with its HTTP answer.

The status and code travel unchanged to the API (app.video.store turns them into a problem
response), so an upload is refused before any job starts.
"""

from __future__ import annotations

# the codes and the HTTP status each one is answered with
NOT_A_VIDEO = "not_a_video"  # 415: no container PyAV opens, or no video stream (audio only)
UNSUPPORTED_CODEC = "unsupported_codec"  # 415: a video stream this FFmpeg build cannot decode
VIDEO_UNREADABLE = "video_unreadable"  # 422: zero length, or the first frame does not decode
VIDEO_TOO_LONG = "video_too_long"  # 413: longer than settings.video_max_duration_s
VIDEO_TOO_LARGE = "video_too_large"  # 413: more pixels per frame than settings.video_max_pixels

STATUS = {
    NOT_A_VIDEO: 415,
    UNSUPPORTED_CODEC: 415,
    VIDEO_UNREADABLE: 422,
    VIDEO_TOO_LONG: 413,
    VIDEO_TOO_LARGE: 413,
}


class VideoRejected(Exception):
    """A video refused at probe time: `status` (413/415/422), a stable `code`, a `message`
    safe to show (it never names the file: file names can carry patient data)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def of(cls, code: str, message: str) -> VideoRejected:
        """The rejection for `code`, with its usual status."""
        return cls(STATUS[code], code, message)
