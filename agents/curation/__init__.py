"""Curation of real footage for ingest: guarded decoding, scene splitting, filters, dedup.

Modules import their heavy dependencies (PyAV, OpenCV, PySceneDetect, ImageHash) inside the
functions that need them; this package import stays light.
"""
