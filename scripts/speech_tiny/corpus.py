"""Seeded synthetic speech corpus for the tiny speech LLM fixture (espeak-ng, 16 kHz, 16-bit mono).

Every utterance is a pure function of (split, index, seed, espeak-ng version): the sentence, voice, speed, pitch
and noise come from a numpy generator seeded with (seed, split id, index), so any single utterance can be rebuilt
without the others (the determinism tests do exactly that).

    python scripts/speech_tiny/corpus.py --out-dir /tmp/speech_tiny_corpus --train 20000 --test 400
    python scripts/speech_tiny/corpus.py --test-only --out-dir fixtures/speech_tiny/test --test 400
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
ESPEAK_RATE = 22050
MAX_SECONDS = 3.0
VOICES = ("en-us", "en-us+f2", "en-us+m3", "en-gb")
SPEED_RANGE = (165, 205)
PITCH_RANGE = (35, 65)
SNR_DB_RANGE = (25.0, 40.0)
WORDS_PER_SENTENCE = (2, 6)
VOCABULARY_SIZE = 120
MIN_PHONEME_DISTANCE = 3
SPLIT_IDS = {"train": 1, "test": 2}
# Espeak's phoneme mnemonics carry stress and syllable marks; they do not make words sound different enough.
PHONEME_MARKS = "',%=_:"
TESTED_ESPEAK_VERSION = "1.51"

# Concrete, common words; the greedy pick below keeps only those whose phoneme strings stay far apart.
CANDIDATE_WORDS = """
apple river seven window garden purple basket thunder yellow orange pencil monkey rocket silver doctor
island camera button jacket ladder magnet number ocean pepper rabbit salad tiger violin wagon zebra
anchor bottle candle dragon engine forest guitar hammer igloo jungle kettle lemon mirror needle oyster
pocket queen robot spider turtle umbrella valley walnut blanket chicken dinner feather glacier harbor
kitten lantern meadow napkin orbit parrot quiet rainbow sandal tunnel velvet whistle banana cactus
desert elephant falcon giraffe helmet iceberg jelly koala lobster mango nickel octopus panda quilt
raccoon saddle tomato unicorn vulture waffle yogurt bridge castle dolphin eagle fountain goblet hockey
insect jigsaw kayak lizard marble noodle onion pillow puzzle shovel trumpet vanilla wizard butter
cookie dentist finger gravel honey ivory jaguar ketchup lettuce muffin nugget olive pirate rocket
sugar tractor uncle village waiter compass mountain statue blossom cherry donkey fabric goose hunter
kingdom ladder mitten nephew parcel radish sponge timber bucket copper diamond envelope freckle
gadget hazel jasmine kernel lemonade mustard nutmeg planet ribbon scooter teapot ukulele vinegar
walrus beetle cobra dagger emerald fossil goggles hurdle jackal kiwi locust mosquito nectar pebble
raven sapphire tulip viper weasel acorn barrel cabin delta fiddle gorilla hatchet juggle lagoon
meteor nozzle pumpkin rhubarb skeleton thistle volcano wombat zipper bamboo crystal dynamo falafel
granite hyena jacuzzi koi lullaby mammoth nimbus opal pretzel quartz robin squirrel toucan
basil chimney domino estate funnel galaxy horizon java legend mosaic nomad pelican riddle sketch
tornado vortex yacht zodiac blue green red black white one two three four five six eight nine ten
""".split()


@dataclass(frozen=True)
class Utterance:
    split: str
    index: int
    text: str
    voice: str
    speed: int
    pitch: int
    snr_db: float
    seconds: float


def espeak_version() -> str:
    """The installed espeak-ng version (e.g. '1.51'); raises a clear error when espeak-ng is missing."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed: apt-get install espeak-ng (scripts/bootstrap.sh does it)")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    # "eSpeak NG text-to-speech: 1.51  Data at: ..."
    return out.split(":", 1)[1].split()[0]


