"""WAV files -> mono float32 samples, with Python's own :mod:`wave` (PCM, no new dependency).

A file is data: its header is read and checked (:func:`read_wav_header`) before any sample is,
against :data:`MAX_CHANNELS`, :data:`MAX_SAMPLE_WIDTH`, :data:`MAX_RATE`, :data:`MAX_SECONDS` and
:data:`MAX_WAV_BYTES`, and the samples it declares must be in the file (a truncated file is refused,
not read short). Every refusal is one :class:`~sparsekit.errors.TrainingDataError` line naming the
file. Samples are PCM 8-bit (unsigned), 16-, 24- or 32-bit (signed, little-endian), scaled to
``[-1, 1)``; several channels are averaged to one.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

from sparsekit._lazy import lazy_import
from sparsekit.errors import TrainingDataError

np = lazy_import("numpy")

MAX_CHANNELS = 8
MAX_SAMPLE_WIDTH = 4
"""Bytes per sample (PCM 8 to 32-bit)."""
MAX_RATE = 384_000
"""Highest sample rate, Hz."""
MAX_SECONDS = 3600
"""Longest duration a file may declare, seconds."""
MAX_WAV_BYTES = 64 * 1024 * 1024
"""Most bytes of samples a file may declare (frames x channels x sample width)."""
_FIX_PCM = "save it as PCM WAV (16-bit, mono), e.g. ffmpeg -i IN -c:a pcm_s16le OUT.wav, or remove it"


@dataclass(frozen=True)
class WavHeader:
    """What a WAV file's header declares.

    Attributes:
        channels: interleaved channels (1 to :data:`MAX_CHANNELS`).
        sample_width: bytes per sample (1 to 4).
        rate: samples per second per channel, Hz.
        frames: samples per channel.
        data_offset: byte offset of the first sample in the file.
    """

    channels: int
    sample_width: int
    rate: int
    frames: int
    data_offset: int

    @property
    def data_bytes(self) -> int:
        return self.frames * self.channels * self.sample_width

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def _bad(path: Path, problem: str, fix: str = _FIX_PCM) -> TrainingDataError:
    return TrainingDataError(f"audio file '{path}' {problem}", fix)


def read_wav_header(path: Path) -> WavHeader:
    """The checked header of the WAV file at ``path`` (no sample is read).

    Raises:
        TrainingDataError: not a PCM WAV file, header values out of range, more than
            :data:`MAX_SECONDS` or :data:`MAX_WAV_BYTES` declared, or fewer bytes in the file than
            its header declares (truncated).
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f, wave.open(f, "rb") as w:
            header = WavHeader(w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes(), f.tell())
    except Exception as exc:  # noqa: BLE001 - wave raises wave.Error, EOFError and struct errors for a damaged header
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _bad(path, f"is not a readable PCM WAV file ({reason})") from exc
    _check(path, header, size)
    return header


def _check(path: Path, h: WavHeader, size: int) -> None:
    if not 1 <= h.channels <= MAX_CHANNELS:
        raise _bad(path, f"declares {h.channels} channels (1 to {MAX_CHANNELS} are read)")
    if not 1 <= h.sample_width <= MAX_SAMPLE_WIDTH:
        raise _bad(path, f"declares {8 * h.sample_width}-bit samples (8, 16, 24 and 32-bit PCM are read)")
    if not 1 <= h.rate <= MAX_RATE:
        raise _bad(path, f"declares a sample rate of {h.rate:,} Hz (1 to {MAX_RATE:,} Hz are read)")
    if h.frames == 0:
        raise _bad(path, "holds no samples", "remove it")
    if h.seconds > MAX_SECONDS:
        raise _bad(path, f"declares {h.seconds:,.0f} s of audio, more than the {MAX_SECONDS:,} s a file may have", "cut it into shorter clips (the model reads only its first seconds)")
    if h.data_bytes > MAX_WAV_BYTES:
        raise _bad(path, f"declares {h.data_bytes:,} bytes of samples, more than {MAX_WAV_BYTES:,}", "cut it into shorter clips (the model reads only its first seconds)")
    if h.data_offset + h.data_bytes > size:
        raise _bad(path, f"is truncated: its header declares {h.data_bytes:,} bytes of samples and the file holds {max(size - h.data_offset, 0):,}", "write the file again, or remove it")


def read_wav(path: Path, max_frames: int | None = None) -> tuple[np.ndarray, WavHeader]:
    """``(samples [n] float32 in [-1, 1), header)``: the first ``max_frames`` frames (default:
    all) of the WAV file at ``path``, its channels averaged to one.

    Raises:
        TrainingDataError: as :func:`read_wav_header`, or the file was cut after its header was read.
    """
    header = read_wav_header(path)
    frames = header.frames if max_frames is None else min(header.frames, max_frames)
    want = frames * header.channels * header.sample_width
    with open(path, "rb") as f:
        f.seek(header.data_offset)
        raw = f.read(want)
    if len(raw) != want:
        raise _bad(path, f"is truncated: {len(raw):,} of the {want:,} bytes of samples read", "write the file again, or remove it")
    samples = pcm_to_float(raw, header.sample_width)
    return samples.reshape(frames, header.channels).mean(axis=1, dtype=np.float32), header


def pcm_to_float(raw: bytes, width: int) -> np.ndarray:
    """Little-endian PCM ``raw`` of ``width`` bytes per sample -> float32 ``[n]`` in ``[-1, 1)``
    (8-bit is unsigned with 128 as zero, wider samples are signed)."""
    if width == 1:
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 3:
        padded = np.zeros((len(raw) // 3, 4), dtype=np.uint8)
        padded[:, 1:] = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        return (padded.view("<i4")[:, 0] >> 8).astype(np.float32) / float(1 << 23)
    dtype = {2: "<i2", 4: "<i4"}[width]
    return (np.frombuffer(raw, dtype=dtype).astype(np.float64) / float(1 << (8 * width - 1))).astype(np.float32)


def decimation_factor(path: Path, rate: int, target: int) -> int:
    """``k`` such that ``rate == k * target``: every ``k``-th sample of a ``k``-sample mean
    (:func:`decimate`) gives the ``target`` rate.

    Raises:
        TrainingDataError: ``rate`` is not a whole multiple of ``target`` (one line naming both).
    """
    if rate % target:
        raise _bad(path, f"is sampled at {rate:,} Hz and the model's feature extractor takes {target:,} Hz (only whole multiples of it are reduced here)", f"resample the files to {target:,} Hz, e.g. ffmpeg -i IN -ar {target} OUT.wav")
    return rate // target


def decimate(samples: np.ndarray, factor: int) -> np.ndarray:
    """``samples [n]`` at ``factor`` times the wanted rate -> ``[n // factor]``: the mean of each
    run of ``factor`` samples (a box low-pass, then every ``factor``-th sample)."""
    if factor == 1:
        return samples
    n = len(samples) // factor * factor
    return samples[:n].reshape(-1, factor).mean(axis=1, dtype=np.float32)
