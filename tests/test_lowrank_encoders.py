"""calibrate → plan → apply → save/load → generate on tiny encoders built from the real transformers classes."""
from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import samp
import samp.lowrank as lowrank
from samp.lowrank import LowRankLinear

MEL_BINS = 128
MEL_FRAMES = 200  # a 2-s window keeps the tiny encoders fast


def tiny_whisper_encoder():
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig(
        d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=256, num_mel_bins=MEL_BINS,
        max_source_positions=MEL_FRAMES // 2, decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64,
        vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
    )
    return WhisperEncoder._from_config(config, attn_implementation="sdpa").eval()


def tiny_qwen2_audio_encoder():
    from transformers import Qwen2AudioEncoderConfig
    from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder

    config = Qwen2AudioEncoderConfig(
        d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=256, num_mel_bins=MEL_BINS,
        max_source_positions=MEL_FRAMES // 2,
    )
    return Qwen2AudioEncoder._from_config(config, attn_implementation="sdpa").eval()


def tiny_glm_asr_encoder():
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "GlmAsrEncoderConfig"):
        pytest.skip(f"transformers {transformers.__version__} has no native GLM-ASR encoder (needs >= 5.0)")
    from transformers import GlmAsrEncoderConfig
    from transformers.models.glmasr.modeling_glmasr import GlmAsrEncoder

    config = GlmAsrEncoderConfig(
        hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=1500, num_mel_bins=MEL_BINS,
    )
    return GlmAsrEncoder._from_config(config, attn_implementation="sdpa").eval()


ENCODERS = {"whisper": tiny_whisper_encoder, "qwen2_audio": tiny_qwen2_audio_encoder, "glm_asr": tiny_glm_asr_encoder}


def feature_batches(count=3, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, MEL_BINS, MEL_FRAMES, generator=generator) for _ in range(count)]


def parameter_count(module):
    return sum(parameter.numel() for parameter in module.parameters())  # shared parameters count once


@pytest.mark.parametrize("family", ENCODERS)
def test_linear_layers_are_found_by_structure(family):
    encoder = ENCODERS[family]()
    layers = lowrank.find_encoder_linears(encoder)
    assert len(layers) == 12
    for block in range(2):
        in_block = [layer for layer in layers if layer.block_index == block]
        assert [layer.role for layer in in_block].count("attention") == 4
        assert sorted((layer.in_features, layer.out_features) for layer in in_block if layer.role == "mlp") == [(64, 256), (256, 64)]
        assert all(layer.num_blocks == 2 for layer in in_block)


