"""Command-line and Python clients of the ``scene_understanding`` Triton ensemble.

One room per job; the flow frame -> request -> results -> tracks/scenes -> exports reads top-down, and a
room imports only the rooms above it (``tests/test_clients_layout.py`` checks it):

1. ``media``      frames in, files out: ``video`` (probe, sample_frames), ``images``, ``stream`` (live input),
                  ``prefetch``, ``mp4`` (Mp4Writer), ``clips``, ``sample_video`` (test videos)
2. ``transport``  the only room that talks to Triton: ``SceneClient`` (requests in flight, retries), its
                  options, errors and typed server facts; ``perf_analyzer``
3. ``results``    the typed results and ``results.json``: ``ImageResult`` is what every later stage passes on
4. ``analysis``   ``detections`` (to supervision), ``tracking`` (ByteTrack), ``scenes`` (cuts), ``search``,
                  ``semantic``, ``summary``
5. ``outputs``    ``annotators`` (one ``Annotator`` contract, ``SceneAnnotator``), ``exports`` (COCO, SRT,
                  WebVTT, tracks CSV), ``subtitles`` (the cues), ``selection`` (``--outputs``)
6. entry points   ``recorder`` (VideoRecorder) and ``pipeline`` (analyse_video, analyse_images: the work
                  shared by the CLI and the app), ``live`` (streams and webcams), ``corpus`` (many videos
                  on a process pool or Ray), ``cli`` (``python -m clients``), ``app`` (the Gradio page,
                  ``launcher app``)

``triton_client`` and ``perf_analyzer`` here are aliases of their ``transport`` modules for older imports.
"""
