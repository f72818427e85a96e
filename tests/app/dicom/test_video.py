"""Video Endoscopic Image Storage: a clip sent by DCMTK storescu (C-STORE) or dicomweb-client
(STOW-RS) becomes a video of its study's procedure with an analysis job; once only; a bitstream
that does not decode is refused with a DICOM failure and leaves no video row.

The clip is the synthetic H.264 procedure video of tests/app/video/factory.py, wrapped with
pydicom the way capture stations and dcm4che's mp42dcm do: the MP4 file as the encapsulated
Pixel Data, one fragment (or several for the Fragmentable syntaxes)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from dicomweb_client.api import DICOMwebClient
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset
from pydicom.uid import (
    MPEG2MPML,
    MPEG4HP41,
    MPEG4HP41F,
    JPEGBaseline8Bit,
    VideoPhotographicImageStorage,
    generate_uid,
)
from sqlalchemy.orm import Session

from app.db import migrate
from app.db.models import Job, Procedure, Video
from app.dicom import conformance
from app.dicom.errors import CANNOT_UNDERSTAND, DATASET_MISMATCH, DicomRejected
from app.dicom.header import read_instance
from app.dicom.ingest import DicomIngest
from app.dicom.video import checked_stream, is_video
from app.main import create_app
from app.settings import Settings
from tests.app.conftest import make_settings
from tests.app.dicom import factory
from tests.app.dicom.receiver import receiver_settings, tool
from tests.app.dicom.stow_client import Served, phi_hits, served_endoseek
from tests.app.server import free_port
from tests.app.video.factory import SyntheticVideo, encode, procedure_video
from tests.timing import scaled

FPS = 10
SIZE = (320, 240)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SyntheticVideo:
    """4 s of synthetic colonoscopy, H.264 in MP4 (about 100 kB)."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    return procedure_video(path, [("plain", 2.0), ("cecum", 2.0)], fps=FPS, size=SIZE)


@dataclass
class Node:
    """`endoseek serve` with its C-STORE receiver; `db` reads its SQLite database."""

    served: Served
    dicom_port: int
    db: sa.Engine

    def videos(self, study_uid: str) -> list[tuple[Video, Job | None]]:
        """The videos of the study's procedure, with their analysis jobs."""
        with Session(self.db) as session:
            rows = session.execute(
                sa.select(Video, Job)
                .join(Procedure, Procedure.id == Video.procedure_id)
                .outerjoin(Job, Job.id == Video.job_id)
                .where(Procedure.external_id == study_uid)
            ).all()
        return [(row[0], row[1]) for row in rows]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("video-node")
    port = free_port()
    env = {
        "ENDOSEEK_DICOM_LISTEN": "true",
        "ENDOSEEK_DICOM_HOST": "127.0.0.1",
        "ENDOSEEK_DICOM_PORT": str(port),
    }
    with served_endoseek(root, **env) as served:
        engine = sa.create_engine(f"sqlite:///{root / 'endoseek.db'}")
        try:
            yield Node(served, port, engine)
        finally:
            engine.dispose()


def _instance(
    clip: SyntheticVideo,
    *,
    syntax: str = MPEG4HP41,
    study_uid: str | None = None,
    fragments: int = 1,
    bitstream: bytes | None = None,
) -> Dataset:
    data = clip.path.read_bytes() if bitstream is None else bitstream
    frames = round(clip.intervals[-1].end_s * FPS)
    return factory.video_endoscopic(
        data,
        SIZE,
        frames,
        FPS,
        transfer_syntax=syntax,
        study_uid=study_uid,
        fragments=fragments,
    )


def _corrupt(clip: SyntheticVideo) -> bytes:
    """Starts like an MP4 (its ftyp box passes the header check), then noise: only the
    probe, which decodes, can tell."""
    good = clip.path.read_bytes()
    noise = bytes((i * 131 + 7) % 251 for i in range(len(good) - 64))
    return good[:64] + noise


# ---- header checks (no codec, no server) -----------------------------------------------------


def _rejected(ds: Dataset, settings: Settings) -> DicomRejected:
    with pytest.raises(DicomRejected) as info:
        read_instance(factory.to_bytes(ds), settings)
    return info.value


def test_header_accepts_every_video_syntax_and_fragmentation(
    clip: SyntheticVideo, tmp_path: Path
) -> None:
    settings = receiver_settings(tmp_path)
    for syntax, fragments in ((MPEG4HP41, 1), (MPEG4HP41F, 5)):
        ds = _instance(clip, syntax=syntax, fragments=fragments)
        inst = read_instance(factory.to_bytes(ds), settings)
        assert is_video(inst) and inst.encapsulated
        assert (inst.columns, inst.rows, inst.frames) == (*SIZE, 40)
        checked_stream(inst, settings, tmp_path / "probe")  # decodes; leaves no file
        assert list((tmp_path / "probe").iterdir()) == []
    assert set(conformance.VIDEO_TRANSFER_SYNTAXES) >= {MPEG2MPML, MPEG4HP41, MPEG4HP41F}
    assert "1.2.840.10008.1.2.4.107" in conformance.VIDEO_TRANSFER_SYNTAXES  # HEVC


