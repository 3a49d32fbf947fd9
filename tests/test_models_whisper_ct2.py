"""Reading CTranslate2 Whisper checkpoints: files written here from a tiny real WhisperForConditionalGeneration
(tests/ct2_writer.py), round trips, ``samp models convert``, and a clear error for each kind of bad file."""
import json
import shutil

import numpy as np
import pytest
import torch

import samp.models
from samp.cli import main
from samp.models.ctranslate2_whisper import load_ctranslate2_whisper
from samp.models.tiny import speechlike_waveform, tiny_whisper
from ct2_writer import bfloat16_bits, ct2_variables, write_checkpoint, write_model_bin

GREEDY = dict(max_new_tokens=12, do_sample=False)


@pytest.fixture(scope="module")
def tiny():
    """English-only (a 266-row vocabulary is below the multilingual 51,865, so the reader calls it English-only)."""
    return tiny_whisper(multilingual=False)


@pytest.fixture(scope="module")
def float32_dir(tiny, tmp_path_factory):
    model, processor = tiny
    return write_checkpoint(model, processor.tokenizer, tmp_path_factory.mktemp("ct2"),
                            ct2_variables(model, lambda t: t.detach().float().numpy()))


def _features(processor, seconds=(2.0, 3.5)):
    waves = [speechlike_waveform(s, seed) for seed, s in enumerate(seconds)]
    return processor.feature_extractor(waves, sampling_rate=16000, return_tensors="pt").input_features


def test_float32_file_loads_the_same_weights_config_and_greedy_output(tiny, float32_dir):
    model, processor = tiny
    loaded, loaded_processor = samp.models.load(float32_dir)
    assert type(loaded).__name__ == "WhisperForConditionalGeneration"
    expected = model.state_dict()
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, expected[name]), name
    for field in ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
                  "encoder_ffn_dim", "decoder_ffn_dim", "vocab_size", "num_mel_bins", "max_source_positions",
                  "max_target_positions"):
        assert getattr(loaded.config, field) == getattr(model.config, field), field
    assert loaded.proj_out.weight.data_ptr() == loaded.model.decoder.embed_tokens.weight.data_ptr()
    generation = loaded.generation_config
    for field in ("decoder_start_token_id", "eos_token_id", "pad_token_id", "no_timestamps_token_id",
                  "prev_sot_token_id", "suppress_tokens", "begin_suppress_tokens"):
        assert getattr(generation, field) == getattr(model.generation_config, field), field
    assert generation.is_multilingual is False
    features = _features(processor)
    with torch.no_grad():
        assert torch.equal(loaded.generate(features, **GREEDY), model.generate(features, **GREEDY))
    text = " the 10 of clubs"
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert loaded_processor.tokenizer(text, add_special_tokens=False)["input_ids"] == ids
    assert loaded_processor.tokenizer.decode(ids + [model.generation_config.eos_token_id],
                                             skip_special_tokens=True) == text


@pytest.mark.parametrize("stored, expected", [
    ("float16", lambda t: t.half().float()),
    ("bfloat16", lambda t: (t.float().view(torch.int32) & -65536).view(torch.float32)),  # truncated to 16 bits
])
def test_half_precision_files_load_the_stored_values(tiny, tmp_path, stored, expected):
    model, processor = tiny
    convert = ((lambda t: t.detach().float().numpy().astype(np.float16)) if stored == "float16"
               else (lambda t: bfloat16_bits(t.detach().float().numpy())))
    directory = write_checkpoint(model, processor.tokenizer, tmp_path, ct2_variables(model, convert))
    loaded, _ = load_ctranslate2_whisper(directory)
    original = model.state_dict()
    for name, value in loaded.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, expected(original[name])), name