def phonemes(text: str, voice: str = "en-us") -> str:
    """Espeak's ASCII phoneme mnemonics for text, stress marks removed, words separated by one space."""
    out = subprocess.run(["espeak-ng", "-q", "-x", "-v", voice, text], capture_output=True, text=True, check=True)
    cleaned = out.stdout.translate({ord(c): None for c in PHONEME_MARKS})
    return " ".join(cleaned.split())


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def choose_vocabulary(size: int = VOCABULARY_SIZE, min_distance: int = MIN_PHONEME_DISTANCE) -> tuple[str, ...]:
    """Greedily keep candidate words (in list order) whose phoneme strings differ from every kept one by >= min_distance."""
    chosen: list[str] = []
    chosen_phonemes: list[str] = []
    seen: set[str] = set()
    for word in CANDIDATE_WORDS:
        if word in seen:
            continue
        seen.add(word)
        ph = phonemes(word)
        if " " in ph:  # espeak split it into several words: not a single clean token
            continue
        if all(edit_distance(ph, other) >= min_distance for other in chosen_phonemes):
            chosen.append(word)
            chosen_phonemes.append(ph)
        if len(chosen) == size:
            return tuple(chosen)
    raise ValueError(f"only {len(chosen)} candidate words are {min_distance} phoneme edits apart; need {size}")


def _rng(seed: int, split: str, index: int, attempt: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_IDS[split], index, attempt])


def _read_espeak_wav(data: bytes) -> np.ndarray:
    # espeak-ng --stdout writes a streaming header with a bogus length: find the data chunk and take the rest.
    start = data.find(b"data")
    if start < 0:
        raise RuntimeError("espeak-ng produced no WAV data chunk")
    pcm = data[start + 8 :]
    return np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64) / 32768.0


