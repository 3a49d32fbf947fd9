"""Train the tiny Qwen2-Audio speech LLM of fixtures/speech_tiny/model on the synthetic corpus (seeded, CPU).

Stage 1: audio encoder + projector with word CTC plus an auxiliary phoneme CTC (word CTC alone plateaus).
Stage 2: encoder frozen and cached once; projector + LM + lm_head with next-token cross-entropy (+ word CTC).
Schedules are step-based (linear warm-up, cosine decay), so a rerun with the same arguments repeats the run.

    python scripts/speech_tiny/corpus.py --out-dir /tmp/st/corpus
    python scripts/speech_tiny/train.py --corpus /tmp/st/corpus --work-dir /tmp/st/work --out fixtures/speech_tiny/model

The committed model used two stage-1 cycles (the second one with --stage1-init); fixtures/speech_tiny/README.md has
the exact commands and timings.
"""
from __future__ import annotations

import os

# Busy-waiting OpenMP threads fight the other processes on a shared 2-core box; this is a training-script tweak only.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2AudioConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    WhisperFeatureExtractor,
)
from transformers.masking_utils import create_bidirectional_mask

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus as corpus_lib  # noqa: E402

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>")
UNK = "[UNK]"
# Words of the instruction and of the processor's default chat template, so either prompt style tokenizes cleanly.
PROMPT_WORDS = ("transcribe", "the", "speech", ".", "system", "you", "are", "a", "helpful", "assistant", "user",
                "audio", "1", ":")
CHUNK_SECONDS = 3
AUDIO_PROMPT = "<|audio_bos|><|AUDIO|><|audio_eos|>"
# Prompt styles seen in stage 2 and how often: plain (the Qwen2-Audio base style), chat template, question first.
PROMPT_STYLE_WEIGHTS = {"plain": 0.5, "chat": 0.35, "question_first": 0.15}


@dataclass(frozen=True)
class StageSchedule:
    steps: int
    batch_size: int
    peak_lr: float
    warmup_steps: int
    final_lr_fraction: float = 0.05

    def lr(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(self.steps - self.warmup_steps, 1)
        cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return self.peak_lr * (self.final_lr_fraction + (1 - self.final_lr_fraction) * cosine)


def build_tokenizer(vocabulary) -> PreTrainedTokenizerFast:
    """Word-level tokenizer: special tokens, [UNK], prompt words, then the spoken vocabulary (lower-cased input)."""
    tokens = list(SPECIAL_TOKENS) + [UNK]
    for word in list(PROMPT_WORDS) + list(vocabulary):
        if word not in tokens:
            tokens.append(word)
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token=UNK))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, model_input_names=["input_ids", "attention_mask"], unk_token=UNK,
        pad_token="<|endoftext|>", eos_token="<|endoftext|>", padding_side="left",
    )


def build_processor(tokenizer) -> Qwen2AudioProcessor:
    extractor = WhisperFeatureExtractor(feature_size=128, chunk_length=CHUNK_SECONDS, sampling_rate=16000,
                                        hop_length=160, n_fft=400, return_attention_mask=True)
    return Qwen2AudioProcessor(feature_extractor=extractor, tokenizer=tokenizer)


