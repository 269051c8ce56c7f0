"""Live sources analysed in real time: one stream or many, their frames sent in shared batches.

``analyse_streams`` (``clients.live.run``) follows several streams at once, ``analyse_stream`` one;
``clients.live.sources`` names them and reads a streams file; ``clients.live.command`` is
``python -m clients live``. Reading, sampling and reconnecting are ``clients.media.stream``'s.
"""

from clients.live.run import LiveRun, LiveSettings, analyse_stream, analyse_streams
from clients.live.sources import LiveSource, live_sources, read_streams_file, stream_name

__all__ = ["LiveRun", "LiveSettings", "LiveSource", "analyse_stream", "analyse_streams", "live_sources",
           "read_streams_file", "stream_name"]
