"""Command-line and Python clients of the ``scene_understanding`` Triton ensemble.

Modules: ``triton_client`` (SceneClient), ``video`` (probe, sample_frames), ``images``
(read_image, encode_jpeg), ``results`` (typed results, results.json), ``annotate`` (drawing,
AnnotatedVideoWriter), ``sample_video`` (test videos), ``pipeline`` (analyse_video, analyse_images: the
work shared by the CLI and the app), ``app`` (the Gradio page, ``launcher app``), ``perf_analyzer``
(Triton's perf_analyzer on the ensemble), ``tracking`` (ByteTrack tracks), ``scenes`` (cut detection),
``exports`` (COCO, SRT, WebVTT, CSV), ``overlay`` (supervision annotators), ``search`` and ``semantic`` (time
ranges by object, caption or meaning), ``live`` (streams and webcams), ``cli`` (``python -m clients``).
"""
