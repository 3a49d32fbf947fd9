"""Model adapters: compress audio tokens inside real speech LLMs built from stock transformers classes.

    model, processor = samp.models.load("path/to/checkpoint")
    adapter = samp.models.adapter_for(model, processor)
    result = adapter.generate([waveform], "<|audio_bos|><|AUDIO|><|audio_eos|>Transcribe:", method="samp",
                              keep_ratio=0.6, max_new_tokens=64, do_sample=False)
    result.texts, result.audio_tokens, result.timings
    # prune inside the LLM (FastV) what Samp kept after the projector:
    adapter.generate([waveform], prompt, method="samp", keep_ratio=0.6,
                     llm_pruning=samp.models.LLMPruning("fastv", keep_ratio=0.5, layer=2))

Whisper (encoder-decoder: the encoder states are compressed; ``prompt`` is its optional previous-text prompt; a
CTranslate2 ``model.bin`` directory loads as ``WhisperForConditionalGeneration``):

    model, processor = samp.models.load(samp.realspeech.whisper_checkpoint("tiny.en"))
    result = samp.models.adapter_for(model, processor).generate([waveform], language=None, method="uniform",
                                                                keep_ratio=0.4, window="speech")
"""
from samp.models.base import Adapter, AudioTokens, GenerationResult, KeptAudio, PromptInputs, SpeechProcessor, Timings
from samp.models.llm_pruning import LLMPruning
from samp.models.registry import adapter_class, adapter_for, load

__all__ = [
    "Adapter", "AudioTokens", "GenerationResult", "KeptAudio", "LLMPruning", "PromptInputs", "SpeechProcessor",
    "Timings", "adapter_class", "adapter_for", "load",
]
