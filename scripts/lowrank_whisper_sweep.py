"""LITEALLM on a real Whisper encoder: calibrate on recorded (or synthetic) speech, sweep the rank threshold, measure
encoder parameters, encoder time on 30-s windows (ratio to the dense encoder, interleaved, fastest round), encoder
output error and real-speech WER through the Whisper adapter (paired bootstrap CI of the WER difference to dense).

    .venv/bin/python scripts/lowrank_whisper_sweep.py --checkpoint tiny.en --out runs/lowrank-whisper/tiny.en

Calibration: the Asterisk-en calibration split (or the synthetic espeak-ng corpus fixtures/speech_tiny/test);
test: the first --test-items of the Asterisk-en test split (disjoint from calibration by construction: a prompt
calibrates when sha256 of its words is 0 mod 3) plus all 11 PocketSphinx-en utterances (other voices).
Writes sweep.json, sweep.md, plans/*.txt, diagnostics.json into --out.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import samp  # noqa: E402
import samp.lowrank as lowrank  # noqa: E402
from samp.bench.timers import fastest_seconds  # noqa: E402
from samp.eval.audio import read_audio  # noqa: E402
from samp.eval.datasets import get_dataset  # noqa: E402
from samp.eval.manifest import load_manifest  # noqa: E402
from samp.eval.metrics import bootstrap_ci, item_edits, score_edits  # noqa: E402
from samp.eval.prepare import prepare_packaged  # noqa: E402
from samp.realspeech import whisper_checkpoint  # noqa: E402

SYNTHETIC = ROOT / "fixtures/speech_tiny/test/manifest.jsonl"
BATCH = 8
# in the order they are worth measuring, so a cut-short run still answers the main questions
DEFAULT_CONFIGS = [
    "asterisk-speech/0.99/own", "asterisk-balanced/0.99/own", "asterisk-balanced/0.999/own",
    "asterisk-speech/0.999/own", "asterisk-balanced/0.995/own", "asterisk-balanced/0.9:0.95/own",
    "asterisk-balanced/0.99/shared", "synthetic-whole/0.99/own", "asterisk-balanced/0.95:0.99/own",
    "asterisk-balanced/0.98/own", "asterisk-speech/0.9:0.95/own", "asterisk-whole/0.99/own", "asterisk-whole/0.999/own",
    "asterisk-whole/0.9:0.95/own", "asterisk-balanced/0.99:0.999/own", "asterisk-balanced/0.999/shared",
]


def prepared(name: str, data_dir: Path) -> dict[str, Path]:
    target = data_dir / name
    splits = {split: target / f"{name}.{split}.jsonl" for split in ("calibration", "test", "ci")}
    if (target / f"{name}.summary.json").is_file():
        return {split: path for split, path in splits.items() if path.is_file()}
    return prepare_packaged(get_dataset(name), None, data_dir).split_manifests


def waves(items) -> list:
    return [read_audio(item.audio_paths[0]) for item in items]


def feature_batches(adapter, audios, *, speech_only: bool) -> list[dict]:
    """Encoder inputs in batches; ``speech_only`` adds the frame mask of the clip's own frames (padding left out)."""
    batches = []
    for start in range(0, len(audios), BATCH):
        features, mel_mask = adapter.features(audios[start:start + BATCH], 16000)
        batch = {"input_features": features}
        if speech_only:
            frames = adapter.speech_frames(mel_mask)
            batch["frame_mask"] = torch.arange(adapter.window_frames)[None, :] < frames[:, None]
        batches.append(batch)
    return batches


def encoder_params(encoder) -> int:
    return sum(p.numel() for p in {id(p): p for p in encoder.parameters()}.values())


def transcribe(adapter, audios, **kwargs) -> tuple[list[str], float]:
    texts, seconds = [], 0.0
    for start in range(0, len(audios), BATCH):
        started = time.perf_counter()
        result = adapter.generate(audios[start:start + BATCH], max_new_tokens=96, do_sample=False, **kwargs)
        seconds += time.perf_counter() - started
        texts += result.texts
    return texts, seconds


