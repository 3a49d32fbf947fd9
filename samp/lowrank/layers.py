"""Find the linear layers of a Whisper-style encoder by structure, not by one class's attribute names.

A Whisper-style encoder (transformers' ``WhisperEncoder``, the Qwen2-Audio audio tower, GLM-ASR's encoder, the
openai-whisper ``AudioEncoder`` that Kimi-Audio vendors) holds one list of identical blocks; each block has an
attention sub-module with at least three linear layers (q, k, v, out) and an MLP of two linear layers. The
attribute names differ between them (``layers``/``blocks``, ``self_attn``/``attn``, ``fc1``/``mlp.0``), so the
blocks are found as the largest ``nn.ModuleList`` of same-class modules that contain an attention-like child.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from samp.lowrank.modules import LowRankLinear

ATTENTION = "attention"
MLP = "mlp"
ROLES = (ATTENTION, MLP)


@dataclass(frozen=True)
class EncoderLinear:
    """One linear layer of an encoder block.

    name:        dotted module path inside the encoder (``layers.3.self_attn.q_proj``).
    role:        ``"attention"`` or ``"mlp"``; the variance threshold schedule treats the two differently.
    block_index: depth of the block (0 = closest to the input).
    num_blocks:  number of blocks in the encoder.
    """

    name: str
    role: str
    block_index: int
    num_blocks: int
    in_features: int
    out_features: int
    has_bias: bool


def _linear_count(module: nn.Module) -> int:
    return sum(isinstance(child, nn.Linear) for child in module.modules())


def _block_list(encoder: nn.Module) -> tuple[str, nn.ModuleList]:
    candidates = []
    for name, module in encoder.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(block) for block in module}) != 1:
            continue
        if not all(_attention_child(block) is not None for block in module):
            continue
        candidates.append((sum(_linear_count(block) for block in module), name, module))
    if not candidates:
        raise ValueError(
            f"{type(encoder).__name__} has no recognisable encoder blocks: expected an nn.ModuleList of identical "
            "blocks, each with an attention sub-module holding at least three nn.Linear layers (q, k, v, out)"
        )
    _, name, module = max(candidates, key=lambda candidate: candidate[0])
    return name, module


def _attention_child(block: nn.Module) -> str | None:
    """The direct child of ``block`` holding the most linear layers, if it holds at least three (q, k, v)."""
    best_name, best_count = None, 2
    for name, child in block.named_children():
        count = _linear_count(child)
        if count > best_count:
            best_name, best_count = name, count
    return best_name


def find_encoder_linears(encoder: nn.Module) -> tuple[EncoderLinear, ...]:
    """Every ``nn.Linear`` inside the encoder's blocks, in module order, with its role and depth.

    Raises ``ValueError`` when the encoder has no block list with attention-like blocks.
    """
    list_name, blocks = _block_list(encoder)
    prefix = f"{list_name}." if list_name else ""
    found = []
    for block_index, block in enumerate(blocks):
        attention_child = _attention_child(block)
        inside_low_rank = tuple(
            f"{name}." for name, module in block.named_modules() if isinstance(module, LowRankLinear)
        )
        for sub_name, module in block.named_modules():
            # the two halves of an already low-rank layer are not layers to compress again
            if not isinstance(module, nn.Linear) or sub_name.startswith(inside_low_rank):
                continue
            role = ATTENTION if sub_name.split(".")[0] == attention_child else MLP
            found.append(
                EncoderLinear(
                    name=f"{prefix}{block_index}.{sub_name}",
                    role=role,
                    block_index=block_index,
                    num_blocks=len(blocks),
                    in_features=module.in_features,
                    out_features=module.out_features,
                    has_bias=module.bias is not None,
                )
            )
    return tuple(found)


def get_submodule_parent(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The parent module of ``name`` and the child's attribute name in it."""
    parent_name, _, child_name = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    return parent, child_name


def replace_module(root: nn.Module, name: str, new_module: nn.Module) -> None:
    """Put ``new_module`` at the dotted path ``name`` inside ``root`` (the old module must exist)."""
    root.get_submodule(name)  # raises AttributeError naming the missing part
    parent, child_name = get_submodule_parent(root, name)
    setattr(parent, child_name, new_module)
