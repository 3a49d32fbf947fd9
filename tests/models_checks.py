"""Checks shared by the per-family adapter tests."""
import torch


def stock_new_tokens(model, processor, prompt, wave, **generate_kwargs):
    """The new tokens of the model's own ``generate`` on what its stock processor makes of ``prompt`` and ``wave``."""
    inputs = processor(text=prompt, audio=wave, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, **generate_kwargs)
    return out[:, inputs["input_ids"].shape[1]:]


def audio_logit_shift(model, adapter, prompt, wave) -> float:
    """Largest change of the last position's logits when the audio rows are zeroed: a tiny model that ignores its
    audio would make every equivalence test vacuous."""
    tokens = adapter.encode([wave])
    n = int(tokens.lengths[0])
    inputs = adapter.build_inputs(prompt, [n])
    rows = adapter._scatter_rows(inputs, [tokens.features[0, :n]])
    with torch.no_grad():
        embeds = model.get_input_embeddings()(inputs.input_ids)
        logits = [
            model(inputs_embeds=torch.where(inputs.audio_rows[..., None], audio, embeds),
                  attention_mask=inputs.attention_mask).logits[0, -1]
            for audio in (rows, torch.zeros_like(rows))
        ]
    return float((logits[0] - logits[1]).abs().max())
