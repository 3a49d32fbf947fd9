"""Which adapter serves which model class, and loading a checkpoint directory."""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

from samp.models.base import Adapter

# model class name → "module:AdapterClass"; imported lazily so a family missing from the installed
# transformers never breaks the others
_ADAPTERS = {
    "Qwen2AudioForConditionalGeneration": "samp.models.qwen2_audio:Qwen2AudioAdapter",
    "GlmAsrForConditionalGeneration": "samp.models.glm_asr:GlmAsrAdapter",
    "KimiAudioLite": "samp.models.kimi:KimiAudioAdapter",
    "VoxtralForConditionalGeneration": "samp.models.voxtral:VoxtralAdapter",
    "AudioFlamingo3ForConditionalGeneration": "samp.models.audioflamingo3:AudioFlamingo3Adapter",
    "Qwen3ASRForConditionalGeneration": "samp.models.qwen3_asr:Qwen3AsrAdapter",
    "WhisperForConditionalGeneration": "samp.models.whisper:WhisperAdapter",
}


def supported_model_classes() -> tuple[str, ...]:
    return tuple(_ADAPTERS)


def adapter_for(model: nn.Module, processor: Any) -> Adapter:
    """The adapter for ``model``'s class (exact class or a subclass of a supported one)."""
    if type(model).__name__ == "GlmasrModel":
        raise ValueError(
            "GLM-ASR's remote-code GlmasrModel (transformers <= 4.52) is not supported: samp serves the native "
            "GlmAsrForConditionalGeneration of transformers >= 5.0 (load the checkpoint without trust_remote_code)"
        )
    for cls in type(model).__mro__:
        target = _ADAPTERS.get(cls.__name__)
        if target is not None:
            module_name, class_name = target.split(":")
            return getattr(importlib.import_module(module_name), class_name)(model, processor)
    raise ValueError(
        f"no samp adapter for {type(model).__name__} (transformers {transformers.__version__}); "
        f"supported: {', '.join(_ADAPTERS)}"
    )


def _checkpoint_config(model_dir: Path) -> tuple[Path, dict]:
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{model_dir} has no config.json: not a model checkpoint directory")
    try:
        raw = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path} is not valid JSON: {error}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{config_path} is not a JSON object")
    return config_path, raw


def adapter_class(model_dir: str | Path) -> type[Adapter]:
    """The adapter class that will serve the checkpoint in ``model_dir``, read from its ``config.json`` alone (no
    weights load), so options that depend on the model family are checked before the expensive load."""
    from samp.models.ctranslate2_whisper import looks_like_ctranslate2

    config_path, raw = _checkpoint_config(Path(model_dir))
    if looks_like_ctranslate2(model_dir):
        name = "WhisperForConditionalGeneration"
    elif "kimia_adaptor_input_dim" in raw:
        name = "KimiAudioLite"
    else:
        architectures = raw.get("architectures") or []
        name = next((a for a in architectures if a in _ADAPTERS), None)
        if name is None:
            raise ValueError(
                f"{config_path} declares architectures {architectures}; samp supports {', '.join(_ADAPTERS)}"
            )
    module_name, class_name = _ADAPTERS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def load(model_dir: str | Path, *, dtype=None, device: str | None = None, attn_implementation: str = "sdpa"):
    """``(model, processor)`` from a local checkpoint directory, with the stock classes (no remote code).

    The processor comes from ``model_dir/processor`` when that folder exists, else from ``model_dir``. A Kimi-Audio
    checkpoint (``kimia_*`` config fields) loads as :class:`samp.models.kimi.KimiAudioLite`; a CTranslate2 Whisper
    directory (``model.bin``) as ``WhisperForConditionalGeneration`` (:mod:`samp.models.ctranslate2_whisper`)."""
    model_dir = Path(model_dir)
    from samp.models.ctranslate2_whisper import load_ctranslate2_whisper, looks_like_ctranslate2

    if looks_like_ctranslate2(model_dir):
        return load_ctranslate2_whisper(model_dir, dtype=dtype, device=device, attn_implementation=attn_implementation)
    config_path, raw = _checkpoint_config(model_dir)
    if "kimia_adaptor_input_dim" in raw:  # Kimi-Audio: never a transformers class; samp's stock-class composition
        from samp.models.kimi import load_kimi_audio

        return load_kimi_audio(model_dir, dtype=dtype or torch.float32)
    architectures = raw.get("architectures") or []
    if getattr(transformers, "AutoProcessor", None) is None:
        raise ValueError(f"transformers {transformers.__version__} has no AutoProcessor")
    name = next((a for a in architectures if a in _ADAPTERS), None)
    if name is None:
        raise ValueError(
            f"{config_path} declares architectures {architectures}; samp supports {', '.join(_ADAPTERS)}"
        )
    cls = getattr(transformers, name, None)
    if cls is None:
        raise ValueError(f"transformers {transformers.__version__} has no {name}; install a version that has it")
    kwargs = {"attn_implementation": attn_implementation}
    if dtype is not None:
        kwargs["dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"] = dtype
    model = cls.from_pretrained(model_dir, **kwargs).eval()
    if device is not None:
        model = model.to(device)
    processor_dir = model_dir / "processor" if (model_dir / "processor").is_dir() else model_dir
    processor = transformers.AutoProcessor.from_pretrained(processor_dir)
    return model, processor
