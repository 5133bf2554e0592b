"""Audio data as users bring it: folders of ``.wav`` files fed to Hugging Face audio models through
the feature extractor saved in their folder. A Wav2Vec2 classifier on tones in class subfolders
(SparseGPT calibration, then distillation with labels), a Whisper model on a label-free folder
(SparseGPT calibration, distillation of its first-token logits), audio arrays in a tensor file, the
data cache, and hostile files refused in one line with nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sparsekit.data.config import DataConfig
from sparsekit.errors import TrainingDataError
from sparsekit.models.source import load_model
from sparsekit.tasks.data_task import DataTask, make_data_task
from tests.data_sources import files
from tests.data_sources.test_wav import _wav_bytes

pytest.importorskip("transformers", reason="Hugging Face models need the 'minilm' extra (transformers)")

SAMPLES = 4000
"""Samples per clip the Wav2Vec2 model is recorded with (--seq-len): a quarter second at 16 kHz."""


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    return {
        "tones": files.sine_folder(root / "tones", per_class=4), "flat": files.sine_folder(root / "flat", per_class=4, labelled=False),
        "wav2vec2": files.tiny_wav2vec2_classifier(root / "wav2vec2"), "whisper": files.tiny_whisper(root / "whisper"),
    }


def test_wav2vec2_inputs_are_the_recorded_length_with_a_mask_of_the_clip(audio):
    loaded = load_model(f"hf:{audio['wav2vec2']}", seq_len=SAMPLES)
    task = make_data_task(loaded, DataConfig(source=str(audio["tones"]), cache=False, eval_fraction=0.25))
    (values, mask), labels = task.make_batch([{"audio": str(audio["tones"] / "low" / "0.wav"), "label": 1}, {"audio": str(audio["tones"] / "mid" / "2.wav"), "label": 2}])
    assert values.shape == (2, SAMPLES) and values.dtype == torch.float32 and mask.dtype == torch.int64
    assert mask.sum(1).tolist() == [SAMPLES, SAMPLES]  # 0.25 s at 16 kHz, and 0.25 s at 32 kHz decimated by 2
    assert abs(float(values[0].mean())) < 1e-3 and abs(float(values[0].std()) - 1) < 0.01  # the extractor normalised it
    assert task.family == "classifier" and task.classes == {0: 2, 1: 0, 2: 1}  # folders high, low, mid by the model's label2id
    assert labels.tolist() == [0, 1]
    assert task.report()["kind"] == "audio" and task.report()["preprocess"] == "feature-extractor" and task.report()["sampling_rate"] == 16000
    long = load_model(f"hf:{audio['wav2vec2']}", seq_len=6000)
    (values, mask), _ = DataTask(long, DataConfig(source=str(audio["tones"]), cache=False)).make_batch([{"audio": str(audio["tones"] / "low" / "0.wav"), "label": 1}])
    assert values.shape == (1, 6000) and mask.sum().item() == 4000 and float(values[0, 4000:].abs().max()) == 0.0  # padded, masked


def test_wav2vec2_on_tone_folders_through_the_command_line(audio, tmp_path, cli):
    """SparseGPT calibrated on the clips, then distillation from the folder's model with the labels."""
    sparse, tuned = tmp_path / "sparse.pt", tmp_path / "tuned.pt"
    r = cli("sparsify", f"hf:{audio['wav2vec2']}", "--seq-len", str(SAMPLES), "--method", "sparsegpt", "--data", str(audio["tones"]), "--calib-samples", "8", "-o", str(sparse), "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["sparsified"]) >= 4
    r = cli("finetune", str(sparse), "--data", str(audio["tones"]), "--eval-fraction", "0.25", "--epochs", "1", "--batch-size", "4", "--lr", "1e-4", "-o", str(tuned), "--json")
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout)
    assert done["distilled"] and done["masks_2to4"] and done["data"]["kind"] == "audio" and done["data"]["classes"] == 3
    assert done["data"]["preprocess"] == "feature-extractor" and done["data"]["items"] == 12
    for when in ("before", "after"):
        assert {"accuracy", "accuracy_low", "accuracy_high", "agreement", "kl"} <= set(done[when]), when
    assert tuned.is_file()


