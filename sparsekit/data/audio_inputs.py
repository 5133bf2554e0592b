"""WAV clips -> a Hugging Face audio model's inputs, through the feature extractor saved in its
``hf:DIR`` folder (``AutoFeatureExtractor``, offline, no remote code).

Each clip is read (:func:`sparsekit.data.wav.read_wav`: mono float32), reduced to the extractor's
``sampling_rate`` when its rate is a whole multiple of it (other rates are refused in one line),
and made into exactly the inputs the model was recorded with:

* raw audio (Wav2Vec2, HuBERT): ``input_values [B, samples]`` float, padded or cut to the model's
  recorded ``samples``, and ``attention_mask [B, samples]`` (1 on the clip's samples) where the
  model takes one;
* log-mel features (Whisper): ``input_features [B, mel, frames]`` from ``frames x hop_length``
  samples, and ``decoder_input_ids`` / ``decoder_attention_mask`` holding the decoder start token
  (``[B, 1]`` where the decoder axis is dynamic, else the start token then padding, masked).

Only the samples a model takes are read from each file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from sparsekit.data.wav import decimate, decimation_factor, read_wav, read_wav_header
from sparsekit.errors import TrainingDataError
from sparsekit.models.hf import _quiet, _transformers


def load_feature_extractor(folder: Path):
    """The folder's feature extractor (``AutoFeatureExtractor``, offline, no remote code).

    Raises:
        TrainingDataError: the folder has none, or it cannot be loaded.
    """
    if not (folder / "preprocessor_config.json").is_file():
        raise TrainingDataError(f"audio data needs a feature extractor, and the model folder '{folder}' has none (no preprocessor_config.json)", "save it next to the model (feature_extractor.save_pretrained(DIR)), or give --preprocess FILE.py:FN")
    tf = _transformers()
    with _quiet():
        try:
            extractor = tf.AutoFeatureExtractor.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        except Exception as exc:  # noqa: BLE001 - transformers raises many types
            raise TrainingDataError(f"the feature extractor of '{folder}' cannot be loaded ({type(exc).__name__})", "save it again with feature_extractor.save_pretrained(DIR), or give --preprocess FILE.py:FN") from exc
    rate = getattr(extractor, "sampling_rate", None)
    if not isinstance(rate, int) or rate <= 0:
        raise TrainingDataError(f"the feature extractor of '{folder}' declares no sampling rate ({rate!r})", "save a feature extractor with a sampling_rate, or give --preprocess FILE.py:FN")
    return extractor


class AudioInputs:
    """Makes a model's audio inputs from WAV files (see the module docstring).

    Args:
        loaded: the model as loaded (its inputs and config).
        folder: its ``hf:DIR`` folder, or None (refused: the extractor lives there).

    Attributes:
        rate: the extractor's sampling rate, Hz.
        samples: samples per clip the model takes (at ``rate``).

    Raises:
        TrainingDataError: no folder or feature extractor, a first input that is not
            ``input_values`` / ``input_features``, a mel count other than the model's, or no
            decoder start token for a model with decoder inputs.
    """

    def __init__(self, loaded, folder: Path | None) -> None:
        self.spec = loaded.inputs
        names = self.names = list(self.spec.names)
        if folder is None:
            raise TrainingDataError(f"audio data needs the model's feature extractor, and '{loaded.name}' is not loaded from a Hugging Face folder", "load the model as hf:DIR saved with its feature extractor, or give --preprocess FILE.py:FN")
        self.folder = folder
        self.extractor = load_feature_extractor(folder)
        self.rate = int(self.extractor.sampling_rate)
        first = self.spec.tensors[0]
        if first.name == "input_values" and len(first.shape) == 2:
            self.samples = int(first.shape[1])
        elif first.name == "input_features" and len(first.shape) == 3:
            mels, frames = int(first.shape[1]), int(first.shape[2])
            have = getattr(self.extractor, "feature_size", None)
            if have != mels:
                raise TrainingDataError(f"the feature extractor of '{folder}' makes {have} mel bins and the model takes {mels}", f"save a feature extractor with feature_size={mels} next to the model")
            self.samples = frames * int(self.extractor.hop_length)
        else:
            raise TrainingDataError(f"audio data feeds 'input_values [B, samples]' or 'input_features [B, mel, frames]', and the model's first input is '{first.name}' {list(first.shape)}", "give an audio model, or --preprocess FILE.py:FN")
        self.decoder_start, self.pad = None, 0
        if "decoder_input_ids" in names:
            config = getattr(loaded.model, "config", None)
            start = getattr(config, "decoder_start_token_id", None)
            if not isinstance(start, int):
                raise TrainingDataError(f"the model '{loaded.name}' takes decoder inputs and its config has no decoder_start_token_id", "set decoder_start_token_id in its config.json, or give --preprocess FILE.py:FN")
            self.decoder_start, self.pad = start, int(getattr(config, "pad_token_id", None) or 0)

    def check_rates(self, rates: dict[int, Path]) -> None:
        """Refuse, in one line naming a file and both rates, a rate the extractor's is not a whole
        fraction of (``rates``: rate -> a file with it, as the audio reader lists them)."""
        for rate, file in sorted(rates.items()):
            decimation_factor(file, rate, self.rate)

    def clip(self, path: str):
        """The first :attr:`samples` samples of the WAV file at ``path``, at :attr:`rate`: float32 ``[n]``."""
        file = Path(path)
        factor = decimation_factor(file, read_wav_header(file).rate, self.rate)
        samples, _ = read_wav(file, max_frames=self.samples * factor)
        return decimate(samples, factor)

    def __call__(self, paths: Sequence[str]) -> dict:
        """``{input name: [B, ...] tensor}`` of the WAV files ``paths``."""
        clips = [self.clip(p) for p in paths]
        options = {"sampling_rate": self.rate, "padding": "max_length", "max_length": self.samples, "truncation": True, "return_tensors": "pt"}
        if "input_values" in self.names:
            options["return_attention_mask"] = "attention_mask" in self.names
        with _quiet():
            made = dict(self.extractor(clips, **options))
        if self.decoder_start is not None:
            made.update(self._decoder(len(clips)))
        return made

    def _decoder(self, batch: int) -> dict:
        """``decoder_input_ids`` / ``decoder_attention_mask`` ``[B, L]`` int64: the start token,
        then padding (masked) up to the recorded length when the decoder axis is not dynamic."""
        import torch

        want = self.spec.get("decoder_input_ids")
        length = 1 if 1 in want.axes else int(want.shape[1])
        ids = torch.full((batch, length), self.pad, dtype=torch.int64)
        ids[:, 0] = self.decoder_start
        mask = torch.zeros((batch, length), dtype=torch.int64)
        mask[:, 0] = 1
        return {"decoder_input_ids": ids, "decoder_attention_mask": mask}

    def report(self) -> dict:
        """The rate and length clips are made to."""
        return {"sampling_rate": self.rate, "samples_per_clip": self.samples}
