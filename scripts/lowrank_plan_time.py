"""Plan time of a real Whisper encoder before and after planning expanding layers from their output range.

    .venv/bin/python scripts/lowrank_plan_time.py --checkpoint base --out runs/lowrank-whisper/plan-time-base.json

"Before" is samp/lowrank/planning.py and LayerStats.covariance as of commit 9dcbc4d (one float64 eigendecomposition per layer), loaded from
git; both plans run on the same statistics (whole 30-s windows of the first --clips Asterisk-en calibration prompts),
interleaved, the fastest of --rounds kept. The plans must agree: same ranks, retained variance within 1e-9.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import samp  # noqa: E402
import samp.lowrank as lowrank  # noqa: E402
from samp.bench.timers import fastest_seconds  # noqa: E402
from samp.lowrank.calibration import LayerStats  # noqa: E402
from samp.eval.manifest import load_manifest  # noqa: E402
from samp.realspeech import whisper_checkpoint  # noqa: E402

from lowrank_whisper_sweep import feature_batches, prepared, waves  # noqa: E402

BEFORE_COMMIT = "9dcbc4d"


def module_before(path_in_repo: str, name: str):
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE_COMMIT}:{path_in_repo}"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(f"/tmp/{name}.py")
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def plan_before(stats, theta):
    """The planner and the covariance of commit 9dcbc4d on today's statistics objects."""
    planning = module_before("samp/lowrank/planning.py", "samp_planning_before")
    covariance = module_before("samp/lowrank/calibration.py", "samp_calibration_before").LayerStats.covariance
    current = LayerStats.covariance
    LayerStats.covariance = covariance
    try:
        return planning.plan(stats, theta)
    finally:
        LayerStats.covariance = current


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default="base", choices=("tiny.en", "base"))
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--thresholds", nargs="+", default=["0.9:0.95", "0.99:0.999"])
    parser.add_argument("--data", type=Path, default=ROOT / "runs/lowrank-whisper/data")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stats", type=Path, help="saved statistics to plan instead of calibrating")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, processor = samp.models.load(str(whisper_checkpoint(args.checkpoint)))
    adapter = samp.models.adapter_for(model, processor)
    items = load_manifest(prepared("Asterisk-en", args.data)["calibration"], limit=args.clips)
    started = time.perf_counter()
    if args.stats:
        stats = lowrank.CalibrationStats.load(args.stats)
    else:
        stats = lowrank.calibrate(lowrank.audio_encoder(model),
                                  feature_batches(adapter, waves(items), speech_only=False), progress=False)
    calibration_seconds = time.perf_counter() - started
    results = {"checkpoint": args.checkpoint, "clips": args.clips, "threads": args.threads,
               "calibration_seconds": calibration_seconds, "plans": []}
    for theta in args.thresholds:
        plans = {}
        seconds = fastest_seconds({
            "before": lambda: plans.__setitem__("before", plan_before(stats, theta)),
            "after": lambda: plans.__setitem__("after", lowrank.plan(stats, theta)),
        }, args.rounds)
        ranks_equal = [a.rank for a in plans["after"].layers] == [b.rank for b in plans["before"].layers]
        worst = max(abs(a.retained_variance - b.retained_variance)
                    for a, b in zip(plans["after"].layers, plans["before"].layers))
        row = {"rank_threshold": theta, "before_seconds": seconds["before"], "after_seconds": seconds["after"],
               "speedup": seconds["before"] / seconds["after"], "ranks_equal": ranks_equal,
               "max_retained_variance_difference": worst}
        print(json.dumps(row), flush=True)
        assert ranks_equal and worst <= 1e-9, row
        results["plans"].append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
