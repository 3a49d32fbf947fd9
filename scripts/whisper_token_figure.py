"""One real utterance's Whisper encoder frames, which of them each method kept or merged, drawn over its log-mel
spectrogram, with the transcript each compressed encoding gave (tiny.en, greedy), drawn as SVG and kept as a PNG
screenshot taken by Debian's chromium (the README's picture, docs/whisper-token-assignment.png).

    .venv/bin/python scripts/whisper_token_figure.py --out docs/whisper-token-assignment.png [--keep-ratio 0.25]

The utterance is PocketSphinx-en's LibriVox clip (``--key``), from the installed pocketsphinx-testdata package
(scripts/bootstrap.sh); nothing is downloaded.
"""
from __future__ import annotations

import argparse
import html
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import samp
import samp.models
from samp.bench.svg import PALETTE
from samp.eval.audio import read_audio
from samp.eval.datasets import get_dataset
from samp.eval.manifest import load_manifest
from samp.eval.prepare import prepare_packaged
from samp.realspeech import whisper_checkpoint

METHODS = ("uniform", "random", "samp", "vispruner", "cdpruner", "fastadasp", "atome-merge", "divprune", "dart")
CELL = 4  # pixels per encoder frame (20 ms)
MEL_ROWS = 40  # mel bins drawn (pairs of the 80 averaged)
LABEL_WIDTH = 130
TEXT_CHARACTERS = 150  # a looping transcript is cut here


def assignment_of(adapter, tokens, method: str, keep_ratio: float) -> list[int]:
    """The slot of every speech frame of utterance 0 (-1: pruned), as the adapter's compression computes it."""
    spec = samp.methods.get(method)
    stats = None
    if spec.needs_attention:
        stats = tokens.attention.stats(tokens.lengths, tokens.frames_per_token, with_keys=spec.needs_keys,
                                       tokens=tokens.features.shape[1])
    out = samp.compress(tokens.features, tokens.lengths, method=method, keep_ratio=keep_ratio, attention=stats,
                        frames_per_token=tokens.frames_per_token, seed=0)
    return out.assignment[0, :int(tokens.lengths[0])].tolist()


