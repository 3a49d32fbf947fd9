"""Kimi-Audio text path on stock classes (kimi-lite): prompt streams, fusion, position dropping, parity with the
SA-MAP reference goldens (``shared/golden/models/kimi``, copied to ``fixtures/models/kimi_golden.json``, its tensors
to ``kimi_golden_tensors.safetensors`` and its weights to ``weights/``)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from safetensors.torch import load_file

from golden_checks import assert_close_to_scale
from models_checks import save_kimi_checkpoint
from samp.models import adapter_for, load
from samp.models.kimi import KimiAudioAdapter, KimiAudioLite, kimi_token_count
from samp.models.tiny import load_weights_, tiny_kimi_audio

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"
GOLDEN = json.loads((FIXTURES / "kimi_golden.json").read_text())
PROMPT = GOLDEN["question"] + "<audio>"
GOLDEN_TENSORS = load_file(FIXTURES / "kimi_golden_tensors.safetensors")
CASES = [(c, w) for c in GOLDEN["configs"] for w in GOLDEN["waves"]]
# Differences from the reference's tensors, as a fraction of each tensor's largest |value| (this AVX-512 machine, 1 and 2
# threads / ATEN_CPU_CAPABILITY=default): compressed rows 4.1e-6 / 4.0e-6, prefill embeddings 2.0e-6 / 1.9e-6, prefill
# logits 1.2e-5 / 1.0e-5 — the reference's own machine rounded differently. Allowed: 5e-5.
SCALE_TOLERANCE = 5e-5


def golden_weights_(model):
    """The reference's stored weights (the seeded builder matches them only to round-off on other CPUs)."""
    load_weights_(model.trunk, load_file(FIXTURES / "weights" / "kimi_audio.safetensors"), canonical=lambda n: n)
    load_weights_(model.whisper, load_file(FIXTURES / "weights" / "kimi_whisper.safetensors"), canonical=lambda n: n)
    load_weights_(model.adaptor, load_file(FIXTURES / "weights" / "kimi_audio.safetensors"),
                  canonical=lambda n: n if n.startswith("model.vq_adaptor.") else "model.vq_adaptor.layers." + n)
    return model


def wave(name):
    return np.load(FIXTURES / f"{name}.npy")


@pytest.fixture(scope="module")
def reference_like():
    """Whisper with eager attention and an SDPA trunk, as the reference ran."""
    model, processor = tiny_kimi_audio(whisper_attn_implementation="eager")
    return adapter_for(golden_weights_(model), processor)


@pytest.fixture(scope="module")
def tiny():
    model, processor = tiny_kimi_audio()
    return adapter_for(golden_weights_(model), processor)


def test_adapter_for_picks_kimi(tiny):
    assert isinstance(tiny, KimiAudioAdapter)


@pytest.mark.parametrize("name", list(GOLDEN["waves"]))
def test_prompt_streams_equal_the_reference_layout(tiny, name):
    expected = GOLDEN["waves"][name]
    assert kimi_token_count(wave(name).size) == expected["T"]
    streams = tiny.streams(PROMPT, expected["semantic_ids"])
    assert streams.audio_ids.tolist() == expected["audio_input_ids"]
    assert streams.text_ids.tolist() == expected["text_input_ids"]
    assert streams.continuous.int().tolist() == expected["is_continuous_mask"]