def resample(signal: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling through the real FFT (clips are short, so one transform is cheap and exact enough)."""
    n = len(signal)
    m = int(round(n * target_rate / source_rate))
    spectrum = np.fft.rfft(signal)
    keep = min(len(spectrum), m // 2 + 1)
    return np.fft.irfft(spectrum[:keep], n=m) * (m / n)


def trim_silence(signal: np.ndarray, threshold: float = 0.01, margin_seconds: float = 0.05) -> np.ndarray:
    loud = np.flatnonzero(np.abs(signal) > threshold)
    if loud.size == 0:
        raise RuntimeError("espeak-ng produced silence")
    margin = int(margin_seconds * SAMPLE_RATE)
    return signal[max(loud[0] - margin, 0) : loud[-1] + margin + 1]


def synthesize(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """Espeak-ng speech for text at 16 kHz, float in [-1, 1], silence trimmed."""
    out = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, "-s", str(speed), "-p", str(pitch), text],
        capture_output=True, check=True,
    ).stdout
    return trim_silence(resample(_read_espeak_wav(out), ESPEAK_RATE, SAMPLE_RATE))


def make_utterance(
    split: str, index: int, vocabulary: tuple[str, ...], seed: int = 0, exclude: frozenset[str] = frozenset()
) -> tuple[Utterance, np.ndarray]:
    """The index-th utterance of a split: its description and 16-bit samples. Redraws until the clip fits 3 s."""
    for attempt in range(100):
        rng = _rng(seed, split, index, attempt)
        n_words = int(rng.integers(WORDS_PER_SENTENCE[0], WORDS_PER_SENTENCE[1] + 1))
        text = " ".join(vocabulary[i] for i in rng.integers(0, len(vocabulary), n_words))
        voice = VOICES[int(rng.integers(0, len(VOICES)))]
        speed = int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1))
        pitch = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
        snr_db = float(np.round(rng.uniform(*SNR_DB_RANGE), 2))
        noise = rng.standard_normal(int(MAX_SECONDS * SAMPLE_RATE))
        if text in exclude:
            continue
        clean = synthesize(text, voice, speed, pitch)
        if len(clean) > MAX_SECONDS * SAMPLE_RATE:
            continue
        signal_power = float(np.mean(clean**2))
        noisy = clean + noise[: len(clean)] * np.sqrt(signal_power / 10 ** (snr_db / 10))
        peak = np.max(np.abs(noisy))
        if peak > 0.99:  # keep headroom instead of clipping
            noisy = noisy * (0.99 / peak)
        pcm = np.round(noisy * 32767).astype(np.int16)
        return Utterance(split, index, text, voice, speed, pitch, snr_db, round(len(pcm) / SAMPLE_RATE, 4)), pcm
    raise RuntimeError(f"{split} utterance {index}: no sentence fit {MAX_SECONDS} s in 100 attempts")


def write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.astype("<i2").tobytes())


def read_wav(path: Path) -> np.ndarray:
    """16-bit mono 16 kHz WAV as int16 samples; anything else is a ValueError."""
    with wave.open(str(path), "rb") as w:
        if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, SAMPLE_RATE):
            raise ValueError(f"{path}: expected mono 16-bit {SAMPLE_RATE} Hz WAV")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def _parallel(fn, indices, workers: int):
    with ThreadPoolExecutor(max_workers=workers) as pool:  # the work is in espeak-ng subprocesses
        yield from pool.map(fn, indices)


def build_test_set(out_dir: Path, count: int, vocabulary, seed: int, question: str, workers: int = 2) -> list[Utterance]:
    """WAVs + manifest.jsonl in samp's manifest format (audio paths relative to the manifest)."""
    audio_dir = out_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    utterances = []
    with open(out_dir / "manifest.jsonl", "w") as manifest:
        for utt, pcm in _parallel(lambda i: make_utterance("test", i, vocabulary, seed), range(count), workers):
            name = f"audio/test_{utt.index:04d}.wav"
            write_wav(out_dir / name, pcm)
            meta = {k: v for k, v in asdict(utt).items() if k not in ("text", "index")}
            record = {"index": utt.index, "audio_path": name, "question": question, "answer": utt.text,
                      "subset": "speech_tiny", "meta": meta}
            manifest.write(json.dumps(record) + "\n")
            utterances.append(utt)
    return utterances


def build_train_set(out_dir: Path, count: int, vocabulary, seed: int, exclude: frozenset[str], workers: int = 2):
    """Training audio as one int16 array + offsets (npz) and the texts: compact, and fast to featurise."""
    from tqdm import tqdm

    pieces, texts, meta = [], [], []
    for utt, pcm in tqdm(_parallel(lambda i: make_utterance("train", i, vocabulary, seed, exclude), range(count), workers),
                         total=count, desc="train utterances", mininterval=10):
        pieces.append(pcm)
        texts.append(utt.text)
        meta.append(asdict(utt))
    offsets = np.cumsum([0] + [len(p) for p in pieces])
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "train_audio.npz", samples=np.concatenate(pieces), offsets=offsets)
    with open(out_dir / "train.jsonl", "w") as f:
        for m in meta:
            f.write(json.dumps(m) + "\n")


DEFAULT_QUESTION = "Transcribe the speech."


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--train", type=int, default=20000, help="training utterances")
    parser.add_argument("--test", type=int, default=400, help="held-out test utterances")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--test-only", action="store_true", help="write only the test set (into --out-dir)")
    parser.add_argument("--question", default=DEFAULT_QUESTION)
    args = parser.parse_args(argv)

    version = espeak_version()
    if version != TESTED_ESPEAK_VERSION:
        print(f"warning: espeak-ng {version}, the committed fixture was made with {TESTED_ESPEAK_VERSION}: "
              "audio will differ", file=sys.stderr)
    vocabulary = choose_vocabulary()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    info = {"espeak_ng_version": version, "seed": args.seed, "vocabulary": list(vocabulary),
            "train": 0 if args.test_only else args.train, "test": args.test}
    test = build_test_set(args.out_dir if args.test_only else args.out_dir / "test", args.test, vocabulary,
                          args.seed, args.question, args.workers)
    if not args.test_only:
        build_train_set(args.out_dir, args.train, vocabulary, args.seed,
                        frozenset(u.text for u in test), args.workers)
    with open(args.out_dir / "corpus.json", "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps({k: v for k, v in info.items() if k != "vocabulary"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