@pytest.mark.parametrize("family", ENCODERS)
def test_calibrate_plan_apply_reports_encoder_error(family, record_property):
    encoder = ENCODERS[family]()
    batches = feature_batches()
    stats = lowrank.calibrate(encoder, batches, progress=False)
    assert all(layer.count == 3 * 2 * MEL_FRAMES // 2 for layer in stats.layers)
    compression = lowrank.plan(stats, "0.9:0.95")
    assert any(layer.rank is not None for layer in compression.layers)
    dense = copy.deepcopy(encoder)
    before = parameter_count(encoder)
    assert lowrank.apply(encoder, compression) is encoder
    for layer in compression.layers:
        module = encoder.get_submodule(layer.name)
        assert isinstance(module, LowRankLinear) == (layer.rank is not None)
    assert parameter_count(encoder) == before - compression.params_before + compression.params_after
    error = lowrank.output_error(dense, encoder, feature_batches(seed=1), progress=False)
    record_property("encoder_relative_error", error.relative_error)
    print(f"{family}: {compression.params_after}/{compression.params_before} linear params, "
          f"relative encoder output error {error.relative_error:.4f}")
    assert 0.0 < error.relative_error < 0.5


@pytest.mark.parametrize("family", ENCODERS)
def test_theta_one_gives_the_dense_encoder_back(family):
    encoder = ENCODERS[family]()
    dense = copy.deepcopy(encoder)
    batches = feature_batches(count=1)
    lowrank.apply(encoder, lowrank.plan(lowrank.calibrate(encoder, batches, progress=False), 1.0))
    assert not any(isinstance(module, LowRankLinear) for module in encoder.modules())
    with torch.no_grad():
        assert torch.equal(encoder(batches[0]).last_hidden_state, dense(batches[0]).last_hidden_state)


def test_params_and_flops_match_the_real_modules():
    encoder = tiny_whisper_encoder()
    compression = lowrank.plan(lowrank.calibrate(encoder, feature_batches(), progress=False), "0.9:0.95")
    lowrank.apply(encoder, compression)
    rows = 7
    for layer in compression.layers:
        module = encoder.get_submodule(layer.name)
        assert parameter_count(module) == layer.params_after
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            module(torch.randn(rows, layer.in_features))
        assert counter.get_total_flops() == rows * layer.flops_after


def test_shared_bases_are_one_parameter_and_survive_save_and_load(tmp_path):
    encoder = tiny_qwen2_audio_encoder()
    batches = feature_batches()
    stats = lowrank.calibrate(encoder, batches, progress=False)
    # random encoders' subspaces are far apart; a low similarity bar makes the greedy grouping fire here
    compression = lowrank.plan(stats, "0.9:0.95", share_bases=True, share_similarity=0.2)
    assert compression.shared_bases, compression.table()
    before = parameter_count(encoder)
    lowrank.apply(encoder, compression)
    assert parameter_count(encoder) == before - compression.params_before + compression.params_after
    for shared in compression.shared_bases:
        first = encoder.get_submodule(shared.members[0]).second.weight
        assert all(encoder.get_submodule(name).second.weight is first for name in shared.members)
    lowrank.save(encoder, tmp_path / "encoder")
    loaded = lowrank.load(tmp_path / "encoder")
    for shared in compression.shared_bases:
        first = loaded.get_submodule(shared.members[0]).second.weight
        assert all(loaded.get_submodule(name).second.weight is first for name in shared.members)
    with torch.no_grad():
        assert torch.equal(loaded(batches[0]).last_hidden_state, encoder(batches[0]).last_hidden_state)


@pytest.mark.parametrize("family", ENCODERS)
def test_save_and_load_give_identical_outputs(family, tmp_path):
    encoder = ENCODERS[family]()
    batches = feature_batches()
    compression = lowrank.plan(lowrank.calibrate(encoder, batches, progress=False), "0.9:0.95")
    lowrank.apply(encoder, compression)
    lowrank.save(encoder, tmp_path / "encoder")
    loaded = lowrank.load(tmp_path / "encoder")
    assert type(loaded) is type(encoder)
    assert {name for name, m in loaded.named_modules() if isinstance(m, LowRankLinear)} == {
        layer.name for layer in compression.layers if layer.rank is not None
    }
    assert loaded.config.samp_lowrank["plan"] == compression.to_dict()
    with torch.no_grad():
        assert torch.equal(loaded(batches[0]).last_hidden_state, encoder(batches[0]).last_hidden_state)


def test_apply_builds_layers_in_the_encoder_dtype():
    encoder = tiny_whisper_encoder()
    batches = feature_batches(count=2)
    compression = lowrank.plan(lowrank.calibrate(encoder, batches, progress=False), "0.9:0.95")
    encoder.to(torch.bfloat16)
    lowrank.apply(encoder, compression)
    low_rank = [m for m in encoder.modules() if isinstance(m, LowRankLinear)]
    assert low_rank and all(m.first.weight.dtype == torch.bfloat16 == m.second.bias.dtype for m in low_rank)
    with torch.no_grad():
        assert torch.isfinite(encoder(batches[0].to(torch.bfloat16)).last_hidden_state).all()


def test_whisper_generate_after_compression():
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(
        d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=256, num_mel_bins=MEL_BINS,
        max_source_positions=MEL_FRAMES // 2, decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64,
        max_target_positions=32, vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=1, suppress_tokens=None, begin_suppress_tokens=None,
    )
    model = WhisperForConditionalGeneration._from_config(config, attn_implementation="sdpa").eval()
    encoder = model.get_encoder()
    batches = feature_batches(count=2, batch=1)
    lowrank.apply(encoder, lowrank.plan(lowrank.calibrate(encoder, batches, progress=False), "0.9:0.95"))
    assert any(isinstance(m, LowRankLinear) for m in model.modules())
    with torch.no_grad():
        tokens = model.generate(input_features=batches[0], max_new_tokens=5, do_sample=False)
    assert tokens.shape[0] == 1 and tokens.shape[1] > 1


def test_audio_encoder_of_whisper_is_its_encoder_not_the_model():
    # transformers 5.x answers get_encoder(modality="audio") with the whole WhisperForConditionalGeneration; calibrating
    # that would run the decoder
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from samp.models import tiny

    model, processor = tiny.tiny_whisper()
    encoder = lowrank.audio_encoder(model)
    assert type(encoder) is WhisperEncoder and encoder is model.model.encoder
    assert lowrank.audio_encoder(model.model) is model.model.encoder
    features = processor.feature_extractor(
        [tiny.speechlike_waveform(1.0, seed=0)], sampling_rate=16000, return_tensors="pt"
    ).input_features
    stats = lowrank.calibrate(encoder, [features], progress=False)
    assert {layer.name for layer in stats.layers} == {layer.name for layer in lowrank.find_encoder_linears(encoder)}
    with pytest.raises(ValueError, match="no separate audio encoder"):
        lowrank.audio_encoder(encoder)


def test_qwen2_audio_low_rank_encoder_with_token_compression_in_one_generate(tmp_path):
    tiny = pytest.importorskip("samp.models.tiny")
    from samp.models import adapter_for

    model, processor = tiny.tiny_qwen2_audio(chunk_seconds=4)
    adapter = adapter_for(model, processor)
    audios = [tiny.speechlike_waveform(2.0, seed=seed) for seed in range(3)]
    prompt = "<|audio_bos|><|AUDIO|><|audio_eos|>Transcribe:"
    dense = adapter.generate(audios[:1], prompt, method="samp", keep_ratio=0.5, max_new_tokens=6, do_sample=False)

    tower = model.get_encoder(modality="audio")
    dense_tower = copy.deepcopy(tower)
    features = [adapter.features([audio], 16000)[0] for audio in audios]
    stats = lowrank.calibrate(tower, features, progress=False)
    compression = lowrank.plan(stats, "0.9:0.95")
    lowrank.apply(tower, compression)
    assert any(isinstance(m, LowRankLinear) for m in model.modules())
    error = lowrank.output_error(dense_tower, tower, features[:1], progress=False)
    print(f"qwen2-audio tower: relative encoder output error {error.relative_error:.4f}")
    assert error.relative_error < 0.5

    result = adapter.generate(audios[:1], prompt, method="samp", keep_ratio=0.5, max_new_tokens=6, do_sample=False)
    assert result.audio_tokens == dense.audio_tokens
    before, after = result.audio_tokens[0]
    assert after == samp.keep_count(before, 0.5) < before
    assert result.sequences.shape[0] == 1 and result.sequences.shape[-1] >= 1

    # the saved encoder, installed in a fresh copy of the dense model, generates exactly the same tokens
    lowrank.save(tower, tmp_path / "encoder")
    fresh, fresh_processor = tiny.tiny_qwen2_audio(chunk_seconds=4)
    lowrank.install(fresh, lowrank.load(tmp_path / "encoder"))
    assert lowrank.audio_encoder(fresh) is not tower
    again = adapter_for(fresh, fresh_processor).generate(
        audios[:1], prompt, method="samp", keep_ratio=0.5, max_new_tokens=6, do_sample=False
    )
    assert torch.equal(again.sequences, result.sequences)
    with pytest.raises(ValueError, match="cannot install a WhisperEncoder"):
        lowrank.install(fresh, tiny_whisper_encoder())


def test_a_compressed_encoder_lists_its_dense_layers_only():
    encoder = tiny_whisper_encoder()
    compression = lowrank.plan(lowrank.calibrate(encoder, feature_batches(count=1), progress=False), "0.9:0.95")
    lowrank.apply(encoder, compression)
    remaining = {layer.name for layer in lowrank.find_encoder_linears(encoder)}
    assert remaining == {layer.name for layer in compression.layers if layer.rank is None}


def test_frame_mask_counts_only_the_marked_frames():
    encoder = tiny_qwen2_audio_encoder()
    features = feature_batches(count=1)[0]
    frames = MEL_FRAMES // 2
    mask = torch.arange(frames)[None, :] < torch.tensor([[30], [70]])
    masked = lowrank.calibrate(encoder, [{"input_features": features, "frame_mask": mask}], progress=False)
    unmasked = lowrank.calibrate(encoder, [features], progress=False)
    captured = {}
    handle = encoder.get_submodule("layers.1.fc2").register_forward_hook(lambda m, i, o: captured.update(y=o.detach()))
    with torch.no_grad():
        encoder(features)
    handle.remove()
    kept = captured["y"][mask].to(torch.float64)
    for stats in masked.layers:
        assert stats.count == 100
    fc2 = masked.layer("layers.1.fc2")
    torch.testing.assert_close(fc2.output_sum, kept.sum(0))
    torch.testing.assert_close(fc2.output_outer_sum, kept.T @ kept)
    assert unmasked.layer("layers.1.fc2").count == 2 * frames
    with pytest.raises(ValueError, match=r"frame_mask of shape \(2, 99\) does not match"):
        lowrank.calibrate(encoder, [{"input_features": features, "frame_mask": mask[:, :99]}], progress=False)


def test_bfloat16_encoder_saves_and_loads_identically(tmp_path):
    encoder = tiny_whisper_encoder()
    batches = feature_batches(count=2)
    compression = lowrank.plan(lowrank.calibrate(encoder, batches, progress=False), "0.9:0.95")
    encoder.to(torch.bfloat16)
    lowrank.apply(encoder, compression)
    lowrank.save(encoder, tmp_path / "encoder")
    loaded = lowrank.load(tmp_path / "encoder")
    assert all(parameter.dtype == torch.bfloat16 for parameter in loaded.parameters())
    features = batches[0].to(torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(loaded(features).last_hidden_state, encoder(features).last_hidden_state)


@pytest.mark.gpu
def test_calibrate_apply_save_load_on_cuda(tmp_path):
    encoder = tiny_qwen2_audio_encoder().to("cuda")
    batches = [batch.to("cuda") for batch in feature_batches()]
    stats = lowrank.calibrate(encoder, batches, progress=False)
    compression = lowrank.plan(stats, "0.9:0.95", share_bases=True, share_similarity=0.2)
    lowrank.apply(encoder, compression)
    low_rank = [m for m in encoder.modules() if isinstance(m, LowRankLinear)]
    assert low_rank and all(m.first.weight.is_cuda and m.second.bias.is_cuda for m in low_rank)
    lowrank.save(encoder, tmp_path / "encoder")
    loaded = lowrank.load(tmp_path / "encoder", device="cuda")
    with torch.no_grad():
        assert torch.equal(loaded(batches[0]).last_hidden_state, encoder(batches[0]).last_hidden_state)


def test_a_plan_reloaded_from_json_applies_the_same_bases():
    encoder = tiny_qwen2_audio_encoder()
    batches = feature_batches()
    stats = lowrank.calibrate(encoder, batches, progress=False)
    compression = lowrank.plan(stats, "0.9:0.95", share_bases=True, share_similarity=0.2)
    assert compression.shared_bases
    reloaded = lowrank.Plan.from_json(compression.to_json(), stats=stats)  # no cached eigendecompositions
    in_memory, from_json = copy.deepcopy(encoder), copy.deepcopy(encoder)
    lowrank.apply(in_memory, compression)
    lowrank.apply(from_json, reloaded)
    with torch.no_grad():
        torch.testing.assert_close(from_json(batches[0]).last_hidden_state, in_memory(batches[0]).last_hidden_state)


@pytest.mark.gpu
def test_plan_on_cuda_matches_the_cpu_plan():
    stats = lowrank.calibrate(tiny_qwen2_audio_encoder(), feature_batches(), progress=False)
    on_cpu = lowrank.plan(stats, "0.9:0.95", share_bases=True, share_similarity=0.2)
    on_cuda = lowrank.plan(stats, "0.9:0.95", share_bases=True, share_similarity=0.2, device="cuda")
    assert [layer.rank for layer in on_cuda.layers] == [layer.rank for layer in on_cpu.layers]
    assert [b.members for b in on_cuda.shared_bases] == [b.members for b in on_cpu.shared_bases]