@pytest.mark.parametrize("config, name", CASES, ids=[f"{c}-{w[:4]}" for c, w in CASES])
def test_reference_flavour_reproduces_the_golden(reference_like, config, name):
    entry, semantic = GOLDEN["configs"][config], GOLDEN["waves"][name]["semantic_ids"]
    expected = entry["waves"][name]
    tokens = reference_like.encode([wave(name)], attention=True)
    kept = reference_like.compress(tokens, method=entry["method"], keep_ratio=entry["keep_ratio"],
                                   threshold=entry["threshold"], flavor="kimi_audio")
    assert kept.counts == [expected["K"]]
    assert kept.positions[0].tolist() == expected["kept_positions"]
    tensors = f"{config}/{name}/"
    assert_close_to_scale(kept.rows[0], GOLDEN_TENSORS[tensors + "compressed_continuous_rows"], SCALE_TOLERANCE)
    embeds, mask = reference_like.prefill_batch(PROMPT, [semantic], kept)
    assert embeds.shape[1] == expected["prefill_length"]
    assert_close_to_scale(embeds[0], GOLDEN_TENSORS[tensors + "prefill_inputs_embeds"], SCALE_TOLERANCE)
    with torch.no_grad():
        logits = reference_like.model.trunk(inputs_embeds=embeds, attention_mask=mask).logits[0]
    assert_close_to_scale(logits, GOLDEN_TENSORS[tensors + "prefill_text_logits"], SCALE_TOLERANCE)
    result = reference_like.generate([wave(name)], PROMPT, semantic_ids=[semantic], method=entry["method"],
                                     keep_ratio=entry["keep_ratio"], threshold=entry["threshold"],
                                     flavor="kimi_audio", max_new_tokens=8, do_sample=False)
    assert result.sequences[0].tolist() == expected["text_tokens"]
    assert result.audio_tokens == [(GOLDEN["waves"][name]["T"], expected["K"])]


def test_sdpa_whisper_gives_the_reference_tokens(tiny):
    for name, w in GOLDEN["waves"].items():
        result = tiny.generate([wave(name)], PROMPT, semantic_ids=[w["semantic_ids"]], method="base",
                               keep_ratio=1.0, max_new_tokens=8, do_sample=False)
        assert result.sequences[0].tolist() == GOLDEN["configs"]["base"]["waves"][name]["text_tokens"]


def test_batch_with_different_kept_counts_equals_single_runs(tiny):
    names = list(GOLDEN["waves"])
    semantic = [GOLDEN["waves"][n]["semantic_ids"] for n in names]
    batch = tiny.generate([wave(n) for n in names], PROMPT, semantic_ids=semantic, method="samp", keep_ratio=0.5,
                          max_new_tokens=8, do_sample=False)
    assert batch.audio_tokens[0][1] != batch.audio_tokens[1][1]
    for b, name in enumerate(names):
        single = tiny.generate([wave(name)], PROMPT, semantic_ids=[semantic[b]], method="samp", keep_ratio=0.5,
                               max_new_tokens=8, do_sample=False)
        assert single.audio_tokens[0] == batch.audio_tokens[b]
        assert single.sequences[0].tolist() == batch.sequences[b][: single.sequences.shape[1]].tolist()


def test_compression_drops_whole_positions(tiny):
    name = next(iter(GOLDEN["waves"]))
    semantic = GOLDEN["waves"][name]["semantic_ids"]
    tokens = tiny.encode([wave(name)], attention=True)
    kept = tiny.compress(tokens, method="samp", keep_ratio=0.5, threshold=0.85, flavor="samp")
    full = tiny.streams(PROMPT, semantic)
    embeds, _ = tiny.prefill_batch(PROMPT, [semantic], kept)
    assert embeds.shape[1] == full.audio_ids.shape[0] - (int(tokens.lengths[0]) - kept.counts[0])
    assert kept.positions[0].tolist() == sorted(kept.positions[0].tolist())


def test_continuous_features_change_the_logits(tiny):
    name = next(iter(GOLDEN["waves"]))
    semantic = GOLDEN["waves"][name]["semantic_ids"]
    tokens = tiny.encode([wave(name)])
    kept = tiny.compress(tokens, method="base", keep_ratio=1.0, threshold=0.85, flavor="samp")
    silent = type(kept)(rows=(torch.zeros_like(kept.rows[0]),), positions=kept.positions)
    with torch.no_grad():
        audio = tiny.model.trunk(inputs_embeds=tiny.prefill_batch(PROMPT, [semantic], kept)[0]).logits[0, -1]
        zero = tiny.model.trunk(inputs_embeds=tiny.prefill_batch(PROMPT, [semantic], silent)[0]).logits[0, -1]
    assert (audio - zero).abs().max() > 0.5


