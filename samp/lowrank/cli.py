"""``samp lowrank calibrate|plan|apply``: thin wrappers over samp.lowrank for a model directory and an audio manifest.

    samp lowrank calibrate --model DIR --manifest calib.jsonl --out stats.safetensors [--limit 100]
    samp lowrank plan --stats stats.safetensors --rank-threshold 0.99:0.999 [--share-bases] --out plan.json
    samp lowrank apply --model DIR --stats stats.safetensors --plan plan.json --out encoder_dir [--manifest dev.jsonl]

The manifest is JSONL with an ``audio_path`` per row (Kimi-Audio-Evalkit's format; relative paths are resolved
against the manifest's folder).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
from torch import nn

from samp.lowrank.applying import apply, output_error, save
from samp.lowrank.calibration import CalibrationStats, calibrate
from samp.lowrank.planning import Plan, plan


def read_manifest_audio(manifest: str | Path, limit: int | None = None) -> list[tuple[np.ndarray, int]]:
    """``(mono float32 waveform, sampling rate)`` for the first ``limit`` rows of a JSONL manifest."""
    import soundfile

    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest {manifest} does not exist")
    audios = []
    for line_number, line in enumerate(manifest.read_text().splitlines(), start=1):
        if limit is not None and len(audios) >= limit:
            break
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            audio_path = Path(row["audio_path"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{manifest}:{line_number}: a manifest row must be a JSON object with 'audio_path' ({error!r})") from None
        if not audio_path.is_absolute():
            audio_path = manifest.parent / audio_path
        try:
            waveform, sampling_rate = soundfile.read(str(audio_path), dtype="float32", always_2d=True)
        except Exception as error:  # soundfile raises its own error types for missing and unreadable files
            raise ValueError(f"{manifest}:{line_number}: cannot read audio {audio_path} ({error})") from None
        if waveform.shape[0] == 0:
            raise ValueError(f"{manifest}:{line_number}: audio {audio_path} is empty")
        audios.append((waveform.mean(axis=1), sampling_rate))
    if not audios:
        raise ValueError(f"manifest {manifest} has no rows")
    return audios


def audio_encoder(model: nn.Module) -> nn.Module:
    """The audio encoder of a speech LLM (``get_encoder(modality="audio")``) or of a Whisper model."""
    try:
        return model.get_encoder(modality="audio")
    except TypeError:  # older transformers: get_encoder() takes no modality
        return model.get_encoder()


def _feature_batches(processor, encoder: nn.Module, audios: list[tuple[np.ndarray, int]]):
    feature_extractor = getattr(processor, "feature_extractor", processor)
    parameter = next(encoder.parameters())
    for index, (waveform, sampling_rate) in enumerate(audios):
        if sampling_rate != feature_extractor.sampling_rate:
            raise ValueError(
                f"manifest row {index}: audio at {sampling_rate} Hz, the model's feature extractor expects "
                f"{feature_extractor.sampling_rate} Hz (resample first)"
            )
        features = feature_extractor(
            [waveform], sampling_rate=sampling_rate, padding="max_length", return_tensors="pt"
        )["input_features"]
        yield features.to(device=parameter.device, dtype=parameter.dtype)


def _load(model_dir: str):
    from samp.models import load

    model, processor = load(model_dir)
    return model, processor, audio_encoder(model)


def _calibrate(args) -> int:
    model, processor, encoder = _load(args.model)
    audios = read_manifest_audio(args.manifest, args.limit)
    stats = calibrate(encoder, list(_feature_batches(processor, encoder, audios)))
    stats.save(args.out)
    print(f"calibrated {len(stats.layers)} linear layers of {stats.encoder_class} on {len(audios)} utterances -> {args.out}")
    return 0


def _plan(args) -> int:
    stats = CalibrationStats.load(args.stats)
    result = plan(
        stats,
        args.rank_threshold,
        share_bases=args.share_bases,
        share_similarity=args.share_similarity,
        rank_multiple=args.rank_multiple,
    )
    Path(args.out).write_text(result.to_json())
    print(result.table())
    return 0


def _apply(args) -> int:
    stats = CalibrationStats.load(args.stats)
    compression = Plan.from_json(Path(args.plan).read_text(), stats=stats)
    model, processor, encoder = _load(args.model)
    dense = copy.deepcopy(encoder) if args.manifest else None
    apply(encoder, compression)
    save(encoder, args.out)
    print(compression.table())
    if dense is not None:
        audios = read_manifest_audio(args.manifest, args.limit)
        error = output_error(dense, encoder, list(_feature_batches(processor, encoder, audios)))
        print(
            f"encoder output error on {len(audios)} utterances: relative {error.relative_error:.6f}, "
            f"max abs {error.max_abs_error:.6f}"
        )
    print(f"compressed encoder written to {args.out}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("lowrank", help="calibrated low-rank compression of the audio encoder (LITEALLM)")
    commands = parser.add_subparsers(dest="lowrank_command", required=True)

    calibrate_parser = commands.add_parser("calibrate", help="collect per-layer output statistics on a manifest")
    calibrate_parser.add_argument("--model", required=True, help="model checkpoint directory")
    calibrate_parser.add_argument("--manifest", required=True, help="JSONL manifest with an audio_path per row")
    calibrate_parser.add_argument("--out", required=True, help="statistics file to write (safetensors)")
    calibrate_parser.add_argument("--limit", type=int, default=None, help="use only the first N utterances")
    calibrate_parser.set_defaults(func=_calibrate)

    plan_parser = commands.add_parser("plan", help="choose per-layer ranks from calibration statistics")
    plan_parser.add_argument("--stats", required=True, help="statistics file from 'samp lowrank calibrate'")
    plan_parser.add_argument(
        "--rank-threshold", default="0.99:0.999",
        help="retained-variance minimum 'attention:mlp' (rises with depth), or one number for both",
    )
    plan_parser.add_argument("--share-bases", action="store_true", help="share one basis among similar layers")
    plan_parser.add_argument("--share-similarity", type=float, default=0.9,
                             help="minimum subspace similarity (mean squared principal-angle cosine) to share")
    plan_parser.add_argument("--rank-multiple", type=int, default=16, help="round ranks up to a multiple of this")
    plan_parser.add_argument("--out", required=True, help="plan JSON to write")
    plan_parser.set_defaults(func=_plan)

    apply_parser = commands.add_parser("apply", help="compress the model's audio encoder with a plan and save it")
    apply_parser.add_argument("--model", required=True, help="model checkpoint directory")
    apply_parser.add_argument("--stats", required=True, help="statistics file the plan was made from")
    apply_parser.add_argument("--plan", required=True, help="plan JSON (edited or not)")
    apply_parser.add_argument("--out", required=True, help="directory for the compressed encoder")
    apply_parser.add_argument("--manifest", default=None, help="report the encoder output error on this manifest")
    apply_parser.add_argument("--limit", type=int, default=None, help="use only the first N utterances of --manifest")
    apply_parser.set_defaults(func=_apply)


__all__ = ["audio_encoder", "read_manifest_audio", "register"]