def build_model(tokenizer, seed: int) -> Qwen2AudioForConditionalGeneration:
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2AudioConfig(
        audio_config=dict(model_type="qwen2_audio_encoder", d_model=128, encoder_layers=3, encoder_attention_heads=4,
                          encoder_ffn_dim=512, num_mel_bins=128, max_source_positions=CHUNK_SECONDS * 50,
                          dropout=0.0, attention_dropout=0.0, activation_dropout=0.0),
        text_config=dict(model_type="qwen2", vocab_size=len(tokenizer), hidden_size=192, intermediate_size=512,
                         num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, eos_token_id=eos, pad_token_id=eos, bos_token_id=eos,
                         tie_word_embeddings=False),
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config)
    model.generation_config.eos_token_id = [eos, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    model.generation_config.pad_token_id = eos
    model.generation_config.bos_token_id = eos
    model.generation_config.do_sample = False
    model.generation_config.max_new_tokens = 12
    return model


def encoder_mask(tower, feature_lengths: torch.Tensor) -> torch.Tensor:
    """The key-padding mask the stock Qwen2AudioModel.forward builds for its encoder (training must match inference)."""
    frames = (feature_lengths - 1) // 2 + 1
    max_frames = tower.config.max_source_positions
    mask_2d = (torch.arange(max_frames)[None, :] < frames[:, None]).long()
    dummy = torch.zeros(len(feature_lengths), max_frames, 1)
    return create_bidirectional_mask(config=tower.config, inputs_embeds=dummy, attention_mask=mask_2d)


def token_counts(feature_lengths: torch.Tensor) -> torch.Tensor:
    return ((feature_lengths - 1) // 2 + 1 - 2) // 2 + 1


def load_corpus(corpus_dir: Path):
    data = np.load(corpus_dir / "train_audio.npz")
    samples, offsets = data["samples"], data["offsets"]
    with open(corpus_dir / "train.jsonl") as f:
        texts = [json.loads(line)["text"] for line in f]
    audio = [samples[offsets[i] : offsets[i + 1]].astype(np.float32) / 32768.0 for i in range(len(texts))]
    return audio, texts


def load_manifest(manifest: Path):
    audio, texts, questions = [], [], []
    with open(manifest) as f:
        for line in f:
            rec = json.loads(line)
            audio.append(corpus_lib.read_wav(manifest.parent / rec["audio_path"]).astype(np.float32) / 32768.0)
            texts.append(rec["answer"])
            questions.append(rec["question"])
    return audio, texts, questions


def featurize(extractor, audio, batch_size: int = 256):
    """Log-mel features [N,128,300] (float16 to halve memory) and valid frame counts [N], exactly as the processor."""
    from tqdm import tqdm

    feats, lengths = [], []
    for start in tqdm(range(0, len(audio), batch_size), desc="features", mininterval=10):
        out = extractor(audio[start : start + batch_size], sampling_rate=16000, padding="max_length",
                        return_attention_mask=True, return_tensors="pt")
        feats.append(out["input_features"].half())
        lengths.append(out["attention_mask"].sum(-1))
    return torch.cat(feats), torch.cat(lengths)


def ctc_loss(logits: torch.Tensor, lengths: torch.Tensor, targets: list[list[int]]) -> torch.Tensor:
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)
    flat = torch.tensor([t for seq in targets for t in seq], dtype=torch.long)
    target_lengths = torch.tensor([len(seq) for seq in targets], dtype=torch.long)
    return F.ctc_loss(log_probs, flat, lengths, target_lengths, blank=0, zero_infinity=True)


def ctc_greedy(logits: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    best = logits.argmax(-1)
    decoded = []
    for row, n in zip(best, lengths):
        seq, previous = [], 0
        for t in row[: int(n)].tolist():
            if t != previous and t != 0:
                seq.append(t)
            previous = t
        decoded.append(seq)
    return decoded


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    return float(jiwer.wer(references, hypotheses))


class CtcHeads(torch.nn.Module):
    """Training-only heads (not part of the saved model): word CTC on projector outputs, phoneme CTC on the encoder."""

    def __init__(self, text_hidden: int, audio_hidden: int, n_words: int, n_phonemes: int):
        super().__init__()
        self.words = torch.nn.Linear(text_hidden, n_words + 1)
        self.phonemes = torch.nn.Linear(audio_hidden, n_phonemes + 1)


def batches(n_items: int, batch_size: int, steps: int, seed: int):
    """Step-indexed batches over seeded epoch permutations."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n_items, generator=generator)
    cursor = 0
    for _ in range(steps):
        if cursor + batch_size > n_items:
            order, cursor = torch.randperm(n_items, generator=generator), 0
        yield order[cursor : cursor + batch_size]
        cursor += batch_size


def set_lr(optimizer, lr: float):
    for group in optimizer.param_groups:
        group["lr"] = lr


def run_stage1(model, heads, feats, feat_lens, word_targets, phone_targets, schedule: StageSchedule, seed: int, log):
    tower, projector = model.model.audio_tower, model.model.multi_modal_projector
    params = list(tower.parameters()) + list(projector.parameters()) + list(heads.parameters())
    params = [p for p in params if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=schedule.peak_lr, weight_decay=0.01)
    tower.train()
    start = time.time()
    for step, idx in enumerate(batches(len(feats), schedule.batch_size, schedule.steps, seed)):
        set_lr(optimizer, schedule.lr(step))
        lens = feat_lens[idx]
        n_tok = token_counts(lens)
        encoded = tower(feats[idx].float(), attention_mask=encoder_mask(tower, lens)).last_hidden_state
        projected = projector(encoded)
        word_loss = ctc_loss(heads.words(projected), n_tok, [word_targets[i] for i in idx.tolist()])
        phone_loss = ctc_loss(heads.phonemes(encoded), n_tok, [phone_targets[i] for i in idx.tolist()])
        loss = word_loss + 0.5 * phone_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % 50 == 0 or step == schedule.steps - 1:
            log(f"stage1 step {step} word_ctc {word_loss.item():.3f} phone_ctc {phone_loss.item():.3f} "
                f"lr {schedule.lr(step):.2e} {time.time() - start:.0f}s")
    tower.eval()
    return time.time() - start


@torch.no_grad()
def encode_all(model, feats, feat_lens, batch_size: int = 128) -> torch.Tensor:
    tower = model.model.audio_tower
    out = []
    for start in range(0, len(feats), batch_size):
        lens = feat_lens[start : start + batch_size]
        out.append(tower(feats[start : start + batch_size].float(), attention_mask=encoder_mask(tower, lens))
                   .last_hidden_state)
    return torch.cat(out)


@torch.no_grad()
def ctc_wer(model, heads, encoded, feat_lens, texts, id_to_word) -> float:
    logits = heads.words(model.model.multi_modal_projector(encoded))
    decoded = ctc_greedy(logits, token_counts(feat_lens))
    return word_error_rate(texts, [" ".join(id_to_word[t] for t in seq) for seq in decoded])


def prompt_templates(processor, question: str) -> dict[str, tuple[list[int], int]]:
    """Per prompt style: token ids with ONE <|AUDIO|> placeholder, and the end-of-answer token id."""
    tok = processor.tokenizer
    chat = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "audio", "audio_url": "x.wav"}, {"type": "text", "text": question}]}],
        add_generation_prompt=True, tokenize=False)
    texts = {"plain": AUDIO_PROMPT + question, "chat": chat, "question_first": question + AUDIO_PROMPT}
    ends = {"plain": "<|endoftext|>", "chat": "<|im_end|>", "question_first": "<|endoftext|>"}
    return {k: (tok(v)["input_ids"], tok.convert_tokens_to_ids(ends[k])) for k, v in texts.items()}


def run_stage2(model, heads, encoded, feat_lens, answers_ids, word_targets, templates, audio_id: int,
               schedule: StageSchedule, seed: int, log):
    lm, projector, lm_head = model.model.language_model, model.model.multi_modal_projector, model.lm_head
    embed = lm.get_input_embeddings()
    params = list(lm.parameters()) + list(projector.parameters()) + list(lm_head.parameters()) + \
        list(heads.words.parameters())
    optimizer = torch.optim.AdamW(params, lr=schedule.peak_lr, weight_decay=0.01)
    styles = list(PROMPT_STYLE_WEIGHTS)
    style_p = np.array([PROMPT_STYLE_WEIGHTS[s] for s in styles])
    rng = np.random.default_rng(seed)
    n_tok_all = token_counts(feat_lens)
    lm.train()
    start = time.time()
    for step, idx in enumerate(batches(len(encoded), schedule.batch_size, schedule.steps, seed)):
        set_lr(optimizer, schedule.lr(step))
        ids_rows, label_rows, audio_slots = [], [], []
        for i in idx.tolist():
            prefix, end = templates[styles[rng.choice(len(styles), p=style_p)]]
            n = int(n_tok_all[i])
            at = prefix.index(audio_id)
            ids = prefix[:at] + [audio_id] * n + prefix[at + 1 :]
            audio_slots.append((at, n))
            answer = answers_ids[i] + [end]
            label_rows.append([-100] * len(ids) + answer)
            ids_rows.append(ids + answer)
        width = max(len(r) for r in ids_rows)
        input_ids = torch.tensor([r + [0] * (width - len(r)) for r in ids_rows])
        labels = torch.tensor([r + [-100] * (width - len(r)) for r in label_rows])
        attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in ids_rows])
        projected = projector(encoded[idx])
        rows = []
        for b, (at, n) in enumerate(audio_slots):
            e = embed(input_ids[b])
            rows.append(torch.cat([e[:at], projected[b, :n], e[at + n :]]))
        hidden = lm(inputs_embeds=torch.stack(rows), attention_mask=attention).last_hidden_state
        logits = lm_head(hidden)
        ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
        word_loss = ctc_loss(heads.words(projected), n_tok_all[idx], [word_targets[i] for i in idx.tolist()])
        loss = ce + 0.3 * word_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % 50 == 0 or step == schedule.steps - 1:
            log(f"stage2 step {step} ce {ce.item():.4f} word_ctc {word_loss.item():.3f} "
                f"lr {schedule.lr(step):.2e} {time.time() - start:.0f}s")
    lm.eval()
    return time.time() - start


@torch.no_grad()
def transcribe(model, processor, audio, prompt: str, batch_size: int = 50) -> list[str]:
    """Greedy transcripts through the real processor and stock generate (left-padded batches)."""
    hypotheses = []
    for start in range(0, len(audio), batch_size):
        chunk = audio[start : start + batch_size]
        inputs = processor(text=[prompt] * len(chunk), audio=chunk, sampling_rate=16000, return_tensors="pt",
                           padding=True)
        out = model.generate(**inputs, do_sample=False, max_new_tokens=12)
        hypotheses += processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return [h.strip() for h in hypotheses]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="corpus.py output dir (train + test/)")
    parser.add_argument("--work-dir", type=Path, required=True, help="features, checkpoints and the log")
    parser.add_argument("--out", type=Path, required=True, help="where to save the model + processor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-utterances", type=int, default=None, help="use only the first N (default: all)")
    parser.add_argument("--stage1-steps", type=int, default=1500)
    parser.add_argument("--stage2-steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-stage1", action="store_true", help="reuse work-dir/stage1.pt")
    parser.add_argument("--stage1-init", type=Path, default=None,
                        help="start stage 1 from this stage1.pt (a warm restart: a new warm-up/cosine cycle)")
    parser.add_argument("--stage1-peak-lr", type=float, default=2e-3)
    parser.add_argument("--stage1-warmup", type=int, default=150)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    log_file = open(args.work_dir / "train.log", "a")

    def log(msg: str):
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    info = json.loads((args.corpus / "corpus.json").read_text())
    vocabulary = tuple(info["vocabulary"])
    tokenizer = build_tokenizer(vocabulary)
    processor = build_processor(tokenizer)
    model = build_model(tokenizer, args.seed)
    log(f"model parameters {sum(p.numel() for p in model.parameters()):,}; espeak-ng {info['espeak_ng_version']}")

    word_index = {w: i + 1 for i, w in enumerate(vocabulary)}  # 0 is the CTC blank
    word_phonemes = {w: corpus_lib.phonemes(w) for w in vocabulary}
    phone_symbols = sorted({c for p in word_phonemes.values() for c in p} | {" "})
    phone_index = {c: i + 1 for i, c in enumerate(phone_symbols)}
    id_to_word = {i: w for w, i in word_index.items()}

    feature_cache = args.work_dir / "features.pt"
    if feature_cache.exists():
        feats, feat_lens, texts = torch.load(feature_cache)
    else:
        audio, texts = load_corpus(args.corpus)
        feats, feat_lens = featurize(processor.feature_extractor, audio)
        torch.save((feats, feat_lens, texts), feature_cache)
    if args.train_utterances is not None:
        feats, feat_lens, texts = feats[: args.train_utterances], feat_lens[: args.train_utterances], \
            texts[: args.train_utterances]
    log(f"training utterances {len(texts)}")
    word_targets = [[word_index[w] for w in t.split()] for t in texts]
    phone_targets = [[phone_index[c] for c in " ".join(word_phonemes[w] for w in t.split())] for t in texts]

    test_audio, test_texts, questions = load_manifest(args.corpus / "test" / "manifest.jsonl")
    test_feats, test_lens = featurize(processor.feature_extractor, test_audio)
    heads = CtcHeads(192, 128, len(vocabulary), len(phone_symbols))

    stage1_ckpt = args.work_dir / "stage1.pt"
    timings = {}
    if args.skip_stage1:
        state = torch.load(stage1_ckpt)
        model.load_state_dict(state["model"])
        heads.load_state_dict(state["heads"])
    else:
        if args.stage1_init is not None:
            state = torch.load(args.stage1_init)
            model.load_state_dict(state["model"])
            heads.load_state_dict(state["heads"])
            log(f"stage 1 starts from {args.stage1_init}")
        s1 = StageSchedule(args.stage1_steps, args.batch_size, args.stage1_peak_lr, args.stage1_warmup)
        timings["stage1_seconds"] = run_stage1(model, heads, feats, feat_lens, word_targets, phone_targets, s1,
                                               args.seed + (2 if args.stage1_init else 0), log)
        torch.save({"model": model.state_dict(), "heads": heads.state_dict()}, stage1_ckpt)
    model.eval()
    test_encoded = encode_all(model, test_feats, test_lens)
    stage1_wer = ctc_wer(model, heads, test_encoded, test_lens, test_texts, id_to_word)
    log(f"stage1 test CTC WER {stage1_wer:.4f}")

    t0 = time.time()
    encoded = encode_all(model, feats, feat_lens)
    log(f"cached encoder outputs {tuple(encoded.shape)} in {time.time() - t0:.0f}s")
    for p in model.model.audio_tower.parameters():
        p.requires_grad_(False)
    answers_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    templates = prompt_templates(processor, questions[0])
    s2 = StageSchedule(args.stage2_steps, args.batch_size, 1e-3, 100)
    timings["stage2_seconds"] = run_stage2(model, heads, encoded, feat_lens, answers_ids, word_targets, templates,
                                           tokenizer.convert_tokens_to_ids("<|AUDIO|>"), s2, args.seed + 1, log)
    model.eval()
    log(f"stage2 test CTC WER {ctc_wer(model, heads, test_encoded, test_lens, test_texts, id_to_word):.4f}")

    results = {}
    for style, prompt in (("plain", AUDIO_PROMPT + questions[0]),):
        t0 = time.time()
        hyps = transcribe(model, processor, test_audio, prompt)
        results[style] = word_error_rate(test_texts, hyps)
        log(f"greedy WER ({style} prompt) {results[style]:.4f} in {time.time() - t0:.0f}s; e.g. {hyps[:3]}")

    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    summary = {"seed": args.seed, "train_utterances": len(texts), "stage1_steps": args.stage1_steps,
               "stage1_init": str(args.stage1_init) if args.stage1_init else None,
               "stage1_peak_lr": args.stage1_peak_lr, "stage1_warmup": args.stage1_warmup,
               "stage2_steps": args.stage2_steps, "batch_size": args.batch_size, "threads": args.threads,
               "stage1_test_ctc_wer": stage1_wer, "test_greedy_wer": results, **timings,
               "espeak_ng_version": info["espeak_ng_version"]}
    (args.work_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    log(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
