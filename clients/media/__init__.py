"""Media: frames in and files out, with no knowledge of the server, the analysis or the drawing.

``video`` (``probe``, ``sample_frames``), ``images`` (``read_image``, ``encode_jpeg``, ``write_png``),
``stream`` (live sources: ``StreamReader``, ``FrameQueue``), ``prefetch`` (decode ahead in a thread),
``mp4`` (``Mp4Writer``), ``clips`` (``extract_clip``, ``frame_at``), ``sample_video`` (test videos).
"""
