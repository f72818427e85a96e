"""DicomRejected: why an instance was refused, as a DIMSE status and a STOW failure reason."""

from __future__ import annotations

# DIMSE C-STORE failure statuses (PS3.4 Annex B.2.3) - also the STOW-RS FailureReason values
# (PS3.18 table 10.5.3-2 uses the same codes).
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900  # data set does not match SOP class
CANNOT_UNDERSTAND = 0xC000
SOP_CLASS_NOT_SUPPORTED = 0x0122
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122  # STOW only: "Referenced Transfer Syntax not supported"
PROCESSING_FAILURE = 0x0110


class DicomRejected(Exception):
    """An instance EndoSeek will not store; `code` is stable (tests, logs, FailureReason text).

    Messages never carry patient attributes: only codes, sizes, UIDs of classes/syntaxes."""

    def __init__(self, code: str, message: str, status: int = CANNOT_UNDERSTAND) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"DicomRejected({self.code!r}, status=0x{self.status:04X})"
