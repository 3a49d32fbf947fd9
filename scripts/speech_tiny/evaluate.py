"""Greedy WER of a saved tiny speech model on a manifest, through the real processor and stock generate.

    python scripts/speech_tiny/evaluate.py --model fixtures/speech_tiny/model \
        --manifest fixtures/speech_tiny/test/manifest.jsonl [--style plain|chat|question_first]

This is the fixture's own check, independent of samp's adapters; `samp eval ... --method base` is the project's.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train  # noqa: E402


def prompt_for(processor, question: str, style: str) -> str:
    if style == "plain":
        return train.AUDIO_PROMPT + question
    if style == "question_first":
        return question + train.AUDIO_PROMPT
    if style == "chat":
        return processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "audio", "audio_url": "x.wav"}, {"type": "text", "text": question}]}],
            add_generation_prompt=True, tokenize=False)
    raise ValueError(f"unknown prompt style {style!r}: expected plain, chat or question_first")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--style", default="plain", choices=["plain", "chat", "question_first"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="only the first N utterances")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    model = Qwen2AudioForConditionalGeneration.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    audio, references, questions = train.load_manifest(args.manifest)
    if args.limit is not None:
        audio, references, questions = audio[: args.limit], references[: args.limit], questions[: args.limit]
    if len(set(questions)) != 1:
        raise ValueError("evaluate.py batches one prompt: the manifest has several questions")
    start = time.time()
    hypotheses = train.transcribe(model, processor, audio, prompt_for(processor, questions[0], args.style))
    wer = train.word_error_rate(references, hypotheses)
    wrong = [(r, h) for r, h in zip(references, hypotheses) if r != h]
    print(json.dumps({"utterances": len(references), "style": args.style, "wer": round(wer, 5),
                      "wrong_utterances": len(wrong), "seconds": round(time.time() - start, 1)}))
    for reference, hypothesis in wrong[:10]:
        print(f"  ref: {reference}\n  hyp: {hypothesis}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
