"""Exporting crnn models for serving elsewhere: ONNX (:mod:`crnn.export.onnx`).

:func:`export_model` is what ``model.export(path, format=...)`` calls; the ``onnx``
package (the ``crnn[onnx]`` extra) is imported only then.
"""
from crnn.export.onnx import export_onnx

__all__ = ["FORMATS", "export_model", "export_onnx"]

FORMATS = ("onnx",)


def export_model(model, path, format="onnx", **options):
    """Write ``model`` to ``path`` in ``format`` (``"onnx"``: options as for
    :func:`crnn.export.onnx.export_onnx`)."""
    if format not in FORMATS:
        raise ValueError(f"expected format to be one of {list(FORMATS)}, got {format!r}")
    return export_onnx(model, path, **options)