def test_whisper_on_a_label_free_folder_calibrates_sparsegpt_and_distils(audio, tmp_path, cli):
    from sparsekit.data.calib import data_calibration

    loaded = load_model(f"hf:{audio['whisper']}")
    batches = data_calibration(loaded, DataConfig(source=str(audio["flat"]), cache=False), samples=6, batch_size=4)
    features, ids, mask = batches[0]
    assert [len(b[0]) for b in batches] == [4, 2] and features.shape == (4, 16, 32)
    assert ids.tolist() == [[1]] * 4 and mask.tolist() == [[1]] * 4  # the decoder start token
    assert float(features.std()) > 0.01
    r = cli("sparsify", f"hf:{audio['whisper']}", "--method", "sparsegpt", "--data", str(audio["flat"]), "--calib-samples", "8", "-o", str(tmp_path / "w.pt"), "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["sparsified"]) >= 4
    # distilled on its first-token logits (the decoder start token is all the decoder is fed)
    r = cli("finetune", str(tmp_path / "w.pt"), "--data", str(audio["flat"]), "--epochs", "1", "--batch-size", "4", "-o", str(tmp_path / "t.pt"), "--json")
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout)
    assert done["distilled"] and done["data"]["family"] == "classifier" and {"agreement", "kl"} <= set(done["after"]) and "accuracy" not in done["after"]
    r = cli("finetune", str(tmp_path / "w.pt"), "--data", str(audio["flat"]), "--family", "causal-lm", "-o", str(tmp_path / "x.pt"))
    assert r.returncode == 2 and "input_ids" in r.stderr and "--family classifier" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "x.pt").exists()


def test_audio_inputs_are_cached_and_read_back_the_same(audio, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEKIT_CACHE_DIR", str(tmp_path / "cache"))
    loaded = load_model(f"hf:{audio['wav2vec2']}", seq_len=SAMPLES)
    made = []
    for _ in range(2):
        task = DataTask(loaded, DataConfig(source=str(audio["tones"])))
        made.append(task.calibration(8, batch_size=4))
        made.append(task.pre.cache.status)
    assert made[1] == "written" and made[3] == "hit"
    for a, b in zip(made[0], made[2]):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    uncached = DataTask(loaded, DataConfig(source=str(audio["tones"]), cache=False)).calibration(8, batch_size=4)
    assert all(torch.equal(x, y) for a, b in zip(made[0], uncached) for x, y in zip(a, b))


def test_audio_arrays_in_a_tensor_file_still_feed_the_model(audio, tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "clips.npz"
    np.savez(path, input_values=rng.standard_normal((10, SAMPLES)).astype(np.float32), attention_mask=np.ones((10, SAMPLES), dtype=np.int64), label=np.arange(10) % 3)
    task = make_data_task(load_model(f"hf:{audio['wav2vec2']}", seq_len=SAMPLES), DataConfig(source=str(path), cache=False))
    (values, mask), labels = task.train_batches(4)(0)[0]
    assert task.pre.how == "columns" and values.shape == (4, SAMPLES) and mask.dtype == torch.int64 and labels.shape == (4,)


def test_a_rate_that_is_not_a_whole_multiple_is_refused_before_the_model_runs(audio, tmp_path):
    import shutil

    root = tmp_path / "tones"
    shutil.copytree(audio["tones"], root)
    files.sine_wav(root / "high" / "cd.wav", 440.0, rate=22050)
    with pytest.raises(TrainingDataError) as e:
        DataTask(load_model(f"hf:{audio['wav2vec2']}", seq_len=SAMPLES), DataConfig(source=str(root), cache=False))
    assert "cd.wav" in str(e.value) and "22,050 Hz" in str(e.value) and "16,000 Hz" in str(e.value) and "\n" not in str(e.value)


def test_a_model_folder_without_a_feature_extractor_is_one_line(audio, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(audio["wav2vec2"], folder)
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(TrainingDataError) as e:
        DataTask(load_model(f"hf:{folder}", seq_len=SAMPLES), DataConfig(source=str(audio["tones"]), cache=False))
    assert "no preprocessor_config.json" in str(e.value) and "save_pretrained" in str(e.value)


def _truncated(folder):
    (folder / "low" / "bad.wav").write_bytes(_wav_bytes(frames=16000, body=bytes(1000)))


def _wrong_header(folder):
    (folder / "low" / "bad.wav").write_bytes(_wav_bytes(channels=12))


def _link_out(folder):
    (folder / "low" / "bad.wav").symlink_to("/etc/passwd")


def _ten_hours(folder):
    (folder / "low" / "bad.wav").write_bytes(_wav_bytes(frames=16000 * 36000, body=bytes(64)))


@pytest.mark.parametrize("spoil, words", [
    (_truncated, ["bad.wav", "truncated"]), (_wrong_header, ["bad.wav", "12 channels"]),
    (_link_out, ["bad.wav", "/etc/passwd", "outside the folder"]), (_ten_hours, ["bad.wav", "36,000 s of audio"]),
])
@pytest.mark.parametrize("command", ["sparsify", "finetune"])
def test_hostile_audio_files_are_one_line_and_nothing_is_written(audio, tmp_path, cli, spoil, words, command):
    import shutil

    root = tmp_path / "tones"
    shutil.copytree(audio["tones"], root)
    spoil(root)
    out = tmp_path / "out.pt"
    options = ["--method", "sparsegpt", "--calib-samples", "4"] if command == "sparsify" else ["--epochs", "1"]
    r = cli(command, f"hf:{audio['wav2vec2']}", "--seq-len", str(SAMPLES), *options, "--data", str(root), "-o", str(out))
    lines = [x for x in r.stderr.strip().splitlines() if x.startswith("sparsekit: error:")]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tones"]
