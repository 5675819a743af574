"""Hospital archive (PACS) integration over DICOMweb: read CR/DX studies, write results back.

``cxr pacs predict`` / ``cxr pacs watch`` read studies with QIDO-RS / WADO-RS
(dicomweb-client), run the run's Predictor, and store a Comprehensive SR per image (and a
Grad-CAM secondary capture with ``--cam``, both built by highdicom) with STOW-RS into the
same study. Nothing is written to local disk but a state file of UIDs.

Modules: ``config`` (URL, credentials, retries), ``query`` (what to read), ``results`` (the
DICOM objects), ``job`` (predict and watch), ``state`` (resume), ``orthanc`` (a local test
server). Importing this package imports neither torch nor the DICOM libraries.
"""
