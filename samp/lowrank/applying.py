"""Apply a plan to an encoder in place, measure the output error, save and reload a compressed encoder."""
from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from samp.lowrank.layers import find_encoder_linears, replace_module
from samp.lowrank.modules import LowRankLinear
from samp.lowrank.planning import Plan

CONFIG_KEY = "samp_lowrank"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def _check_plan_fits(encoder: nn.Module, plan: Plan) -> None:
    found = {layer.name: layer for layer in find_encoder_linears(encoder)}
    for layer in plan.layers:
        if layer.rank is None:
            continue
        if layer.name not in found:
            module = dict(encoder.named_modules()).get(layer.name)
            if isinstance(module, LowRankLinear):
                raise ValueError(f"{layer.name} is already low-rank; apply a plan to a dense encoder")
            raise ValueError(f"plan layer {layer.name} is not a linear layer of this {type(encoder).__name__}")
        actual = found[layer.name]
        if (actual.in_features, actual.out_features) != (layer.in_features, layer.out_features):
            raise ValueError(
                f"{layer.name}: plan expects {layer.in_features}->{layer.out_features}, the encoder has "
                f"{actual.in_features}->{actual.out_features}"
            )


def apply(encoder: nn.Module, plan: Plan) -> nn.Module:
    """Replace every planned layer of ``encoder`` by a ``LowRankLinear`` (in its dtype and device), in place.

    The bases come from the calibration statistics the plan carries. Layers of a shared basis share one
    ``second.weight`` parameter. Where the encoder has a transformers config, the low-rank layout and the plan are
    recorded in it (``config.samp_lowrank``), so ``save``/``load`` can rebuild the same structure.
    """
    if not isinstance(plan, Plan):
        raise ValueError(f"apply() needs a Plan (from samp.lowrank.plan), got {type(plan).__name__}")
    if plan.stats is None:
        raise ValueError("the plan carries no calibration statistics; load it with Plan.from_json(text, stats=...)")
    _check_plan_fits(encoder, plan)
    shared_parameters: dict[str, nn.Parameter] = {}
    shared_bases = {shared.name: plan.shared_basis_vectors(shared.name) for shared in plan.shared_bases}
    for layer in plan.layers:
        if layer.rank is None:
            continue
        stats = plan.stats.layer(layer.name)
        basis = plan.basis(layer.name) if layer.basis is None else shared_bases[layer.basis]
        module = LowRankLinear.from_dense(encoder.get_submodule(layer.name), basis, stats.mean())
        if layer.basis is not None:
            if layer.basis in shared_parameters:
                module.second.weight = shared_parameters[layer.basis]
            else:
                shared_parameters[layer.basis] = module.second.weight
        replace_module(encoder, layer.name, module)
    config = getattr(encoder, "config", None)
    if config is not None:
        setattr(config, CONFIG_KEY, _layout(plan))
    return encoder


def _layout(plan: Plan) -> dict:
    return {
        "ranks": {layer.name: layer.rank for layer in plan.layers if layer.rank is not None},
        "shared_bases": {shared.name: list(shared.members) for shared in plan.shared_bases},
        "plan": plan.to_dict(),
    }


def _install_layout(encoder: nn.Module, layout: Mapping) -> None:
    """Empty ``LowRankLinear`` modules of the recorded ranks, with shared bases tied, ready for a state dict."""
    for name, rank in layout["ranks"].items():
        dense = encoder.get_submodule(name)
        if not isinstance(dense, nn.Linear):
            raise ValueError(f"{name}: expected a dense nn.Linear to replace, found {type(dense).__name__}")
        replace_module(
            encoder,
            name,
            LowRankLinear(dense.in_features, dense.out_features, int(rank), device=dense.weight.device, dtype=dense.weight.dtype),
        )
    for members in layout["shared_bases"].values():
        tied = encoder.get_submodule(members[0]).second.weight
        for member in members[1:]:
            encoder.get_submodule(member).second.weight = tied


