"""EndoSeek as a DICOM node: C-STORE receiver, STOW-RS, header checks, de-identification.

Modules, one job each (imports flow one way, into app.services):
- errors: DicomRejected, the one failure type, with its DIMSE status and STOW failure reason
- conformance: the SOP classes and transfer syntaxes EndoSeek accepts
- header: read and check an instance's header before any pixel is decoded
- identity: procedure identity (study, kind, captured time) from the header
- deid: PS3.15 Basic Profile de-identification of what is kept
- frames: pixel data -> photos for the one ingest path (app.services.ingest)
- ingest: DicomIngest, an instance -> photos of its study's procedure
- video: Video Endoscopic instances -> the procedure's video and its analysis job (app.video)
- spool / spool_worker / scp: the durable C-STORE receiver and its queue
- stow: the STOW-RS multipart/related reader and response
"""