def layer_test_errors(compression, test_stats) -> dict[str, float]:
    """Each low-rank layer's own relative output error on the test frames, from the test statistics alone:
    E|(I − VVᵀ)(y − μ_calibration)|² / E|y − μ_test|², with the layer's dense input (errors do not compound here)."""
    errors = {}
    for layer in compression.layers:
        if layer.rank is None:
            continue
        stats = test_stats.layer(layer.name)
        if layer.basis is None:
            basis = compression.principal_components(layer.name).eigenvectors[:, : layer.rank]
        else:
            basis = compression.shared_basis_vectors(layer.basis)
        shift = stats.mean() - compression.stats.layer(layer.name).mean()
        second = stats.covariance() + torch.outer(shift, shift)
        residual = second.trace() - (basis.T @ second @ basis).trace()
        errors[layer.name] = float((residual.clamp_min(0) / stats.covariance().trace()).sqrt())
    return errors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="tiny.en", choices=("tiny.en", "base"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=ROOT / "runs/lowrank-whisper/data")
    parser.add_argument("--test-items", type=int, default=24, help="first N of the Asterisk-en test split")
    parser.add_argument("--calibration-items", type=int, default=48, help="first N of the calibration split")
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS,
                        help="CALIBRATION/THETA/own|shared[/MIN_FLOP_SAVING], CALIBRATION one of asterisk-whole, "
                             "asterisk-speech, asterisk-balanced, synthetic-whole")
    parser.add_argument("--synthetic-items", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds per configuration (fastest kept)")
    parser.add_argument("--token-keep-ratio", type=float, default=0.5)
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--reuse-stats", action="store_true",
                        help="load the statistics an earlier run saved in --out (same clips) instead of calibrating")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one is steadiest on a shared machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out
    (out / "plans").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    asterisk = prepared("Asterisk-en", args.data)
    sphinx = prepared("PocketSphinx-en", args.data)
    calibration_items = load_manifest(asterisk["calibration"], limit=args.calibration_items)
    test_items = load_manifest(asterisk["test"], limit=args.test_items) + load_manifest(sphinx["test"])
    calibration_keys = {item.meta.get("key") for item in calibration_items}
    assert not calibration_keys & {item.meta.get("key") for item in test_items}, "calibration and test overlap"
    refs = [item.answer for item in test_items]

    model, processor = samp.models.load(str(whisper_checkpoint(args.checkpoint)))
    model.eval()
    adapter = samp.models.adapter_for(model, processor)
    dense_encoder = lowrank.audio_encoder(model)
    print(f"{args.checkpoint}: {len(calibration_items)} calibration clips (Asterisk-en calibration split), "
          f"{len(test_items)} test clips ({args.test_items} Asterisk-en test + PocketSphinx-en)", flush=True)

    calibration_audio = waves(calibration_items)
    test_audio = waves(test_items)
    started = time.perf_counter()
    test_whole = feature_batches(adapter, test_audio, speech_only=False)
    test_speech = feature_batches(adapter, test_audio, speech_only=True)
    saved = {name: out / f"stats-{name}.safetensors" for name in
             ("asterisk-whole", "asterisk-speech", "synthetic-whole", "test-whole", "test-speech")}
    if args.reuse_stats:  # statistics of an earlier run with the same calibration and test clips
        stats = {name: lowrank.CalibrationStats.load(path) for name, path in saved.items()
                 if path.is_file() and not name.startswith("test-")}
        test_stats = {name[5:]: lowrank.CalibrationStats.load(path) for name, path in saved.items()
                      if name.startswith("test-")}
    else:
        stats = {
            "asterisk-whole": lowrank.calibrate(
                dense_encoder, feature_batches(adapter, calibration_audio, speech_only=False), progress=False),
            "asterisk-speech": lowrank.calibrate(
                dense_encoder, feature_batches(adapter, calibration_audio, speech_only=True), progress=False),
        }
        if not args.skip_synthetic:
            synthetic_audio = waves(load_manifest(SYNTHETIC, limit=args.synthetic_items))
            stats["synthetic-whole"] = lowrank.calibrate(
                dense_encoder, feature_batches(adapter, synthetic_audio, speech_only=False), progress=False)
        test_stats = {"whole": lowrank.calibrate(dense_encoder, test_whole, progress=False),
                      "speech": lowrank.calibrate(dense_encoder, test_speech, progress=False)}
        for name, collected in [*stats.items(), *(("test-" + k, v) for k, v in test_stats.items())]:
            collected.save(saved[name])  # for re-planning without the encoder
    stats["asterisk-balanced"] = lowrank.balance_frames(stats["asterisk-whole"], stats["asterisk-speech"])
    calibration_seconds = time.perf_counter() - started
    error_batches = [test_whole[0]["input_features"][:4]]
    window = test_whole[0]["input_features"][:1]

    dense_texts, dense_seconds = transcribe(adapter, test_audio, method="base", keep_ratio=1.0)
    dense_edits = item_edits(refs, dense_texts, "en")
    dense_wer = score_edits(dense_edits).wer
    dense_params = encoder_params(dense_encoder)
    print(f"dense: WER {100 * dense_wer:.2f} %, encoder {dense_params:,} parameters, transcription {dense_seconds:.1f} s",
          flush=True)

    def evaluate(name, compression, *, calibration, token_method=None):
        compressed_model = copy.deepcopy(model)
        encoder = lowrank.audio_encoder(compressed_model)
        lowrank.apply(encoder, compression)
        with torch.no_grad():
            seconds = fastest_seconds({"run": lambda: encoder(window), "baseline": lambda: dense_encoder(window)},
                                      args.rounds)
        error = lowrank.output_error(dense_encoder, encoder, error_batches, progress=False)
        compressed_adapter = samp.models.adapter_for(compressed_model, processor)
        kwargs = {"method": "base", "keep_ratio": 1.0} if token_method is None else \
            {"method": token_method, "keep_ratio": args.token_keep_ratio}
        texts, transcribe_seconds = transcribe(compressed_adapter, test_audio, **kwargs)
        edits = item_edits(refs, texts, "en")
        wer = score_edits(edits).wer
        low, high = bootstrap_ci([e.errors - d.errors for e, d in zip(edits, dense_edits)],
                                 [d.ref_tokens for d in dense_edits], n_resamples=2000)
        layer_errors = {scope: layer_test_errors(compression, test_stats[scope]) for scope in ("whole", "speech")}
        row = {
            "name": name, "calibration": calibration, "rank_threshold": compression.rank_threshold,
            "shared_bases": len(compression.shared_bases),
            "shared_layers": sum(len(b.members) for b in compression.shared_bases),
            "shared_params_saved": sum(b.params_saved for b in compression.shared_bases),
            "shared_extra_error": max((b.extra_error for b in compression.shared_bases), default=0.0),
            "low_rank_layers": sum(layer.rank is not None for layer in compression.layers),
            "layers": len(compression.layers),
            "encoder_params": encoder_params(encoder), "param_ratio": encoder_params(encoder) / dense_params,
            "flop_ratio": compression.flops_after / compression.flops_before,
            "time_ratio": seconds["run"] / seconds["baseline"], "dense_window_seconds": seconds["baseline"],
            "output_error": error.relative_error, "wer": wer, "wer_delta": wer - dense_wer,
            "wer_delta_ci": [low, high], "transcribe_seconds": transcribe_seconds,
            "dense_transcribe_seconds": dense_seconds, "token_method": token_method,
            "worst_layer_test_error_whole": max(layer_errors["whole"].values(), default=0.0),
            "worst_layer_test_error_speech": max(layer_errors["speech"].values(), default=0.0),
            "layer_test_errors": layer_errors,
            "layer_calibration_errors": {layer.name: layer.relative_error for layer in compression.layers
                                         if layer.rank is not None},
        }
        print(f"{name}: params {row['param_ratio']:.3f}, time {row['time_ratio']:.3f}, out err "
              f"{row['output_error']:.4f}, WER {100 * wer:.2f} % (Δ {100 * row['wer_delta']:+.2f}, CI "
              f"{100 * low:+.2f}..{100 * high:+.2f}), shared {row['shared_layers']} layers", flush=True)
        return row

    rows = []
    plan_seconds = {}
    configs = []
    for spec in args.configs:
        calibration, theta, share, *saving = spec.split("/")
        if calibration not in stats:
            parser.error(f"configuration calibrated on {calibration!r}, which this run did not collect")
        if not share.startswith(("own", "shared")):
            parser.error(f"{spec}: the third part is 'own', 'shared' or 'sharedSIMILARITY' (shared0.5)")
        similarity = float(share[6:]) if share.startswith("shared") and share[6:] else 0.9
        configs.append((calibration, theta, share.startswith("shared"), similarity, float(saving[0]) if saving else 0.0))
    for calibration, theta, share, similarity, saving in configs:
        started = time.perf_counter()
        compression = lowrank.plan(stats[calibration], theta, share_bases=share, share_similarity=similarity,
                                   min_flop_saving=saving)
        plan_seconds[f"{calibration}/{theta}/{share}/{saving}"] = time.perf_counter() - started
        name = (f"{calibration} θ={theta}{f' shared (similarity {similarity:g})' if share else ''}"
                f"{f' saving>={saving}' if saving else ''}")
        (out / "plans" / f"{calibration}_{theta.replace(':', '-')}{'_shared' if share else ''}"
                         f"{f'_saving{saving}' if saving else ''}.txt").write_text(compression.table() + "\n")
        rows.append({**evaluate(name, compression, calibration=calibration), "min_flop_saving": saving,
                     "share_similarity": similarity if share else None})
        (out / "sweep.json").write_text(json.dumps({"rows": rows}, indent=1))

    # the best point within +0.5 WER points (upper CI bound) by encoder time, then with token compression
    eligible = [r for r in rows if r["wer_delta_ci"][1] <= 0.005 and r["calibration"].startswith("asterisk")
                and r["low_rank_layers"]]
    # without a point inside the bound, the combination runs at the compressed point closest to dense WER
    candidates = eligible or [r for r in rows if r["calibration"].startswith("asterisk") and r["low_rank_layers"]]
    key = (lambda r: r["time_ratio"]) if eligible else (lambda r: r["wer_delta"])
    best = min(candidates, key=key) if candidates else None
    combined = []
    if best is not None:
        compression = lowrank.plan(stats[best["calibration"]], best["rank_threshold"],
                                   share_bases=best["share_similarity"] is not None,
                                   share_similarity=best["share_similarity"] or 0.9,
                                   min_flop_saving=best["min_flop_saving"])
        combined.append(evaluate(f"{best['name']} + uniform {args.token_keep_ratio}", compression,
                                 calibration=best["calibration"], token_method="uniform"))
        dense_uniform_texts, dense_uniform_seconds = transcribe(adapter, test_audio, method="uniform",
                                                                keep_ratio=args.token_keep_ratio)
        edits = item_edits(refs, dense_uniform_texts, "en")
        combined.append({"name": f"dense + uniform {args.token_keep_ratio}", "wer": score_edits(edits).wer,
                         "transcribe_seconds": dense_uniform_seconds, "dense_transcribe_seconds": dense_seconds})
    summary = {
        "checkpoint": args.checkpoint, "calibration_items": len(calibration_items), "test_items": len(test_items),
        "test_sets": {"Asterisk-en test (first N)": args.test_items, "PocketSphinx-en": len(test_items) - args.test_items},
        "dense_wer": dense_wer, "dense_encoder_params": dense_params, "calibration_seconds": calibration_seconds,
        "plan_seconds": plan_seconds, "threads": torch.get_num_threads(), "rows": rows, "best": best,
        "best_within_half_a_point": bool(eligible),
        "combined": combined,
    }
    (out / "sweep.json").write_text(json.dumps(summary, indent=1))
    lines = [f"# {args.checkpoint}: dense WER {100 * dense_wer:.2f} % on {len(test_items)} clips, "
             f"encoder {dense_params:,} parameters", "",
             "| calibration | θ | min FLOP saving | shared (layers) | low-rank layers | params | FLOPs | time | output error | WER % | ΔWER (95 % CI) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['calibration']} | {r['rank_threshold']} | {r.get('min_flop_saving', 0.0):g} | {r['shared_layers']} | {r['low_rank_layers']}/{r['layers']} "
            f"| {r['param_ratio']:.3f} | {r['flop_ratio']:.3f} | {r['time_ratio']:.3f} | {r['output_error']:.4f} "
            f"| {100 * r['wer']:.2f} | {100 * r['wer_delta']:+.2f} ({100 * r['wer_delta_ci'][0]:+.2f}..{100 * r['wer_delta_ci'][1]:+.2f}) |")
    for r in combined:
        lines.append(f"\n{r['name']}: WER {100 * r['wer']:.2f} %, transcription {r['transcribe_seconds']:.1f} s "
                     f"(dense {r['dense_transcribe_seconds']:.1f} s)")
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
