"""WAV files read with the stdlib ``wave`` module: PCM 8 to 32-bit, channels averaged, whole-multiple
rates decimated; hostile headers refused in one line naming the file before a sample is read; the
audio folder reader's layouts and its refusal of links that leave the folder."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from sparsekit.data import wav
from sparsekit.data.readers import AudioFolderReader, ImageFolderReader, open_reader
from sparsekit.data.wav import decimate, decimation_factor, read_wav, read_wav_header
from sparsekit.errors import TrainingDataError
from tests.data_sources import files


def _wav_bytes(channels: int = 1, bits: int = 16, rate: int = 16000, frames: int = 100, body: bytes | None = None, fmt_tag: int = 1) -> bytes:
    """A RIFF/WAVE file whose header declares what it is told, with ``body`` (default: the
    declared frames of silence) as its samples."""
    width = (bits + 7) // 8
    block = channels * width
    size = frames * block
    body = bytes(size) if body is None else body
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    return b"RIFF" + struct.pack("<I", 36 + len(body)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", size & 0xFFFFFFFF) + body


def _one_line(exc: TrainingDataError, *words: str) -> None:
    text = str(exc)
    assert "\n" not in text and "(fix:" in text, text
    for word in words:
        assert word in text, text


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 2])
def test_pcm_widths_and_channels_decode_to_the_same_mono_sine(tmp_path, width, channels):
    path = files.sine_wav(tmp_path / "a.wav", 440.0, rate=8000, seconds=0.1, width=width, channels=channels)
    samples, header = read_wav(path)
    expected = 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(800) / 8000)
    assert samples.dtype == np.float32 and samples.shape == (800,)
    assert (header.channels, header.sample_width, header.rate, header.frames) == (channels, width, 8000, 800)
    assert np.abs(samples - expected).max() < (0.01 if width == 1 else 1e-4)


def test_only_the_frames_asked_for_are_read(tmp_path):
    path = files.sine_wav(tmp_path / "a.wav", 440.0, rate=8000, seconds=1.0, channels=2)
    samples, _ = read_wav(path, max_frames=100)
    full, _ = read_wav(path)
    assert samples.shape == (100,) and np.array_equal(samples, full[:100])


def test_a_whole_multiple_rate_is_decimated_and_another_is_refused(tmp_path):
    high, _ = read_wav(files.sine_wav(tmp_path / "32k.wav", 220.0, rate=32000))
    low, _ = read_wav(files.sine_wav(tmp_path / "16k.wav", 220.0, rate=16000))
    assert decimation_factor(tmp_path / "32k.wav", 32000, 16000) == 2
    reduced = decimate(high, 2)
    assert reduced.shape == low.shape and np.abs(reduced - low).max() < 0.03  # a half-sample shift of a 220 Hz tone
    with pytest.raises(TrainingDataError) as e:
        decimation_factor(tmp_path / "x.wav", 22050, 16000)
    _one_line(e.value, "x.wav", "22,050 Hz", "16,000 Hz", "resample")


@pytest.mark.parametrize("header, words", [
    (dict(frames=16000, body=bytes(1000)), ["truncated", "32,000 bytes", "holds 1,000"]),
    (dict(channels=12), ["12 channels"]),
    (dict(bits=48), ["48-bit"]),
    (dict(rate=0), ["sample rate of 0 Hz"]),
    (dict(rate=1_000_000), ["1,000,000 Hz"]),
    (dict(frames=16000 * 36000, body=bytes(64)), ["36,000 s of audio"]),  # ten hours declared
    (dict(channels=8, bits=32, rate=384000, frames=384000 * 10, body=bytes(64)), ["bytes of samples, more than 67,108,864"]),
    (dict(frames=0), ["holds no samples"]),
    (dict(fmt_tag=3, bits=32), ["not a readable PCM WAV file"]),  # IEEE float
    (dict(channels=0), ["not a readable PCM WAV file"]),
])
def test_hostile_headers_are_refused_in_one_line_before_reading(tmp_path, header, words):
    path = tmp_path / "bad.wav"
    path.write_bytes(_wav_bytes(**header))
    with pytest.raises(TrainingDataError) as e:
        read_wav_header(path)
    _one_line(e.value, "bad.wav", *words)


def test_garbage_and_empty_files_are_one_line(tmp_path):
    for name, data in {"garbage.wav": bytes(range(256)), "short.wav": b"RIFF", "empty.wav": b""}.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(TrainingDataError) as e:
            read_wav_header(tmp_path / name)
        _one_line(e.value, name, "not a readable PCM WAV file")


def test_a_file_cut_after_its_header_was_read_is_refused(tmp_path, monkeypatch):
    path = files.sine_wav(tmp_path / "a.wav", 440.0)
    header = read_wav_header(path)
    monkeypatch.setattr(wav, "read_wav_header", lambda p: header)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(TrainingDataError) as e:
        read_wav(path)
    _one_line(e.value, "a.wav", "truncated")


def test_flat_and_class_folders_are_audio_sources(tmp_path):
    flat = files.sine_folder(tmp_path / "flat", per_class=2, labelled=False)
    (flat / "notes.txt").write_text("not audio")
    reader = open_reader(str(flat))
    assert isinstance(reader, AudioFolderReader) and reader.columns == ["audio"] and reader.classes is None
    assert [os.path.basename(i["audio"]) for i in reader.items()] == ["high-0.wav", "high-1.wav", "low-0.wav", "low-1.wav", "mid-0.wav", "mid-1.wav"]
    labelled = open_reader(str(files.sine_folder(tmp_path / "classes", per_class=3)))
    assert isinstance(labelled, AudioFolderReader) and labelled.classes == ["high", "low", "mid"] and labelled.columns == ["audio", "label"]
    items = list(labelled.items())
    assert [i["label"] for i in items] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert labelled.rates == {16000: tmp_path / "classes" / "high" / "0.wav", 32000: tmp_path / "classes" / "high" / "2.wav"}
    assert isinstance(open_reader(str(files.digits_image_folder(tmp_path / "img", 10))), ImageFolderReader)


def test_links_out_of_the_folder_are_refused_and_fifos_skipped(tmp_path):
    root = files.sine_folder(tmp_path / "w", per_class=2)
    os.mkfifo(root / "low" / "pipe.wav")  # opening it would block
    assert len(list(open_reader(str(root)).items())) == 6
    (root / "low" / "passwd.wav").symlink_to("/etc/passwd")
    with pytest.raises(TrainingDataError) as e:
        list(open_reader(str(root)).items())
    _one_line(e.value, "passwd.wav", "outside the folder")
    flat = files.sine_folder(tmp_path / "flat", per_class=1, labelled=False)
    (flat / "etc").symlink_to("/etc")  # a linked folder is not listed, and a flat folder has no classes
    assert len(list(open_reader(str(flat)).items())) == 3


def test_a_bad_file_among_good_ones_is_refused_when_the_source_is_first_read(tmp_path):
    from sparsekit.data.config import DataConfig
    from sparsekit.data.source import UserData

    root = files.sine_folder(tmp_path / "w", per_class=2)
    (root / "mid" / "z.wav").write_bytes(_wav_bytes(frames=16000, body=bytes(100)))
    with pytest.raises(TrainingDataError) as e:
        UserData(DataConfig(source=str(root)))
    _one_line(e.value, "z.wav", "truncated")
