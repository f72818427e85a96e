"""What the DICOM node accepts: SOP classes and transfer syntaxes (one list for SCP and STOW).

WHY one module: the association negotiation (scp.py), the header check (header.py), STOW-RS and
docs/dicom.md must agree, so they all read these tables.
"""

from __future__ import annotations

from pydicom.uid import (
    HEVCM10P51,
    HEVCMP51,
    JPEG2000,
    MPEG2MPHL,
    MPEG2MPHLF,
    MPEG2MPML,
    MPEG2MPMLF,
    MPEG4HP41,
    MPEG4HP41BD,
    MPEG4HP41BDF,
    MPEG4HP41F,
    MPEG4HP42STEREO,
    MPEG4HP42STEREOF,
    MPEG4HP422D,
    MPEG4HP422DF,
    MPEG4HP423D,
    MPEG4HP423DF,
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

# Clips EndoSeek stores as procedure videos (app/dicom/video.py -> app.video analysis).
VIDEO_SOP_CLASSES: dict[str, str] = {
    str(VideoEndoscopicImageStorage): "Video Endoscopic Image Storage",
}
# Clips of another kind (room cameras, not the scope): refused, named in the refusal.
REFUSED_VIDEO_SOP_CLASSES: dict[str, str] = {
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

# The video transfer syntaxes (and their fragmentable variants, PS3.5 8.2.5-8.2.8): the Pixel
# Data fragments joined are the bitstream, decoded by PyAV. Each maps to the codec the probe must
# find in it, so an H.264 syntax carrying something else is refused before any job starts.
MPEG2_TRANSFER_SYNTAXES: tuple[str, ...] = tuple(
    str(ts) for ts in (MPEG2MPML, MPEG2MPMLF, MPEG2MPHL, MPEG2MPHLF)
)
H264_TRANSFER_SYNTAXES: tuple[str, ...] = tuple(
    str(ts)
    for ts in (
        MPEG4HP41,
        MPEG4HP41F,
        MPEG4HP41BD,
        MPEG4HP41BDF,
        MPEG4HP422D,
        MPEG4HP422DF,
        MPEG4HP423D,
        MPEG4HP423DF,
        MPEG4HP42STEREO,
        MPEG4HP42STEREOF,
    )
)
HEVC_TRANSFER_SYNTAXES: tuple[str, ...] = (str(HEVCMP51), str(HEVCM10P51))
VIDEO_CODECS: dict[str, str] = {
    **dict.fromkeys(MPEG2_TRANSFER_SYNTAXES, "mpeg2video"),
    **dict.fromkeys(H264_TRANSFER_SYNTAXES, "h264"),
    **dict.fromkeys(HEVC_TRANSFER_SYNTAXES, "hevc"),
}
VIDEO_TRANSFER_SYNTAXES: tuple[str, ...] = tuple(VIDEO_CODECS)

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
