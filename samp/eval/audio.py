"""Reading evaluation audio: any format libsndfile reads (wav, flac, ogg...), mixed to mono, float32 in [-1, 1],
resampled to the rate the model takes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

TARGET_RATE = 16000


def resample(wave: np.ndarray, rate: int, target_rate: int = TARGET_RATE) -> np.ndarray:
    """Band-limited resampling by FFT (zero-padding or truncating the spectrum), for whole utterances."""
    if rate <= 0 or target_rate <= 0:
        raise ValueError(f"sampling rates must be positive, got {rate} -> {target_rate}")
    if rate == target_rate or wave.size == 0:
        return wave.astype(np.float32, copy=False)
    length = max(int(round(wave.size * target_rate / rate)), 1)
    spectrum = np.fft.rfft(wave.astype(np.float64))
    bins = length // 2 + 1
    if bins <= spectrum.size:
        spectrum = spectrum[:bins]
    else:
        spectrum = np.concatenate([spectrum, np.zeros(bins - spectrum.size, dtype=spectrum.dtype)])
    return (np.fft.irfft(spectrum, n=length) * (length / wave.size)).astype(np.float32)


def read_audio(path: str | Path, target_rate: int = TARGET_RATE) -> np.ndarray:
    """Mono float32 waveform at ``target_rate``; a missing or unreadable file is an error naming it."""
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"audio file {path} does not exist")
    try:
        wave, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile raises its own error type for corrupt or unknown formats
        raise ValueError(f"audio file {path} cannot be read: {error}") from None
    if wave.shape[0] == 0:
        raise ValueError(f"audio file {path} has no samples")
    mono = wave.mean(axis=1)
    if not np.isfinite(mono).all():
        raise ValueError(f"audio file {path} contains NaN or infinite samples")
    return resample(mono, rate, target_rate)
