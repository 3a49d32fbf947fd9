"""Checks shared by the per-family adapter tests."""
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from samp.models.llm_pruning import find_decoder


def stock_new_tokens(model, processor, prompt, wave, **generate_kwargs):
    """The new tokens of the model's own ``generate`` on what its stock processor makes of ``prompt`` and ``wave``."""
    inputs = processor(text=prompt, audio=wave, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, **generate_kwargs)
    return out[:, inputs["input_ids"].shape[1]:]


def audio_prefill(model, adapter, prompt, wave):
    """``(inputs, audio rows scattered to prompt length, prompt embeddings)`` of one utterance, uncompressed."""
    tokens = adapter.encode([wave])
    n = int(tokens.lengths[0])
    inputs = adapter.build_inputs(prompt, [n])
    rows = adapter._scatter_rows(inputs, [tokens.features[0, :n]])
    with torch.no_grad():
        embeds = model.get_input_embeddings()(inputs.input_ids)
    return inputs, rows, embeds


def embedded(model, ids):
    with torch.no_grad():
        return model.get_input_embeddings()(ids)


def reference_logits(model, embeds, layer, kept_prompt, prompt_length):
    """No cache: every token through layers < ``layer``, the kept prompt positions and every later token after."""
    decoder = find_decoder(model)
    hidden, positions = embeds, torch.arange(embeds.shape[1])[None]
    keep = torch.cat([kept_prompt, torch.arange(prompt_length, embeds.shape[1])])
    for index, block in enumerate(decoder.layers):
        if index == layer:
            hidden, positions = hidden[:, keep], positions[:, keep]
        size = hidden.shape[1]
        mask = torch.full((size, size), torch.finfo(hidden.dtype).min).triu(1)[None, None]
        out = block(hidden, attention_mask=mask, position_ids=positions,
                    position_embeddings=decoder.rotary_emb(hidden, positions))
        hidden = out[0] if isinstance(out, tuple) else out
    return model.get_output_embeddings()(decoder.norm(hidden))


def audio_logit_shift(model, adapter, prompt, wave) -> float:
    """Largest change of the last position's logits when the audio rows are zeroed: a tiny model that ignores its
    audio would make every equivalence test vacuous."""
    inputs, rows, embeds = audio_prefill(model, adapter, prompt, wave)
    with torch.no_grad():
        logits = [
            model(inputs_embeds=torch.where(inputs.audio_rows[..., None], audio, embeds),
                  attention_mask=inputs.attention_mask).logits[0, -1]
            for audio in (rows, torch.zeros_like(rows))
        ]
    return float((logits[0] - logits[1]).abs().max())


def save_kimi_checkpoint(adapter, directory: Path) -> Path:
    """Write a tiny Kimi-Audio adapter's model in the official checkpoint layout (the audio-output head included,
    which samp ignores), as ``samp.models.load`` reads it."""
    model = adapter.model
    trunk_state = {k: v.contiguous() for k, v in model.trunk.state_dict().items()}
    trunk_state["mimo_output.weight"] = torch.zeros(400, 64)
    trunk_state.update({f"model.vq_adaptor.layers.{k}": v for k, v in model.adaptor.state_dict().items()})
    directory.mkdir(parents=True, exist_ok=True)
    save_file(trunk_state, directory / "model.safetensors")
    config = model.trunk.config.to_dict() | {"kimia_adaptor_input_dim": 128, "kimia_token_offset": 310}
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "whisper").mkdir(exist_ok=True)
    model.whisper.config.save_pretrained(directory / "whisper")
    save_file({k: v.contiguous() for k, v in model.whisper.state_dict().items()},
              directory / "whisper" / "model.safetensors")
    adapter.tokenizer.save_pretrained(directory)
    return directory