def test_semantic_ids_are_required_and_counted(tiny):
    name = next(iter(GOLDEN["waves"]))
    with pytest.raises(ValueError, match="needs semantic_ids"):
        tiny.generate([wave(name)], PROMPT, method="base", keep_ratio=1.0)
    with pytest.raises(ValueError, match="needs 32"):
        tiny.generate([wave(name)], PROMPT, semantic_ids=[[310] * 5], method="base", keep_ratio=1.0)
    with pytest.raises(ValueError, match="exactly one '<audio>'"):
        tiny.generate([wave(name)], "no audio here", semantic_ids=[[310] * 32], method="base", keep_ratio=1.0)


def test_load_reads_an_official_layout_checkpoint(tiny, tmp_path):
    """Save the tiny model in Kimi-Audio's checkpoint layout (mimo branch included) and load it back."""
    save_kimi_checkpoint(tiny, tmp_path)
    loaded, processor = load(tmp_path)
    assert isinstance(loaded, KimiAudioLite)
    name, w = next(iter(GOLDEN["waves"].items()))
    kwargs = dict(semantic_ids=[w["semantic_ids"]], method="base", keep_ratio=1.0, max_new_tokens=8, do_sample=False)
    again = adapter_for(loaded, processor).generate([wave(name)], PROMPT, **kwargs)
    assert again.sequences.tolist() == tiny.generate([wave(name)], PROMPT, **kwargs).sequences.tolist()


def test_a_speech_tokenizer_supplies_the_semantic_ids(tiny):
    from samp.models.kimi import KimiAudioProcessor

    name, w = next(iter(GOLDEN["waves"].items()))
    calls = []

    def speech_tokenizer(audio):  # stands in for GLM-4-Voice: the golden ids for the golden clip
        calls.append(len(audio))
        return w["semantic_ids"]

    processor = KimiAudioProcessor(tiny.feature_extractor, tiny.tokenizer, speech_tokenizer)
    with_tokenizer = adapter_for(tiny.model, processor)
    kwargs = dict(method="base", keep_ratio=1.0, max_new_tokens=8, do_sample=False)
    result = with_tokenizer.generate([wave(name)], PROMPT, **kwargs)
    assert calls == [wave(name).size]
    assert result.sequences[0].tolist() == GOLDEN["configs"]["base"]["waves"][name]["text_tokens"]


def test_samp_eval_reads_the_semantic_ids_from_the_manifest(tiny, tmp_path, capsys):
    import soundfile

    from samp.cli import main as samp_main

    checkpoint = save_kimi_checkpoint(tiny, tmp_path / "kimi")
    data = tmp_path / "data"
    data.mkdir()
    rows = []
    for index, (name, w) in enumerate(GOLDEN["waves"].items()):
        soundfile.write(str(data / f"{name}.wav"), wave(name), 16000, subtype="FLOAT")
        rows.append({"index": index, "audio_path": f"{name}.wav", "question": GOLDEN["question"], "answer": "a b c",
                     "subset": "test", "meta": {"semantic_ids": w["semantic_ids"]}})
    manifest = data / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["eval", "--model", str(checkpoint), "--data", str(manifest), "--work-dir", str(tmp_path / "work"),
            "--method", "samp", "--keep-ratio", "0.5", "--max-new-tokens", "8", "--batch-size", "2", "--no-progress"]
    assert samp_main(argv) == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in next((tmp_path / "work").rglob("predictions.jsonl")).read_text().splitlines()]
    assert all(line["error"] is None for line in lines)
    assert lines[0]["prompt"] == PROMPT, "the reference's order: the question's text turn, then the audio"
    loaded = adapter_for(*load(checkpoint))
    for line, (name, w) in zip(lines, GOLDEN["waves"].items()):
        direct = loaded.generate([wave(name)], line["prompt"], semantic_ids=[w["semantic_ids"]], method="samp",
                                 keep_ratio=0.5, max_new_tokens=8, do_sample=False)
        assert line["prediction"] == direct.texts[0]
        assert (line["tokens_in"], line["tokens_out"]) == direct.audio_tokens[0]

    del rows[1]["meta"]["semantic_ids"]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert samp_main([*argv[:6], str(tmp_path / "work2"), *argv[7:]]) == 2
    assert "1 of 2 items of data have no meta.semantic_ids (indices 1)" in capsys.readouterr().err
