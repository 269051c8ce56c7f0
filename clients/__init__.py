"""Command-line and Python clients of the ``scene_understanding`` Triton ensemble.

Modules: ``triton_client`` (SceneClient), ``video`` (probe, sample_frames), ``images``
(read_image, encode_jpeg), ``results`` (typed results, results.json), ``annotate`` (drawing,
AnnotatedVideoWriter), ``sample_video`` (test videos), ``cli`` (``python -m clients``).
"""