def test_header_refusals(clip: SyntheticVideo, tmp_path: Path) -> None:
    settings = receiver_settings(tmp_path)
    garbage = _rejected(_instance(clip, bitstream=b"\x01\x02" * 500), settings)
    assert (garbage.code, garbage.status) == ("corrupt_pixel_data", CANNOT_UNDERSTAND)
    small = settings.model_copy(update={"video_max_bytes": 1000})
    too_big = _rejected(_instance(clip), small)
    assert (too_big.code, too_big.status) == ("video_too_large_bytes", CANNOT_UNDERSTAND)
    pixels = settings.model_copy(update={"video_max_pixels": 320 * 200})
    assert _rejected(_instance(clip), pixels).code == "video_too_large"
    empty = _instance(clip)
    empty.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00"  # the offset table, no fragment
    assert _rejected(empty, settings).code == "corrupt_pixel_data"
    jpeg = _instance(clip, syntax=JPEGBaseline8Bit)  # a still syntax for a clip
    assert _rejected(jpeg, settings).code == "transfer_syntax_not_supported"
    other = _instance(clip)
    other.SOPClassUID = other.file_meta.MediaStorageSOPClassUID = VideoPhotographicImageStorage
    assert _rejected(other, settings).code == "video_not_supported"


def test_probe_refusals(clip: SyntheticVideo, tmp_path: Path) -> None:
    """What only decoding tells: noise after a valid start, and a codec other than the
    transfer syntax names (H.264 sent as MPEG-2, MPEG-2 as H.264)."""
    settings = receiver_settings(tmp_path)
    work = tmp_path / "probe"

    def stream_error(ds: Dataset) -> DicomRejected:
        inst = read_instance(factory.to_bytes(ds), settings)
        with pytest.raises(DicomRejected) as info:
            checked_stream(inst, settings, work)
        return info.value

    noisy = stream_error(_instance(clip, bitstream=_corrupt(clip)))
    assert noisy.status == CANNOT_UNDERSTAND and noisy.code in ("video_unreadable", "not_a_video")
    wrong = stream_error(_instance(clip, syntax=MPEG2MPML))
    assert (wrong.code, wrong.status) == ("codec_mismatch", DATASET_MISMATCH)
    frames = [frame for _, frame in zip(range(10), _gray_frames(), strict=False)]
    mpeg2 = encode(tmp_path / "clip.ts", frames, fps=FPS, codec="mpeg2video")
    ds = _instance(clip, syntax=MPEG2MPML, bitstream=mpeg2.read_bytes())
    ts_inst = read_instance(factory.to_bytes(ds), settings)
    checked_stream(ts_inst, settings, work)  # an MPEG-2 transport stream under MPEG-2 MP@ML
    assert stream_error(_instance(clip, bitstream=mpeg2.read_bytes())).code == "codec_mismatch"
    assert list(work.iterdir()) == []


def _gray_frames() -> Iterator:
    import numpy as np

    for i in range(1000):
        yield np.full((SIZE[1], SIZE[0], 3), 40 + i % 100, dtype=np.uint8)


# ---- DicomIngest in process, on SQLite and PostgreSQL ----------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def runtime(request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    """A started app's runtime (the analysis jobs it starts stop with it)."""
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("fresh_pg_url")
    migrate.upgrade(url)
    with TestClient(create_app(make_settings(tmp_path, url), with_ui=False)) as c:
        yield c.app.state.runtime


def test_ingest_is_idempotent_on_the_sop_instance_uid(runtime: Any, clip: SyntheticVideo) -> None:
    ingest = DicomIngest(runtime)
    study = generate_uid()
    ds = _instance(clip, study_uid=study)
    inst = read_instance(factory.to_bytes(ds), runtime.settings)
    first = ingest.store(inst, "SCOPE1")
    assert not first.duplicate and first.video_id is not None and first.image_uids == []
    known = ingest.videos.known(str(ds.SOPInstanceUID))
    assert known is not None and known.video_id == first.video_id
    again = ingest.store(inst, "SCOPE1")
    assert again.duplicate and again.video_id == first.video_id
    assert again.procedure_id == first.procedure_id
    # the same bitstream under another UID: the same video of the procedure (its SHA-256)
    twin = _instance(clip, study_uid=study)
    other = ingest.store(read_instance(factory.to_bytes(twin), runtime.settings), "SCOPE1")
    assert other.duplicate and other.video_id == first.video_id
    with runtime.sessions() as session:
        videos = session.scalars(sa.select(Video)).all()
    assert [v.id for v in videos] == [first.video_id]
    assert list((runtime.settings.video_dir / "incoming").glob("dicom-*")) == []


