"""``samp lowrank calibrate|plan|apply``: thin wrappers over samp.lowrank for a model directory and an audio manifest.

    samp lowrank calibrate --model DIR --manifest calib.jsonl --out stats.safetensors [--limit 100]
    samp lowrank plan --stats stats.safetensors --rank-threshold 0.99:0.999 [--share-bases] --out plan.json
    samp lowrank apply --model DIR --stats stats.safetensors --plan plan.json --out encoder_dir [--manifest dev.jsonl]

Manifests are samp.eval's (Kimi-Audio-Evalkit JSONL); audio is read and resampled by samp.eval.audio.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from samp.cli_errors import refusing_bad_input
from samp.lowrank.applying import apply, audio_encoder, output_error, save
from samp.lowrank.calibration import CalibrationStats, calibrate
from samp.lowrank.planning import Plan, plan


def manifest_audio(manifest: str | Path, sampling_rate: int, limit: int | None = None) -> list[np.ndarray]:
    """Mono float32 waveforms at ``sampling_rate`` for every audio file of the first ``limit`` manifest items."""
    from samp.eval.audio import read_audio
    from samp.eval.manifest import load_manifest

    return [
        read_audio(audio_path, target_rate=sampling_rate)
        for item in load_manifest(manifest, limit=limit)
        for audio_path in item.audio_paths
    ]


def block_frame_mask(encoder: nn.Module, mel_mask: torch.Tensor) -> torch.Tensor | None:
    """Bool ``[batch, frames]`` marking the frames the blocks see for real audio (not padding), from the mel mask
    and the encoder's ``conv1``/``conv2`` front end; ``None`` for an encoder without that front end."""
    convs = [getattr(encoder, name, None) for name in ("conv1", "conv2")]
    if not all(isinstance(conv, nn.Conv1d) for conv in convs):
        return None
    lengths = mel_mask.sum(-1)
    frames = mel_mask.shape[-1]
    for conv in convs:
        reach = conv.dilation[0] * (conv.kernel_size[0] - 1) + 1
        lengths = (lengths + 2 * conv.padding[0] - reach) // conv.stride[0] + 1
        frames = (frames + 2 * conv.padding[0] - reach) // conv.stride[0] + 1
    return torch.arange(frames)[None, :] < lengths[:, None]


def _feature_batches(processor, encoder: nn.Module, manifest: str, limit: int | None):
    """One batch per utterance: input features in the encoder's dtype and device, and the mask of real frames."""
    feature_extractor = getattr(processor, "feature_extractor", processor)
    parameter = next(encoder.parameters())
    for waveform in manifest_audio(manifest, feature_extractor.sampling_rate, limit):
        extracted = feature_extractor(
            [waveform], sampling_rate=feature_extractor.sampling_rate, padding="max_length",
            return_attention_mask=True, return_tensors="pt",
        )
        batch = {"input_features": extracted["input_features"].to(device=parameter.device, dtype=parameter.dtype)}
        frame_mask = block_frame_mask(encoder, extracted["attention_mask"])
        if frame_mask is not None:
            batch["frame_mask"] = frame_mask
        yield batch


def _load(model_dir: str):
    from samp.models import load

    model, processor = load(model_dir)
    return model, processor, audio_encoder(model)


def _existing(path: str, option: str, written_by: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{option} {path} does not exist ({written_by})")
    return path


def _output_location(path: str, *, folder: bool = False) -> Path:
    """Create the folder ``--out`` goes into before any work, so a long calibration never ends failing to write."""
    path = Path(path)
    if folder and path.is_file():
        raise ValueError(f"--out {path} is a file; give a folder for the compressed encoder")
    if not folder and path.is_dir():
        raise ValueError(f"--out {path} is a folder; give a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create the folder of --out {path}: {error.strerror}") from None
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"cannot write --out {path}: its folder is not writable")
    return path


def _check_inputs(model_dir: str, manifest: str | None) -> None:
    """A checkpoint samp can load and a readable manifest, checked before the model loads."""
    from samp.eval.manifest import load_manifest
    from samp.models import adapter_class

    adapter_class(model_dir)
    if manifest is not None:
        load_manifest(manifest, check_audio=True)


