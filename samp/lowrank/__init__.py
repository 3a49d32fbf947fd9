"""LITEALLM-style calibrated low-rank compression of Whisper-style audio encoders, with bases shared across layers.

    stats = samp.lowrank.calibrate(encoder, batches)               # float64 Σy, Σyyᵀ per linear layer
    stats = samp.lowrank.balance_frames(stats, speech_stats)       # speech and padding frames half each
    plan = samp.lowrank.plan(stats, rank_threshold="0.99:0.999")   # print(plan) for the table
    samp.lowrank.apply(encoder, plan)                              # in place
    samp.lowrank.save(encoder, "out/"); encoder = samp.lowrank.load("out/")
    samp.lowrank.install(model, encoder)                           # a loaded encoder into a speech LLM
"""
from samp.lowrank.applying import OutputError, apply, audio_encoder, install, load, output_error, save
from samp.lowrank.calibration import CalibrationStats, LayerStats, StatsAccumulator, balance_frames, calibrate
from samp.lowrank.layers import EncoderLinear, find_encoder_linears
from samp.lowrank.modules import LowRankLinear
from samp.lowrank.planning import LayerPlan, Plan, SharedBasis, plan, subspace_similarity
from samp.lowrank.schedule import ThetaSchedule

__all__ = [
    "CalibrationStats",
    "EncoderLinear",
    "LayerPlan",
    "LayerStats",
    "LowRankLinear",
    "OutputError",
    "Plan",
    "SharedBasis",
    "StatsAccumulator",
    "ThetaSchedule",
    "apply",
    "audio_encoder",
    "balance_frames",
    "calibrate",
    "find_encoder_linears",
    "install",
    "load",
    "output_error",
    "plan",
    "save",
    "subspace_similarity",
]
