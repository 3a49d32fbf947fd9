"""Where a low-rank pair stops being faster than the dense layer: measured CPU time of ``LowRankLinear`` at ranks
r against ``nn.Linear`` on one 30-s window (1500 frames), for the layer shapes of Whisper tiny.en and base,
beside samp's planner rule (keep a pair only when r(in + out) < in·out, i.e. r < in·out/(in + out)) and LiteASR's
(skip when r > 0.5·d for attention, > 0.8·d for the MLP).

    .venv/bin/python scripts/lowrank_break_even.py --out runs/lowrank-whisper/break-even.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from samp.bench.timers import fastest_seconds  # noqa: E402
from samp.lowrank import LowRankLinear  # noqa: E402

SHAPES = {  # name: (in, out, role)
    "tiny.en attention 384→384": (384, 384, "attention"),
    "tiny.en fc1 384→1536": (384, 1536, "mlp"),
    "tiny.en fc2 1536→384": (1536, 384, "mlp"),
    "base attention 512→512": (512, 512, "attention"),
    "base fc1 512→2048": (512, 2048, "mlp"),
    "base fc2 2048→512": (2048, 512, "mlp"),
}
FRAMES = 1500


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for name, (inputs, outputs, role) in SHAPES.items():
        d = min(inputs, outputs)
        dense = nn.Linear(inputs, outputs).eval()
        x = torch.randn(1, FRAMES, inputs)
        measured = []
        for fraction in (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0):
            rank = int(d * fraction)
            pair = LowRankLinear(inputs, outputs, rank).eval()
            with torch.no_grad():
                seconds = fastest_seconds({"pair": lambda: pair(x), "dense": lambda: dense(x)}, args.rounds)
            measured.append({"rank": rank, "rank_fraction": fraction, "time_ratio": seconds["pair"] / seconds["dense"],
                             "dense_ms": 1000 * seconds["dense"]})
        faster = [m["rank"] for m in measured if m["time_ratio"] < 1.0]
        row = {
            "layer": name, "in": inputs, "out": outputs, "role": role, "measured": measured,
            "largest_faster_rank_measured": max(faster) if faster else None,
            "samp_rule_max_rank": (inputs * outputs - 1) // (inputs + outputs),
            "liteasr_rule_max_rank": int((0.5 if role == "attention" else 0.8) * d),
        }
        rows.append(row)
        print(f"{name}: measured faster up to r={row['largest_faster_rank_measured']}, samp rule r<"
              f"{row['samp_rule_max_rank'] + 1}, LiteASR r<={row['liteasr_rule_max_rank']}; ratios "
              + " ".join(f"{m['rank']}:{m['time_ratio']:.2f}" for m in measured), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"frames": FRAMES, "threads": args.threads, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