def _calibrate(args) -> int:
    _check_inputs(args.model, args.manifest)
    out = _output_location(args.out)
    model, processor, encoder = _load(args.model)
    batches = list(_feature_batches(processor, encoder, args.manifest, args.limit))
    stats = calibrate(encoder, batches)
    stats.save(out)
    print(f"calibrated {len(stats.layers)} linear layers of {stats.encoder_class} on {len(batches)} utterances -> {out}")
    return 0


def _plan(args) -> int:
    from samp.devices import resolve_device

    stats_path = _existing(args.stats, "--stats", "write it with 'samp lowrank calibrate'")
    device = resolve_device(args.device)
    out = _output_location(args.out)
    stats = CalibrationStats.load(stats_path)
    result = plan(
        stats,
        args.rank_threshold,
        share_bases=args.share_bases,
        share_similarity=args.share_similarity,
        rank_multiple=args.rank_multiple,
        min_flop_saving=args.min_flop_saving,
        device=device,
    )
    out.write_text(result.to_json())
    print(result.table())
    return 0


def _apply(args) -> int:
    stats_path = _existing(args.stats, "--stats", "write it with 'samp lowrank calibrate'")
    plan_path = _existing(args.plan, "--plan", "write it with 'samp lowrank plan'")
    _check_inputs(args.model, args.manifest)
    out = _output_location(args.out, folder=True)
    stats = CalibrationStats.load(stats_path)
    compression = Plan.from_json(plan_path.read_text(), stats=stats)
    model, processor, encoder = _load(args.model)
    dense = copy.deepcopy(encoder) if args.manifest else None
    apply(encoder, compression)
    save(encoder, out)
    print(compression.table())
    if dense is not None:
        batches = [
            {key: value for key, value in batch.items() if key != "frame_mask"}
            for batch in _feature_batches(processor, encoder, args.manifest, args.limit)
        ]
        error = output_error(dense, encoder, batches)
        print(
            f"encoder output error on {len(batches)} utterances: relative {error.relative_error:.6f}, "
            f"max abs {error.max_abs_error:.6f}"
        )
    print(f"compressed encoder written to {out}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("lowrank", help="calibrated low-rank compression of the audio encoder (LITEALLM)")
    commands = parser.add_subparsers(dest="lowrank_command", required=True)

    calibrate_parser = commands.add_parser("calibrate", help="collect per-layer output statistics on a manifest")
    calibrate_parser.add_argument("--model", required=True, help="model checkpoint directory")
    calibrate_parser.add_argument("--manifest", required=True, help="JSONL manifest with an audio_path per row")
    calibrate_parser.add_argument("--out", required=True, help="statistics file to write (safetensors)")
    calibrate_parser.add_argument("--limit", type=int, default=None, help="use only the first N utterances")
    calibrate_parser.set_defaults(func=refusing_bad_input(_calibrate, "samp lowrank calibrate"))

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
    plan_parser.add_argument("--min-flop-saving", type=float, default=0.0,
                             help="keep a low-rank pair only when it saves at least this fraction of the layer's "
                                  "FLOPs (pairs near the break-even are slower than the dense layer on CPU)")
    plan_parser.add_argument("--device", default="cpu", help="where to run the eigendecompositions (cpu, cuda)")
    plan_parser.add_argument("--out", required=True, help="plan JSON to write")
    plan_parser.set_defaults(func=refusing_bad_input(_plan, "samp lowrank plan"))

    apply_parser = commands.add_parser("apply", help="compress the model's audio encoder with a plan and save it")
    apply_parser.add_argument("--model", required=True, help="model checkpoint directory")
    apply_parser.add_argument("--stats", required=True, help="statistics file the plan was made from")
    apply_parser.add_argument("--plan", required=True, help="plan JSON (edited or not)")
    apply_parser.add_argument("--out", required=True, help="directory for the compressed encoder")
    apply_parser.add_argument("--manifest", default=None, help="report the encoder output error on this manifest")
    apply_parser.add_argument("--limit", type=int, default=None, help="use only the first N utterances of --manifest")
    apply_parser.set_defaults(func=refusing_bad_input(_apply, "samp lowrank apply"))


__all__ = ["block_frame_mask", "manifest_audio", "register"]