def save(encoder: nn.Module, path: str | Path) -> Path:
    """Write a compressed encoder to directory ``path``: ``config.json`` (the encoder's transformers config with the
    low-rank layout and plan under ``samp_lowrank``) and ``model.safetensors``."""
    from safetensors.torch import save_model

    config = getattr(encoder, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise ValueError(f"{type(encoder).__name__} has no transformers config; save() stores the layout in it")
    layout = getattr(config, CONFIG_KEY, None)
    if layout is None:
        raise ValueError(f"{type(encoder).__name__} was not compressed by samp.lowrank.apply (no {CONFIG_KEY} in its config)")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    data = config.to_dict()
    data[CONFIG_KEY] = {
        **layout,
        "encoder_class": f"{type(encoder).__module__}:{type(encoder).__qualname__}",
        "dtype": str(next(encoder.parameters()).dtype).removeprefix("torch."),
        "attn_implementation": getattr(config, "_attn_implementation", None),
    }
    (path / CONFIG_FILE).write_text(json.dumps(data, indent=2, default=str))
    save_model(encoder, str(path / WEIGHTS_FILE))
    return path


def load(path: str | Path, *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a compressed encoder written by ``save``: same class, low-rank layers in place, eval mode."""
    from safetensors.torch import load_model

    path = Path(path)
    config_file, weights_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    for required in (config_file, weights_file):
        if not required.is_file():
            raise FileNotFoundError(f"{required} does not exist; is {path} a directory written by samp.lowrank.save?")
    try:
        data = json.loads(config_file.read_text())
        layout = data[CONFIG_KEY]
        module_name, _, class_name = layout["encoder_class"].partition(":")
        encoder_class = getattr(importlib.import_module(module_name), class_name)
    except (json.JSONDecodeError, KeyError, ImportError, AttributeError) as error:
        raise ValueError(f"{config_file}: not a samp low-rank encoder config ({error!r})") from error
    config_data = {key: value for key, value in data.items() if key != CONFIG_KEY}
    config = encoder_class.config_class.from_dict(config_data)
    kwargs = {}
    if layout.get("attn_implementation"):
        kwargs["attn_implementation"] = layout["attn_implementation"]
    encoder = encoder_class._from_config(config, **kwargs)
    encoder.to(device=device, dtype=getattr(torch, layout["dtype"]))
    _install_layout(encoder, layout)
    load_model(encoder, str(weights_file), strict=True, device=str(device))
    setattr(encoder.config, CONFIG_KEY, {key: layout[key] for key in ("ranks", "shared_bases", "plan")})
    return encoder.eval()


def audio_encoder(model: nn.Module) -> nn.Module:
    """The audio encoder of a speech LLM (``get_encoder(modality="audio")``) or of a Whisper model (its encoder).

    transformers >= 5 answers ``get_encoder(modality="audio")`` with the model itself when it has no attribute named
    like an audio tower (Whisper keeps its encoder at ``model.encoder``), so that answer falls back to the plain
    ``get_encoder()``; a model that still has no separate encoder is refused rather than calibrated whole.
    """
    if not hasattr(model, "get_encoder"):
        raise ValueError(f"{type(model).__name__} has no separate audio encoder (no get_encoder())")
    try:
        encoder = model.get_encoder(modality="audio")
    except TypeError:  # older transformers: get_encoder() takes no modality
        encoder = model.get_encoder()
    base = getattr(model, "base_model", model)
    if encoder is model or encoder is base:
        encoder = model.get_encoder()
    if encoder is model or encoder is base:
        raise ValueError(f"{type(model).__name__} has no separate audio encoder (get_encoder() returns the model itself)")
    return encoder


def install(model: nn.Module, encoder: nn.Module) -> nn.Module:
    """Put a (loaded) compressed ``encoder`` in place of ``model``'s audio encoder; returns ``model``.

    The encoder must be of the same class as the one it replaces; it is moved to the model's device and dtype.
    """
    current = audio_encoder(model)
    if type(current) is not type(encoder):
        raise ValueError(f"cannot install a {type(encoder).__name__} in place of the model's {type(current).__name__}")
    name = next((name for name, module in model.named_modules() if module is current), None)
    if not name:
        raise ValueError(f"{type(model).__name__}'s audio encoder is not one of its submodules")
    reference = next(current.parameters())
    replace_module(model, name, encoder.to(device=reference.device, dtype=reference.dtype))
    return model


@dataclass(frozen=True)
class OutputError:
    """Encoder output error of a compressed encoder against the dense one over a set of batches.

    relative_error: ``sqrt(Σ|y_c − y|² / Σ|y|²)`` over every output value; max_abs_error: largest |y_c − y|.
    """

    relative_error: float
    max_abs_error: float
    values: int


def _encoder_output(encoder: nn.Module, batch) -> torch.Tensor:
    output = encoder(**batch) if isinstance(batch, Mapping) else encoder(batch)
    if hasattr(output, "last_hidden_state"):
        return output.last_hidden_state
    if isinstance(output, (tuple, list)):
        return output[0]
    return output


def output_error(reference: nn.Module, compressed: nn.Module, batches: Iterable, *, progress: bool = True) -> OutputError:
    """Compare the last hidden states of ``reference`` (dense) and ``compressed`` encoders on the same batches."""
    squared_error = 0.0
    squared_reference = 0.0
    max_abs = 0.0
    values = 0
    with torch.no_grad():
        for batch in tqdm(batches, desc="output error", unit="batch", disable=not progress):
            expected = _encoder_output(reference, batch).to(torch.float64)
            actual = _encoder_output(compressed, batch).to(torch.float64)
            difference = actual - expected
            squared_error += float((difference**2).sum())
            squared_reference += float((expected**2).sum())
            max_abs = max(max_abs, float(difference.abs().max()))
            values += difference.numel()
    if values == 0:
        raise ValueError("no batches to measure the output error on")
    return OutputError(
        relative_error=(squared_error / squared_reference) ** 0.5 if squared_reference > 0 else float("inf"),
        max_abs_error=max_abs,
        values=values,
    )
