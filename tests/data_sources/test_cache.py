"""The data cache: a second read of the same data and preprocessing takes the tokenized inputs from
disk (the tokenizer is not called again) and gives the same batches; a changed file, a damaged entry
and --no-data-cache; an image source through its processor-less route."""

from __future__ import annotations

import json

import pytest
import torch

from sparsekit.data.cache import cache_dir
from sparsekit.data.config import DataConfig
from sparsekit.models.source import load_model
from sparsekit.tasks.data_task import DataTask
from tests.data_sources import files
from tests.tasks.test_data_task import _tiny_bert


class CountingTokenizer:
    """The real tokenizer, counting its calls."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.calls = tokenizer, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.tokenizer(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("SPARSEKIT_CACHE_DIR", str(root))
    return root / "data"


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    root = tmp_path_factory.mktemp("bert")
    text = files.docstrings_text(root / "t.txt", 48)
    return load_model(f"hf:{_tiny_bert(root / 'bert', text)}"), text


def _task(loaded, source, **kw) -> tuple[DataTask, CountingTokenizer]:
    task = DataTask(loaded, DataConfig(source=str(source), max_length=12, **kw))
    if task.pre.tokenizer is not None:
        task.pre.tokenizer = CountingTokenizer(task.pre.tokenizer)
    return task, task.pre.tokenizer


def _epoch(task) -> list[tuple]:
    return [inputs for inputs, _ in task.train_batches(8)(0)]


def test_a_second_read_takes_the_tokens_from_disk_and_gives_the_same_batches(bert, cache):
    loaded, text = bert
    plain, plain_tok = _task(loaded, text, cache=False)
    first, first_tok = _task(loaded, text)
    assert cache_dir() == cache
    want = _epoch(plain)
    got = _epoch(first)
    assert first_tok.calls > 0 and first.pre.report()["cache"] == "written"
    assert list(cache.glob("*.pt")) and len(list(cache.glob("*.pt"))) == 1
    want += [b[0] for b in plain._eval_batches()] + plain.calibration(16, 8)
    second, second_tok = _task(loaded, text)
    again = _epoch(second) + [b[0] for b in second._eval_batches()] + second.calibration(16, 8)
    assert second_tok.calls == 0 and second.pre.report()["cache"] == "hit"
    assert len(again) == len(want) > len(got)
    for a, b in zip(want, again):  # the tokenizer's own padding, batch by batch
        assert len(a) == len(b) == 3
        for x, y in zip(a, b):
            assert x.dtype == y.dtype and torch.equal(x, y)
    assert all(torch.equal(x, y) for a, b in zip(want, got) for x, y in zip(a, b))
    counted = {k: second.pre.report()[k] for k in ("texts", "truncated", "max_length")}
    assert counted == {k: plain.pre.report()[k] for k in counted} and counted["truncated"] > 0
    assert second.evaluate(loaded.model).metrics == plain.evaluate(loaded.model).metrics


def test_a_changed_file_misses_and_a_damaged_entry_is_written_again(bert, cache, tmp_path):
    loaded, text = bert
    data = tmp_path / "d.txt"
    data.write_text(text.read_text())
    task, _ = _task(loaded, data)
    _epoch(task)
    (entry,) = cache.glob("*.pt")
    data.write_text(text.read_text().replace("the", "a"))
    changed, tok = _task(loaded, data)
    _epoch(changed)
    assert tok.calls > 0 and changed.pre.report()["cache"] == "written" and len(list(cache.glob("*.pt"))) == 2
    for damage in (b"not a zip file", entry.read_bytes()[: entry.stat().st_size // 2]):
        data.write_text(text.read_text())
        entry.write_bytes(damage)
        again, tok = _task(loaded, data)
        batches = _epoch(again)
        assert tok.calls > 0 and again.pre.report()["cache"] == "written" and batches
        reread, tok = _task(loaded, data)
        _epoch(reread)
        assert tok.calls == 0 and reread.pre.report()["cache"] == "hit"


def test_an_entry_for_other_items_is_ignored(bert, cache, tmp_path):
    """An entry whose content does not match what the source says (here: fewer items under the
    right name) is not used."""
    loaded, text = bert
    task, _ = _task(loaded, text)
    _epoch(task)
    (entry,) = cache.glob("*.pt")
    stored = torch.load(entry, weights_only=True)
    stored["items"] -= 1
    torch.save(stored, entry)
    again, tok = _task(loaded, text)
    _epoch(again)
    assert tok.calls > 0 and again.pre.report()["cache"] == "written"


def test_images_are_cached_as_arrays(tmp_path, cache):
    folder = files.digits_image_folder(tmp_path / "images", 60)
    loaded = load_model(*files.DIGITS_MODEL)
    first = DataTask(loaded, DataConfig(source=str(folder)))
    want = _epoch(first)
    second = DataTask(loaded, DataConfig(source=str(folder)))
    got = _epoch(second)
    assert first.pre.report()["cache"] == "written" and second.pre.report()["cache"] == "hit"
    assert all(torch.equal(a[0], b[0]) and a[0].shape[1:] == (1, 8, 8) for a, b in zip(want, got))


def test_no_data_cache_writes_nothing(bert, cache, tmp_path, cli):
    loaded, text = bert
    sparse = tmp_path / "sparse.pt"
    folder = loaded.source["spec"]
    r = cli("sparsify", folder, "--seq-len", "12", "--method", "sparsegpt", "--data", str(text), "--calib-samples", "16", "--no-data-cache", "-o", str(sparse))
    assert r.returncode == 0, r.stderr
    r = cli("finetune", str(sparse), "--data", str(text), "--no-data-cache", "--epochs", "1", "--batch-size", "16", "-o", str(tmp_path / "t.pt"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["data"]["cache"] == "off"
    assert not cache.exists()
    r = cli("finetune", str(sparse), "--data", str(text), "--epochs", "1", "--batch-size", "16", "-o", str(tmp_path / "t2.pt"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["data"]["cache"] == "written" and len(list(cache.glob("*.pt"))) == 1


def test_a_source_past_the_size_cap_is_streamed_not_cached(bert, cache, monkeypatch):
    import sparsekit.data.cache as data_cache

    loaded, text = bert
    monkeypatch.setattr(data_cache, "MAX_CACHE_BYTES", 256)
    task, tok = _task(loaded, text)
    batches = _epoch(task)
    assert batches and task.pre.report()["cache"] == "not cached" and not cache.exists()


def test_a_link_in_a_data_folder_is_hashed_by_its_name_never_read(tmp_path):
    from sparsekit.data.cache import source_sha256

    outside = tmp_path / "secret.txt"
    outside.write_text("outside the folder")
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    (folder / "notes.txt").symlink_to(outside)
    before = source_sha256(folder)
    outside.write_text("changed, but never read through the link")
    assert source_sha256(folder) == before
    (folder / "a.txt").write_text("hello again")
    assert source_sha256(folder) != before