# ---- C-STORE with DCMTK storescu -------------------------------------------------------------


def _storescu(node: Node, path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [tool("storescu"), "-v", "-xn", "-R", "-aec", "ENDOSEEK", "-aet", "SCOPE-VIDEO"]
    cmd += ["127.0.0.1", str(node.dicom_port), str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=scaled(120))


def _wait_for_videos(node: Node, study_uid: str, n: int) -> list[tuple[Video, Job | None]]:
    deadline = time.monotonic() + scaled(60)  # the spool is ingested asynchronously
    while len(found := node.videos(study_uid)) < n:
        assert time.monotonic() < deadline, "the C-STORE video was not ingested in time"
        time.sleep(0.2)  # poll interval, bounded by the deadline
    return found


def test_storescu_sends_a_video_once(node: Node, clip: SyntheticVideo, tmp_path: Path) -> None:
    study = generate_uid()
    ds = _instance(clip, study_uid=study)
    path = factory.write(ds, tmp_path / "video.dcm")
    sent = _storescu(node, path)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "Received Store Response (Success)" in sent.stdout + sent.stderr
    ((video, job),) = _wait_for_videos(node, study, 1)
    assert video.source == "dicom" and video.codec == "h264"
    assert (video.width, video.height) == SIZE
    assert video.origin == {
        "study_uid": study,
        "series_uid": str(ds.SeriesInstanceUID),
        "sop_instance_uid": str(ds.SOPInstanceUID),
    }
    assert job is not None and job.kind == "video_analysis"
    with Session(node.db) as session:
        proc = session.get_one(Procedure, video.procedure_id)
    assert (proc.source, proc.kind) == ("SCOPE-VIDEO", "colonoscopy")  # calling AE, "Colonoscopy"
    # a retrying sender: Success again, nothing new (the spool and the SOP Instance UID)
    again = _storescu(node, path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Received Store Response (Success)" in again.stdout + again.stderr
    assert [v.id for v, _ in node.videos(study)] == [video.id]


def test_storescu_sees_a_failure_for_a_corrupt_bitstream(
    node: Node, clip: SyntheticVideo, tmp_path: Path
) -> None:
    study = generate_uid()
    path = factory.write(
        _instance(clip, study_uid=study, bitstream=_corrupt(clip)), tmp_path / "bad.dcm"
    )
    out = _storescu(node, path)
    text = out.stdout + out.stderr
    assert "Received Store Response (Error: CannotUnderstand)" in text, text
    assert node.videos(study) == []


# ---- STOW-RS with dicomweb-client ------------------------------------------------------------


def _client(node: Node) -> DICOMwebClient:
    return DICOMwebClient(f"{node.served.base}/dicomweb", headers=node.served.ingest)


def test_stow_stores_a_video_once_and_refuses_a_corrupt_one(
    node: Node, clip: SyntheticVideo
) -> None:
    study = generate_uid()
    good = _instance(clip, study_uid=study, syntax=MPEG4HP41F, fragments=3)
    client = _client(node)
    result = client.store_instances([good])
    assert "FailedSOPSequence" not in result
    assert [i.ReferencedSOPInstanceUID for i in result.ReferencedSOPSequence] == [
        good.SOPInstanceUID
    ]
    ((video, job),) = node.videos(study)  # STOW stores before it answers
    assert video.source == "dicom" and video.origin["sop_instance_uid"] == good.SOPInstanceUID
    assert job is not None and job.kind == "video_analysis"
    again = client.store_instances([good])
    assert "FailedSOPSequence" not in again
    assert [v.id for v, _ in node.videos(study)] == [video.id]

    other = generate_uid()
    bad = _instance(clip, study_uid=other, bitstream=_corrupt(clip))
    with pytest.raises(requests.HTTPError) as err:  # 409: nothing stored
        client.store_instances([bad])
    assert err.value.response.status_code == 409
    failed = err.value.response.json()["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [CANNOT_UNDERSTAND]
    assert failed["00081155"]["Value"] == [bad.SOPInstanceUID]
    assert node.videos(other) == []


def test_no_patient_attribute_reached_the_node(node: Node) -> None:
    """Runs last in the module: every instance sent carried the factory's PHI."""
    assert phi_hits([node.served.root]) == []
