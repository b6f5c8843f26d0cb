"""A driver's audio carried into an output video: packets copied as they are, or transcoded to a codec that fits."""
from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from ..errors import InputError

FALLBACK_RATE = 48000  # Hz, when the encoder does not support the driver's sample rate


class DriverAudio:
    """The first audio stream of a media file, muxed into an output up to a given time.

    Times are output times in seconds, 0 being the driver's first video frame (the audio keeps its offset to
    the video). Audio before that frame is dropped, so is audio starting at or after the time asked for.
    A file without audio gives nothing.

    Attributes:
        packets_muxed: audio packets muxed so far (0: the output holds no audio).
    """

    def __init__(self, path: Path) -> None:
        try:
            self._input = av.open(str(path))
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"cannot read audio of {path}: {getattr(exc, 'strerror', None) or exc}") from exc
        self.path = path
        self._stream = self._input.streams.audio[0] if self._input.streams.audio else None
        video = self._input.streams.video[0] if self._input.streams.video else None
        self._offset = video.start_time * video.time_base if video is not None and video.start_time else 0
        self._output: av.AudioStream | None = None  # the output's audio stream, once attached
        self._encoder: av.AudioStream | None = None  # the same stream when it is encoded, None when copied
        self._packets: Iterator[av.Packet] = iter(())
        self._pending: av.Packet | None = None  # first packet past the time muxed so far
        self.packets_muxed = 0

    def attach(self, container: av.container.OutputContainer, copied: frozenset[str] | None,
               encoders: tuple[str, ...]) -> None:
        """Add the output stream (before anything is muxed), unless all the audio ends before the first video
        frame. The input's packets are copied when their codec is in ``copied`` (None: any codec ``container``
        accepts); else they are encoded by the first of ``encoders`` this FFmpeg has, at the input's sample rate
        (48 kHz if the encoder lacks it) and channel layout.

        Raises:
            InputError: the audio needs encoding and none of ``encoders`` is available.
        """
        if self._stream is None:
            return
        self._packets = self._input.demux(self._stream)
        self._pending = self._first_packet_after_start()
        if self._pending is None:
            return   # no audio plays during the video: no audio stream
        name = self._stream.codec_context.name
        if name in container.supported_codecs and (copied is None or name in copied):
            self._output = container.add_stream_from_template(self._stream)
            return
        encoder = next((e for e in encoders if e in av.codecs_available), None)
        if encoder is None:
            raise InputError(f"cannot carry the audio of {self.path.name} ({name}): this FFmpeg build has none of "
                             f"the encoders {', '.join(encoders)}")
        rates = av.Codec(encoder, "w").audio_rates
        rate = self._stream.rate if not rates or self._stream.rate in rates else FALLBACK_RATE
        self._output = self._encoder = container.add_stream(encoder, rate=rate, layout=self._stream.layout.name)

    def _first_packet_after_start(self) -> av.Packet | None:
        """Skip the packets that end before the first video frame; the next one, or None when none is left."""
        for packet in self._packets:
            if packet.pts is None or packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            if self._start(packet) + (packet.duration or 0) * packet.time_base > 0:
                return packet
        return None

    def _start(self, packet: av.Packet) -> Fraction:
        return packet.pts * packet.time_base - self._offset

    def mux_until(self, container: av.container.OutputContainer, seconds: Fraction) -> None:
        """Mux the input's packets that start before ``seconds`` and were not muxed yet."""
        if self._output is None:
            return
        while (packet := next(self._packets, None) if self._pending is None else self._pending) is not None:
            self._pending = None
            if packet.pts is None or packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            start = self._start(packet)
            if start >= seconds:
                self._pending = packet
                return
            if start + (packet.duration or 0) * packet.time_base <= 0:
                continue  # entirely before the first video frame
            if self._encoder is None:
                shift = round(self._offset / packet.time_base)
                packet.pts, packet.dts = packet.pts - shift, None if packet.dts is None else packet.dts - shift
                packet.stream = self._output
                self._mux(container, [packet])
                continue
            for frame in packet.decode():
                frame.pts = round(max(frame.pts * frame.time_base - self._offset, 0) * frame.sample_rate)
                frame.time_base = Fraction(1, frame.sample_rate)
                self._mux(container, self._encoder.encode(frame))

    def flush(self, container: av.container.OutputContainer) -> None:
        """Drain the encoder, if any."""
        if self._encoder is not None:
            self._mux(container, self._encoder.encode(None))

    def _mux(self, container: av.container.OutputContainer, packets: list[av.Packet]) -> None:
        container.mux(packets)
        self.packets_muxed += len(packets)

    def close(self) -> None:
        self._input.close()
