"""Outputs: what a run leaves behind, drawn from ``ImageResult`` and the analysis.

``annotators`` (the ``Annotator`` contract and ``SceneAnnotator``: boxes, tags, dense captions, caption
banner), ``text`` (ASCII text fitted to a frame), ``exports`` (COCO, SRT, WebVTT, tracks CSV).
"""
