"""What the DICOM node accepts: SOP classes and transfer syntaxes (one list for SCP and STOW).

WHY one module: the association negotiation (scp.py), the header check (header.py), STOW-RS and
docs/dicom.md must agree, so they all read these tables.
"""

from __future__ import annotations

from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    VideoEndoscopicImageStorage,
    VideoPhotographicImageStorage,
    VLEndoscopicImageStorage,
    VLPhotographicImageStorage,
)

# Stills EndoSeek stores as photos of a procedure (uid -> name, for docs and logs).
STILL_SOP_CLASSES: dict[str, str] = {
    str(VLEndoscopicImageStorage): "VL Endoscopic Image Storage",
    str(SecondaryCaptureImageStorage): "Secondary Capture Image Storage",
    str(MultiFrameTrueColorSecondaryCaptureImageStorage): (
        "Multi-frame True Color Secondary Capture Image Storage"
    ),
    str(VLPhotographicImageStorage): "VL Photographic Image Storage",
}

# Clips: refused until procedure-video analysis exists (its own issue), then handed to it.
VIDEO_SOP_CLASSES: dict[str, str] = {
    str(VideoEndoscopicImageStorage): "Video Endoscopic Image Storage",
    str(VideoPhotographicImageStorage): "Video Photographic Image Storage",
}

# Native first (every SCU can send them), then the compressed ones capture stations use.
NATIVE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    str(ImplicitVRLittleEndian),
    str(ExplicitVRLittleEndian),
)
JPEG_TRANSFER_SYNTAXES: tuple[str, ...] = (str(JPEGBaseline8Bit), str(JPEGExtended12Bit))
JPEG_LS_TRANSFER_SYNTAXES: tuple[str, ...] = (str(JPEGLSLossless), str(JPEGLSNearLossless))
JPEG_2000_TRANSFER_SYNTAXES: tuple[str, ...] = (str(JPEG2000Lossless), str(JPEG2000))
RLE_TRANSFER_SYNTAXES: tuple[str, ...] = (str(RLELossless),)

TRANSFER_SYNTAXES: tuple[str, ...] = (
    NATIVE_TRANSFER_SYNTAXES
    + JPEG_TRANSFER_SYNTAXES
    + JPEG_LS_TRANSFER_SYNTAXES
    + JPEG_2000_TRANSFER_SYNTAXES
    + RLE_TRANSFER_SYNTAXES
)

# Photometric interpretations frames.py can turn into RGB (pydicom converts the YBR ones).
PHOTOMETRICS: frozenset[str] = frozenset(
    {
        "RGB",
        "YBR_FULL",
        "YBR_FULL_422",
        "YBR_ICT",
        "YBR_RCT",
        "MONOCHROME1",
        "MONOCHROME2",
    }
)

# A multi-frame still with more frames than this is refused outright (its header alone says
# it is a clip or an attack); frames.py keeps at most settings.dicom_max_frames of the rest.
MAX_FRAMES = 10_000
