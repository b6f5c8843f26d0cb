"""A driver's audio carried into an output video: packets copied as they are, or transcoded to AAC."""
from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from ..errors import InputError

AAC_FALLBACK_RATE = 48000  # Hz, when the driver's sample rate is not one AAC supports


class DriverAudio:
    """The first audio stream of a media file, muxed into an output up to a given time.

    Times are output times in seconds, 0 being the driver's first video frame (the audio keeps its offset to
    the video). Audio before that frame is dropped, so is audio starting at or after the time asked for.
    A file without audio gives nothing.
    """

    def __init__(self, path: Path) -> None:
        try:
            self._input = av.open(str(path))
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"cannot read audio of {path}: {getattr(exc, 'strerror', None) or exc}") from exc
        self._stream = self._input.streams.audio[0] if self._input.streams.audio else None
        video = self._input.streams.video[0] if self._input.streams.video else None
        self._offset = video.start_time * video.time_base if video is not None and video.start_time else 0
        self._output: av.AudioStream | None = None  # the output's audio stream, once attached
        self._encoder: av.AudioStream | None = None  # the same stream when it is AAC-encoded, None when copied
        self._packets: Iterator[av.Packet] = iter(())
        self._pending: av.Packet | None = None  # first packet past the time muxed so far

    def attach(self, container: av.container.OutputContainer) -> None:
        """Add the output stream (before anything is muxed): a copy of the input's when ``container`` accepts
        its codec, else AAC at the input's sample rate (48 kHz if AAC lacks it) and channel layout."""
        if self._stream is None:
            return
        if self._stream.codec_context.name in container.supported_codecs:
            self._output = container.add_stream_from_template(self._stream)
        else:
            rate = self._stream.rate if self._stream.rate in av.Codec("aac", "w").audio_rates else AAC_FALLBACK_RATE
            self._output = self._encoder = container.add_stream("aac", rate=rate, layout=self._stream.layout.name)
        self._packets = self._input.demux(self._stream)

    def mux_until(self, container: av.container.OutputContainer, seconds: Fraction) -> None:
        """Mux the input's packets that start before ``seconds`` and were not muxed yet."""
        if self._output is None:
            return
        while (packet := next(self._packets, None) if self._pending is None else self._pending) is not None:
            self._pending = None
            if packet.pts is None or packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            start = packet.pts * packet.time_base - self._offset
            if start >= seconds:
                self._pending = packet
                return
            if start + (packet.duration or 0) * packet.time_base <= 0:
                continue  # entirely before the first video frame
            if self._encoder is None:
                shift = round(self._offset / packet.time_base)
                packet.pts, packet.dts = packet.pts - shift, None if packet.dts is None else packet.dts - shift
                packet.stream = self._output
                container.mux(packet)
                continue
            for frame in packet.decode():
                frame.pts = round(max(frame.pts * frame.time_base - self._offset, 0) * self._encoder.rate)
                frame.time_base = Fraction(1, self._encoder.rate)
                container.mux(self._encoder.encode(frame))

    def flush(self, container: av.container.OutputContainer) -> None:
        """Drain the AAC encoder, if any."""
        if self._encoder is not None:
            container.mux(self._encoder.encode(None))

    def close(self) -> None:
        self._input.close()
