"""DCMTK (echoscu, storescu, and its own encoders) as a real third-party sender to the receiver.

Skipped where DCMTK is missing; a failure when CI=true (scripts/ensure-test-tools.sh).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from app.dicom.spool import Spool
from tests.app.dicom import factory
from tests.app.dicom.receiver import (
    phi_found,
    receiver_settings,
    running,
    spool_files,
    tls_settings,
    tool,
)
from tests.timing import scaled


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool(args[0]), *args[1:]], capture_output=True, text=True, timeout=scaled(120)
    )


def _file(tmp_path: Path, name: str, seed: int, syntax: str = ExplicitVRLittleEndian) -> Path:
    ds = factory.vl_endoscopic(factory.synthetic_photo(seed), transfer_syntax=syntax)
    return factory.write(ds, tmp_path / name)


def _spooled_syntaxes(spool_dir: Path) -> dict[str, str]:
    """SOP Instance UID -> transfer syntax of each spooled instance."""
    spool = Spool(spool_dir)
    out = {}
    for entry in spool.pending():
        item = spool.read(entry)
        ds = dcmread(__import__("io").BytesIO(item.data), stop_before_pixels=True)
        out[str(ds.SOPInstanceUID)] = str(ds.file_meta.TransferSyntaxUID)
        assert phi_found(entry.path.read_bytes()) == []
    return out


def test_echoscu(tmp_path: Path) -> None:
    with running(receiver_settings(tmp_path, dicom_allowed_aets=["ENDOSCU"])) as rx:
        host, port = rx.address
        ok = _run("echoscu", "-aet", "ENDOSCU", "-aec", "ENDOSEEK", host, str(port))
        assert ok.returncode == 0, ok.stderr
        wrong_called = _run("echoscu", "-aet", "ENDOSCU", "-aec", "PACS", host, str(port))
        assert wrong_called.returncode != 0
        assert "Called AE Title Not Recognized" in wrong_called.stderr + wrong_called.stdout
        stranger = _run("echoscu", "-aet", "STRANGER", "-aec", "ENDOSEEK", host, str(port))
        assert stranger.returncode != 0
        assert "Calling AE Title Not Recognized" in stranger.stderr + stranger.stdout


def test_storescu_sends_jpeg_and_native_instances(tmp_path: Path) -> None:
    files = {
        "jpeg.dcm": _file(tmp_path, "jpeg.dcm", 1, JPEGBaseline8Bit),
        "explicit.dcm": _file(tmp_path, "explicit.dcm", 2),
        "implicit.dcm": _file(tmp_path, "implicit.dcm", 3, ImplicitVRLittleEndian),
    }
    settings = receiver_settings(tmp_path)
    with running(settings) as rx:
        host, port = rx.address
        # -xy: JPEG lossy plus the uncompressed syntaxes, the way capture stations send stills
        out = _run(
            "storescu", "-xy", "-aec", "ENDOSEEK", host, str(port), *map(str, files.values())
        )
        assert out.returncode == 0, out.stderr
        # the same files again (a retrying sender): Success, nothing new
        again = _run("storescu", "-xy", "-aec", "ENDOSEEK", host, str(port), str(files["jpeg.dcm"]))
        assert again.returncode == 0, again.stderr
    got = _spooled_syntaxes(settings.dicom_spool_dir)
    want = {str(dcmread(p).SOPInstanceUID): str(dcmread(p).file_meta.TransferSyntaxUID)
            for p in files.values()}  # fmt: skip
    # storescu may send the implicit file as explicit (its local preference); both are native
    assert got.keys() == want.keys()
    jpeg_uid = str(dcmread(files["jpeg.dcm"]).SOPInstanceUID)
    assert got[jpeg_uid] == JPEGBaseline8Bit


@pytest.mark.parametrize(
    ("encoder", "encoder_args", "propose", "syntax"),
    [
        ("dcmcjpeg", ["+eb"], "-xy", JPEGBaseline8Bit),  # DCMTK's own JPEG baseline encoder
        ("dcmcjpls", ["+el"], "-xt", JPEGLSLossless),
        ("dcmcrle", [], "-xr", RLELossless),
    ],
    ids=["dcmtk-jpeg-baseline", "dcmtk-jpeg-ls", "dcmtk-rle"],
)
def test_storescu_sends_what_dcmtk_compressed(
    tmp_path: Path, encoder: str, encoder_args: list[str], propose: str, syntax: str
) -> None:
    native = _file(tmp_path, "native.dcm", 4)
    packed = tmp_path / "packed.dcm"
    made = _run(encoder, *encoder_args, str(native), str(packed))
    assert made.returncode == 0, made.stderr
    assert dcmread(packed).file_meta.TransferSyntaxUID == syntax
    settings = receiver_settings(tmp_path)
    with running(settings) as rx:
        out = _run("storescu", propose, "-aec", "ENDOSEEK", *map(str, rx.address), str(packed))
    assert out.returncode == 0, out.stderr
    assert list(_spooled_syntaxes(settings.dicom_spool_dir).values()) == [syntax]


def test_storescu_falls_back_when_its_proposal_is_refused(tmp_path: Path) -> None:
    """-xs proposes JPEG Lossless (process 14), which EndoSeek does not take: the uncompressed
    syntaxes proposed with it carry the native file."""
    native = _file(tmp_path, "native.dcm", 5)
    settings = receiver_settings(tmp_path)
    with running(settings) as rx:
        out = _run("storescu", "-xs", "-aec", "ENDOSEEK", *map(str, rx.address), str(native))
    assert out.returncode == 0, out.stderr
    (syntax,) = _spooled_syntaxes(settings.dicom_spool_dir).values()
    assert syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


def test_storescu_cannot_send_an_unsupported_sop_class(tmp_path: Path) -> None:
    ct = get_testdata_file("CT_small.dcm")
    assert ct is not None
    settings = receiver_settings(tmp_path)
    with running(settings) as rx:
        out = _run("storescu", "-aec", "ENDOSEEK", *map(str, rx.address), str(ct))
    assert out.returncode != 0
    assert "No presentation context" in out.stderr + out.stdout
    assert spool_files(settings.dicom_spool_dir) == []


def test_storescu_sees_failure_status_for_a_broken_instance(tmp_path: Path) -> None:
    ds = factory.vl_endoscopic(factory.synthetic_photo(6))
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]  # half the pixels the header claims
    broken = factory.write(ds, tmp_path / "broken.dcm")
    settings = receiver_settings(tmp_path)
    with running(settings) as rx:
        out = _run("storescu", "-v", "-aec", "ENDOSEEK", *map(str, rx.address), str(broken))
    text = out.stdout + out.stderr
    assert "Received Store Response (Error: DataSetDoesNotMatchSOPClass)" in text, text
    assert spool_files(settings.dicom_spool_dir) == []


def test_echoscu_over_tls(tmp_path: Path) -> None:
    settings, pki = tls_settings(tmp_path)
    with running(settings) as rx:
        host, port = rx.address
        tls = ["+tls", str(pki / "client.key"), str(pki / "client.crt"), "+cf", str(pki / "ca.crt")]
        ok = _run("echoscu", *tls, "-aec", "ENDOSEEK", host, str(port))
        assert ok.returncode == 0, ok.stderr
        plain = _run("echoscu", "-aec", "ENDOSEEK", host, str(port))
        assert plain.returncode != 0
