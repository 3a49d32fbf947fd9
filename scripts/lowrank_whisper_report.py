"""Draw the low-rank sweep (scripts/lowrank_whisper_sweep.py) as a picture: WER against encoder time (ratio to the
dense encoder in the same run), one marker per configuration, labelled by its rank threshold θ.

    .venv/bin/python scripts/lowrank_whisper_report.py runs/lowrank-whisper/tiny.en/sweep.json \
        --out docs/lowrank-whisper/tiny.en-curve.svg
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from samp.bench.svg import Line, Reference, colour, line_chart, marker  # noqa: E402

# the dashboard's stylesheet classes, inlined so the file stands alone (README, a browser)
STYLE = ("<style>.title{font:bold 13px sans-serif}.label,.legend{font:11px sans-serif}.tick{font:10px sans-serif}"
         ".frame{fill:none;stroke:#999}.grid{stroke:#eee}.axis{stroke:#999}.series{fill:none;stroke-width:1.5}"
         "</style>")
CALIBRATIONS = {  # how the legend names the calibration statistics
    "asterisk-whole": "whole windows",
    "asterisk-speech": "speech frames only",
    "asterisk-balanced": "speech+padding balanced",
    "synthetic-whole": "synthetic (espeak-ng) windows",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sweeps", type=Path, nargs="+", help="sweep.json files of one checkpoint and test set")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-wer", type=float, default=30.0, help="points above this WER (%%) are left out, listed")
    args = parser.parse_args(argv)
    sweeps = [json.loads(path.read_text()) for path in args.sweeps]
    sweep = sweeps[0]
    for other in sweeps[1:]:
        if (other["checkpoint"], other["test_items"]) != (sweep["checkpoint"], sweep["test_items"]):
            parser.error("the sweeps must be of the same checkpoint and test clips")
    lines, left_out = [], []
    for row in (row for other in sweeps for row in other["rows"]):
        label = row["name"]
        for calibration, words in CALIBRATIONS.items():
            label = label.replace(calibration, words)
        if "shared" in label and not row["shared_layers"]:
            label += " (none formed)"
        if not row["low_rank_layers"]:
            label += " (every layer dense)"
        if 100 * row["wer"] > args.max_wer:
            left_out.append(f"{label} ({100 * row['wer']:.0f} %)")
            continue
        index = len(lines)
        lines.append(Line(label=label, points=((row["time_ratio"], 100 * row["wer"]),), colour=colour(index),
                          marker=marker(index), draw_line=False))
    title = f"Whisper {sweep['checkpoint']}: WER vs encoder time, {sweep['test_items']} test clips"
    svg = line_chart(lines, title=title, x_label="encoder time on a 30-s window (dense = 1)", y_label="WER %",
                     kind="lowrank-curve", references=[Reference("dense", 100 * sweep["dense_wer"]),
                                                       Reference("dense time", 1.0, axis="x")])
    svg = svg.replace(">", ">" + STYLE, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(svg + "\n")
    print(f"wrote {args.out} ({len(lines)} points); off the chart (WER > {args.max_wer:g} %): {'; '.join(left_out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