def test_convert_writes_a_transformers_checkpoint_the_adapter_runs(tiny, float32_dir, tmp_path):
    model, processor = tiny
    out = tmp_path / "hf"
    assert main(["models", "convert", str(float32_dir), str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["architectures"] == ["WhisperForConditionalGeneration"]
    loaded, loaded_processor = samp.models.load(out)
    assert type(loaded_processor).__name__ == "WhisperProcessor"
    adapter = samp.models.adapter_for(loaded, loaded_processor)
    wave = speechlike_waveform(2.0, 0)
    result = adapter.generate([wave], method="base", keep_ratio=1.0, **GREEDY)
    with torch.no_grad():
        stock = model.generate(_features(processor, (2.0,)), **GREEDY)
    assert torch.equal(result.sequences, stock)


def test_convert_refuses_a_non_empty_target_and_an_unknown_source(float32_dir, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    assert main(["models", "convert", str(float32_dir), str(tmp_path / "taken")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["models", "convert", "no-such-model", str(tmp_path / "out")]) == 2
    assert "neither a directory nor an installed checkpoint" in capsys.readouterr().err


def _rewrite(tiny, directory, change=None, **header):
    """A float16 checkpoint with ``change(variables)`` applied and the header fields given."""
    model, processor = tiny
    variables = ct2_variables(model)
    if change is not None:
        change(variables)
    return write_checkpoint(model, processor.tokenizer, directory, variables, **header)


def _quantise(variables):
    name = "encoder/layer_0/ffn/linear_0/weight"
    weight = variables[name].astype(np.float32)
    scale = 127.0 / np.abs(weight).max(axis=1)
    variables[name] = np.round(weight * scale[:, None]).astype(np.int8)
    variables[name + "_scale"] = scale.astype(np.float32)


def _set(name, value):
    return lambda variables: variables.__setitem__(name, value)


def _key_bias(variables):
    bias = variables["decoder/layer_1/attention/linear_1/bias"].copy()
    bias[0] = 0.5
    variables["decoder/layer_1/attention/linear_1/bias"] = bias


@pytest.mark.parametrize("change, header, message", [
    (None, dict(version=5), "binary version 5; samp reads version 6"),
    (None, dict(spec="TransformerSpec"), "'TransformerSpec' model; samp reads WhisperSpec"),
    (None, dict(revision=4), "WhisperSpec revision 4; samp knows revision 3"),
    (_quantise, {}, r"quantised \(1 scale tensors, e.g. 'encoder/layer_0/ffn/linear_0/weight_scale'\)"),
    (_set("encoder/layer_0/ffn/linear_0/weight", np.zeros((64, 32), np.int8)), {}, "stored as int8"),
    (_key_bias, {}, "non-zero key bias"),
    (_set("decoder/activation", np.array(1, np.int8)), {}, "decoder/activation = 1 in the checkpoint"),
    (_set("decoder/rotary_dim", np.array(0, np.int32)), {}, "does not know how to map: decoder/rotary_dim"),
    (lambda v: v.pop("decoder/layer_norm/gamma"), {}, "no variable 'decoder/layer_norm/gamma'"),
    (_set("encoder/num_heads", np.array(5, np.int16)), {}, "encoder/num_heads = 5 does not divide d_model = 32"),
])
def test_bad_model_bin_is_refused_by_name(tiny, tmp_path, change, header, message):
    directory = _rewrite(tiny, tmp_path, change, **header)
    with pytest.raises(ValueError, match=message):
        samp.models.load(directory)


def test_truncated_and_overlong_files_are_refused(float32_dir, tmp_path):
    directory = tmp_path / "cut"
    shutil.copytree(float32_dir, directory)
    data = (float32_dir / "model.bin").read_bytes()
    (directory / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"is truncated: variable '.*'s data needs \d+ bytes at offset \d+, but the "
                                         rf"file ends at {len(data) // 2}"):
        samp.models.load(directory)
    (directory / "model.bin").write_bytes(data[:-3])  # inside the alias table
    with pytest.raises(ValueError, match="is truncated: alias #0"):
        samp.models.load(directory)
    (directory / "model.bin").write_bytes(data + b"\0\0")
    with pytest.raises(ValueError, match="2 unexpected bytes after the alias table"):
        samp.models.load(directory)


@pytest.mark.parametrize("missing", ["model.bin", "tokenizer.json"])
def test_missing_files_are_named(float32_dir, tmp_path, missing):
    directory = tmp_path / "partial"
    shutil.copytree(float32_dir, directory)
    (directory / missing).unlink()
    with pytest.raises(ValueError, match=f"CTranslate2 checkpoint .* lacks {missing}"):
        samp.models.load(directory)


def test_a_stored_projection_must_equal_the_embeddings(tiny, tmp_path):
    model, processor = tiny
    variables = ct2_variables(model)
    variables["decoder/projection/weight"] = variables["decoder/embeddings/weight"] * np.float16(2)
    directory = tmp_path / "untied"
    write_checkpoint(model, processor.tokenizer, directory, variables)
    write_model_bin(directory / "model.bin", variables, {})  # stored, not aliased
    with pytest.raises(ValueError, match="differs from the token embeddings"):
        load_ctranslate2_whisper(directory)
    variables["decoder/projection/weight"] = variables["decoder/embeddings/weight"]
    write_model_bin(directory / "model.bin", variables, {})
    load_ctranslate2_whisper(directory)
    write_model_bin(directory / "model.bin", {k: v for k, v in variables.items()
                                              if k != "decoder/projection/weight"}, {})
    with pytest.raises(ValueError, match="no decoder/projection/weight"):
        load_ctranslate2_whisper(directory)
