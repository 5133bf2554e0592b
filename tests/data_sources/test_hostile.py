"""Hostile data files: each is refused in one typed line before anything large is allocated, and
nothing outside the data folder is read."""

from __future__ import annotations

import functools
import io
import json
import os
import struct
import zipfile

import numpy as np
import pytest

from sparsekit.data import readers
from sparsekit.data.config import DataConfig
from sparsekit.data.readers import open_reader
from sparsekit.data.source import UserData
from sparsekit.errors import TrainingDataError
from tests.data_sources import files


def _refused(path, *words: str) -> str:
    """Open and read ``path`` as data; it must be refused in one line naming ``words``."""
    with pytest.raises(TrainingDataError) as info:
        list(open_reader(str(path)).items())
    text = str(info.value)
    assert "\n" not in text and "(fix:" in text, text
    for word in words:
        assert word in text, text
    return text


def test_deeply_nested_jsonl_is_refused_not_a_recursion_error(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"input": ' + "[" * 10_000 + "]" * 10_000 + ', "label": 0}\n')
    _refused(path, "line 1", "too deeply")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".txt"])
def test_a_line_longer_than_the_cap_is_refused_without_reading_it_whole(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 1000)
    path = tmp_path / f"long{suffix}"
    first = '{"input": 1}' if suffix == ".jsonl" else "input,label"
    path.write_text(first + "\n" + "1" * 5000 + ",0\n")  # one line, no quote: the reader may not buffer it whole
    seen = []
    real = readers._raw_lines

    def spy(p, f):
        for raw in real(p, f):
            seen.append(len(raw))
            yield raw

    monkeypatch.setattr(readers, "_raw_lines", spy)
    _refused(path, "line 2", "longer than 1,000 bytes")
    assert max(seen) <= 1001


def test_csv_keeps_crlf_and_lone_cr_line_ends(tmp_path):
    (tmp_path / "a.csv").write_bytes(b'a,b\r\n1,"x\r\ny"\r\n')
    (tmp_path / "b.csv").write_bytes(b"a,b\r1,2\r3,4\r")
    assert list(open_reader(str(tmp_path / "a.csv")).items()) == [{"a": "1", "b": "x\r\ny"}]
    assert list(open_reader(str(tmp_path / "b.csv")).items()) == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]


def test_a_binary_file_named_csv_is_refused_in_one_line(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(bytes(range(256)) * 16)
    with pytest.raises(TrainingDataError) as info:
        UserData(DataConfig(source=str(path)))
    assert "\n" not in str(info.value)


def test_a_fifo_is_not_opened(tmp_path):
    path = tmp_path / "pipe.csv"
    os.mkfifo(path)
    _refused(path, "not a regular file")  # opening it would block forever


def test_image_link_out_of_the_folder_is_refused(tmp_path):
    root = files.digits_image_folder(tmp_path / "img", 20)
    (root / "0" / "zz.png").symlink_to("/etc/passwd")
    _refused(root, "0/zz.png", "outside the folder")


def test_class_folder_link_out_of_the_folder_is_refused(tmp_path):
    root = files.digits_image_folder(tmp_path / "img", 20)
    (root / "extra").symlink_to("/etc")
    _refused(root, "'extra'", "outside the folder")


def test_link_loops_and_links_inside_the_folder(tmp_path):
    root = files.digits_image_folder(tmp_path / "img", 20)
    (root / "0" / "a.png").symlink_to(root / "0" / "b.png")
    (root / "0" / "b.png").symlink_to(root / "0" / "a.png")
    (root / "0" / "loop").symlink_to(root)
    first = sorted((root / "1").iterdir())[0]
    (root / "0" / "inside.png").symlink_to(first)
    items = list(open_reader(str(root)).items())
    names = [os.path.basename(i["image"]) for i in items]
    assert "inside.png" in names and "a.png" not in names and len(items) == 21


def _npy(shape: tuple, descr: str = "<f4", payload: int = 256) -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * payload


def test_npz_with_an_enormous_declared_shape_is_refused_before_allocating(tmp_path, monkeypatch):
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("input.npy", _npy((100_000_000_000, 1, 8, 8)))
        z.writestr("label.npy", _npy((4,), "<i8"))
    monkeypatch.setattr(np.lib.format, "read_array", lambda *a, **k: pytest.fail("an array was read"))
    _refused(path, "input.npy", "more than the file holds")


def test_npz_of_object_arrays_is_refused_by_name(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, input=np.array([{"a": 1}, None], dtype=object), label=np.array([0, 1]))
    _refused(path, "input.npy", "Python objects")


def test_npz_of_arrays_still_reads(tmp_path):
    path = tmp_path / "ok.npz"
    buf = io.BytesIO()
    np.savez_compressed(buf, input=np.ones((6, 4), np.float32), label=np.arange(6))
    path.write_bytes(buf.getvalue())
    assert len(list(open_reader(str(path)).items())) == 6


def test_a_label_too_large_for_int64_is_refused_in_one_line(tmp_path):
    from sparsekit.tasks.data_task import _class_index

    path = tmp_path / "labels.csv"
    path.write_text("input,label\n" + "".join(f"1 2,{10**30 if i % 2 else 1}\n" for i in range(20)))
    data = UserData(DataConfig(source=str(path)))
    with pytest.raises(TrainingDataError) as info:
        _class_index(object(), data)
    assert "31 digits" in str(info.value) and "\n" not in str(info.value)


def test_a_deeply_nested_list_in_a_csv_cell_is_refused_in_one_line(tmp_path):
    from sparsekit.data.preprocess import _as_array

    with pytest.raises(TrainingDataError) as info:
        _as_array("[" * 10_000 + "]" * 10_000, "input", tmp_path / "d.csv")
    assert "not numbers" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(TrainingDataError):
        _as_array(functools.reduce(lambda inner, _: [inner], range(5000), [1.0]), "input", tmp_path / "d.jsonl")


def test_a_jsonl_row_without_an_input_column_is_refused_in_one_line(tmp_path):
    from sparsekit.data.preprocess import Preprocessor
    from sparsekit.models.source import load_model

    path = tmp_path / "d.jsonl"
    rows = [{"input": [0.5] * 64, "label": i % 2} for i in range(20)]
    rows[3] = {"inp": [0.5] * 64, "label": 1}
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = UserData(DataConfig(source=str(path)))
    pre = Preprocessor(load_model(*files.DIGITS_MODEL), data)
    with pytest.raises(TrainingDataError) as info:
        pre([item for _, item in zip(range(8), data.reader.items())])
    assert "a row has no 'input'" in str(info.value) and "\n" not in str(info.value)
