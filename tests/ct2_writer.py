"""Write a transformers ``WhisperForConditionalGeneration`` as a CTranslate2 Whisper checkpoint, for tests only.

Written from the format description (``shared/spec/real-speech.md`` §2), independently of samp's reader, with the
layout the real packaged files have: sorted names, int8/int16 scalar flags, fused q/k/v and cross-attention k/v with
zero key biases, the projection as an alias of the embeddings. ``write_model_bin`` takes the header fields as
arguments so tests can write files samp must refuse.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

DTYPE_CODES = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("int32"): 3,
               np.dtype("float16"): 4}
BFLOAT16 = 5


class BFloat16Bits(np.ndarray):
    """A uint16 array holding bfloat16 bit patterns (numpy has no bfloat16)."""


def bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """The top 16 bits of float32 ``values`` (truncation), tagged so the writer stores dtype code 5."""
    bits = (np.ascontiguousarray(values, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return bits.view(BFloat16Bits)


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_model_bin(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str], *, version: int = 6,
                    spec: str = "WhisperSpec", revision: int = 3) -> Path:
    out = [struct.pack("<I", version), _string(spec), struct.pack("<I", revision), struct.pack("<I", len(variables))]
    for name in sorted(variables, key=lambda n: n.encode()):
        array = variables[name]
        code = BFLOAT16 if isinstance(array, BFloat16Bits) else DTYPE_CODES[array.dtype]
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        out += [_string(name), struct.pack("<B", array.ndim), struct.pack(f"<{array.ndim}I", *array.shape),
                struct.pack("<B", code), struct.pack("<I", len(data)), data]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_string(alias), _string(target)]
    Path(path).write_bytes(b"".join(out))
    return Path(path)


def ct2_variables(model, convert=lambda t: t.detach().float().numpy().astype(np.float16)) -> dict[str, np.ndarray]:
    """CTranslate2 variable name → array for a transformers Whisper (``convert`` sets the stored dtype)."""
    state = {k[len("model."):]: v for k, v in model.state_dict().items() if k.startswith("model.")}
    config = model.config
    variables: dict[str, np.ndarray] = {}

    def put(name, tensor):
        variables[name] = convert(tensor)

    def put_norm(name, prefix):
        put(f"{name}/gamma", state[f"{prefix}.weight"])
        put(f"{name}/beta", state[f"{prefix}.bias"])

    def put_linear(name, prefix):
        put(f"{name}/weight", state[f"{prefix}.weight"])
        put(f"{name}/bias", state[f"{prefix}.bias"])

    for side, count in (("encoder", config.encoder_layers), ("decoder", config.decoder_layers)):
        put(f"{side}/position_encodings/encodings", state[f"{side}.embed_positions.weight"])
        put_norm(f"{side}/layer_norm", f"{side}.layer_norm")
        for i in range(count):
            name, prefix = f"{side}/layer_{i}", f"{side}.layers.{i}"
            attention = f"{prefix}.self_attn"
            put(f"{name}/self_attention/linear_0/weight", torch.cat(
                [state[f"{attention}.{p}_proj.weight"] for p in "qkv"]))
            zeros = torch.zeros_like(state[f"{attention}.q_proj.bias"])
            put(f"{name}/self_attention/linear_0/bias", torch.cat(
                [state[f"{attention}.q_proj.bias"], zeros, state[f"{attention}.v_proj.bias"]]))
            put_linear(f"{name}/self_attention/linear_1", f"{attention}.out_proj")
            put_norm(f"{name}/self_attention/layer_norm", f"{prefix}.self_attn_layer_norm")
            put_linear(f"{name}/ffn/linear_0", f"{prefix}.fc1")
            put_linear(f"{name}/ffn/linear_1", f"{prefix}.fc2")
            put_norm(f"{name}/ffn/layer_norm", f"{prefix}.final_layer_norm")
            if side == "decoder":
                cross = f"{prefix}.encoder_attn"
                put_linear(f"{name}/attention/linear_0", f"{cross}.q_proj")
                put(f"{name}/attention/linear_1/weight", torch.cat(
                    [state[f"{cross}.k_proj.weight"], state[f"{cross}.v_proj.weight"]]))
                put(f"{name}/attention/linear_1/bias", torch.cat([zeros, state[f"{cross}.v_proj.bias"]]))
                put_linear(f"{name}/attention/linear_2", f"{cross}.out_proj")
                put_norm(f"{name}/attention/layer_norm", f"{prefix}.encoder_attn_layer_norm")
    put_linear("encoder/conv1", "encoder.conv1")
    put_linear("encoder/conv2", "encoder.conv2")
    put("decoder/embeddings/weight", state["decoder.embed_tokens.weight"])
    variables |= {
        "encoder/num_heads": np.array(config.encoder_attention_heads, dtype=np.int16),
        "decoder/num_heads": np.array(config.decoder_attention_heads, dtype=np.int16),
        "decoder/activation": np.array(3, dtype=np.int8), "decoder/pre_norm": np.array(1, dtype=np.int8),
        "decoder/scale_embeddings": np.array(0, dtype=np.int8), "decoder/alibi": np.array(0, dtype=np.int8),
        "decoder/start_from_zero_embedding": np.array(0, dtype=np.int8),
        "decoder/alignment_heads": np.array(1, dtype=np.int16), "decoder/alignment_layer": np.array(-1, dtype=np.int16),
    }
    return variables


PROJECTION_ALIAS = {"decoder/projection/weight": "decoder/embeddings/weight"}


def write_checkpoint(model, tokenizer, directory: Path, variables: dict[str, np.ndarray] | None = None,
                     **header) -> Path:
    """A complete CTranslate2 checkpoint directory (model.bin, config.json, tokenizer.json, vocabulary.txt)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_model_bin(directory / "model.bin", ct2_variables(model) if variables is None else variables,
                    PROJECTION_ALIAS, **header)
    generation = model.generation_config
    lang_ids = sorted((getattr(generation, "lang_to_id", None) or {}).values())
    (directory / "config.json").write_text(json.dumps({
        "alignment_heads": [[0, 0]], "lang_ids": lang_ids, "suppress_ids": list(generation.suppress_tokens),
        "suppress_ids_begin": list(generation.begin_suppress_tokens),
    }))
    tokenizer.backend_tokenizer.save(str(directory / "tokenizer.json"))
    vocabulary = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    (directory / "vocabulary.txt").write_text("".join(f"{token}\n" for token, _ in vocabulary))
    return directory
