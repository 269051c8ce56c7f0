"""Analysis: what the results mean over time, on ``ImageResult``/``FrameResult`` (never drawing, never I/O).

``detections`` (the one ``ImageResult`` -> ``sv.Detections`` conversion), ``tracking`` (ByteTrack tracks),
``scenes`` (cuts and scenes), ``search`` (time ranges by object or caption), ``semantic`` (captions by
meaning), ``summary`` (counts in a few lines).
"""