def spectrogram_cells(mel: np.ndarray, frames: int, top: int) -> list[str]:
    """Rects of the log-mel (``[80, mel frames]``), two mel frames per encoder frame, high bins on top."""
    mel = mel[:, :2 * frames]
    mel = mel.reshape(MEL_ROWS, 80 // MEL_ROWS, frames, 2).mean(axis=(1, 3))
    low, high = np.percentile(mel, [2, 99.5])
    scaled = np.clip((mel - low) / (high - low), 0, 1)
    cells = []
    for row in range(MEL_ROWS):
        for column in range(frames):
            level = int(255 - 235 * scaled[MEL_ROWS - 1 - row, column])
            cells.append(f'<rect x="{LABEL_WIDTH + column * CELL}" y="{top + row * 3}" width="{CELL}" height="3" '
                         f'fill="rgb({level},{level},{min(255, level + 20)})"/>')
    return cells


def strip_cells(assignment: list[int], top: int) -> list[str]:
    """A cell per frame: grey when pruned; kept frames coloured by their slot, neighbouring slots alternating, and a
    black bar under each run of frames merged into one slot."""
    sizes: dict[int, int] = {}
    for slot in assignment:
        if slot >= 0:
            sizes[slot] = sizes.get(slot, 0) + 1
    cells = []
    for position, slot in enumerate(assignment):
        x = LABEL_WIDTH + position * CELL
        fill = "#dddddd" if slot < 0 else PALETTE[slot % 2]
        cells.append(f'<rect x="{x}" y="{top}" width="{CELL}" height="12" fill="{fill}"/>')
        if slot >= 0 and sizes[slot] > 1:
            cells.append(f'<rect x="{x}" y="{top + 13}" width="{CELL}" height="2" fill="#000"/>')
    return cells


def figure(title: str, mel: np.ndarray, frames: int, rows: list[tuple[str, list[int], str]]) -> str:
    width = LABEL_WIDTH + frames * CELL + 20
    spectrogram_top = 44
    strips_top = spectrogram_top + MEL_ROWS * 3 + 14
    row_height = 38
    height = strips_top + row_height * len(rows) + 30
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'),
           f'<rect width="{width}" height="{height}" fill="#fff"/>',
           f'<text x="8" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>',
           ('<text x="8" y="36" fill="#444">one cell per Whisper encoder frame (20 ms); colour: the kept slot a frame '
            'went to (alternating), grey: pruned, black bar: merged with its neighbours into one slot; below each '
            'label the greedy transcript</text>'),
           f'<text x="8" y="{spectrogram_top + MEL_ROWS * 1.5 + 4}">log-mel</text>']
    out += spectrogram_cells(mel, frames, spectrogram_top)
    for second in range(frames // 50 + 1):
        x = LABEL_WIDTH + second * 50 * CELL
        out.append(f'<text x="{x}" y="{spectrogram_top + MEL_ROWS * 3 + 11}" font-size="10" fill="#444">{second} s</text>')
    for i, (label, assignment, text) in enumerate(rows):
        top = strips_top + i * row_height
        out.append(f'<text x="8" y="{top + 11}">{html.escape(label)}</text>')
        out += strip_cells(assignment, top)
        text = text.strip()
        text = text if len(text) <= TEXT_CHARACTERS else text[:TEXT_CHARACTERS] + " …"
        out.append(f'<text x="{LABEL_WIDTH}" y="{top + 29}" font-size="11" fill="#222">“{html.escape(text)}”</text>')
    out.append("</svg>")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--svg", type=Path, default=None, help="also keep the SVG here (about 1 MB)")
    parser.add_argument("--keep-ratio", type=float, default=0.25)
    parser.add_argument("--key", default="librivox/sense_and_sensibility_01_austen_64kb-0890", help="PocketSphinx-en item key (meta.key) to draw")
    args = parser.parse_args(argv)
    samp.methods.check_options("samp", args.keep_ratio, 0.85, "samp")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        split = prepare_packaged(get_dataset("PocketSphinx-en"), None, scratch).manifest
        items = [item for item in load_manifest(split) if item.meta.get("key") == args.key]
        if not items:
            keys = [item.meta.get("key") for item in load_manifest(split)]
            raise SystemExit(f"no PocketSphinx-en item with key {args.key!r}; keys: {', '.join(map(str, keys))}")
        audio = read_audio(items[0].audio_paths[0], 16000)
    reference = items[0].answer
    model, processor = samp.models.load(whisper_checkpoint("tiny.en"), device="cpu")
    adapter = samp.models.adapter_for(model, processor)
    tokens = adapter.encode([audio], attention=True)
    frames = int(tokens.lengths[0])
    mel = processor.feature_extractor([audio], sampling_rate=16000, return_tensors="np").input_features[0]
    rows = [("base (all frames)", list(range(frames)), adapter.generate([audio], method="base", keep_ratio=1.0).texts[0])]
    for method in METHODS:
        text = adapter.generate([audio], method=method, keep_ratio=args.keep_ratio).texts[0]
        rows.append((method, assignment_of(adapter, tokens, method, args.keep_ratio), text))
    kept = samp.keep_count(frames, args.keep_ratio)
    for label, assignment, _ in rows[1:]:
        assert len({s for s in assignment if s >= 0}) == kept, label
    title = (f"Whisper tiny.en, keep {args.keep_ratio:g} of {frames} speech frames ({kept} kept): "
             f"LibriVox “{reference}”")
    svg = figure(title, mel, frames, rows)
    if args.svg is not None:
        args.svg.parent.mkdir(parents=True, exist_ok=True)
        args.svg.write_text(svg, encoding="utf-8")
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not installed (scripts/bootstrap.sh installs it), so no PNG", file=sys.stderr)
        return 2
    width, height = (int(v) for v in svg.split('viewBox="0 0 ')[1].split('"')[0].split())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        svg_path = Path(scratch) / "figure.svg"
        svg_path.write_text(svg, encoding="utf-8")
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={Path(scratch) / 'profile'}", f"--window-size={width},{height}",
                        "--force-device-scale-factor=1", f"--screenshot={args.out.resolve()}",
                        svg_path.as_uri()], check=True, capture_output=True, timeout=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
