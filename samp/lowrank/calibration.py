"""Streaming float64 statistics of every encoder linear layer's outputs over a calibration set.

Only ``count``, ``Σy`` and ``Σyyᵀ`` are kept per layer, so memory does not grow with the calibration set (LiteASR
concatenates every activation before its SVD; LITEALLM streams, as here).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from samp.lowrank.layers import ROLES, EncoderLinear, find_encoder_linears

STATS_FORMAT = "samp.lowrank.stats/1"


@dataclass(frozen=True)
class LayerStats:
    """Output statistics of one linear layer: ``count`` rows, ``output_sum`` = Σy, ``output_outer_sum`` = Σyyᵀ."""

    layer: EncoderLinear
    count: int
    output_sum: torch.Tensor
    output_outer_sum: torch.Tensor

    def __post_init__(self):
        width = self.layer.out_features
        if self.count <= 0:
            raise ValueError(f"{self.layer.name}: statistics over {self.count} rows; need at least one")
        if tuple(self.output_sum.shape) != (width,) or tuple(self.output_outer_sum.shape) != (width, width):
            raise ValueError(
                f"{self.layer.name}: statistics shapes {tuple(self.output_sum.shape)} and "
                f"{tuple(self.output_outer_sum.shape)} do not match out_features={width}"
            )
        if self.output_sum.dtype != torch.float64 or self.output_outer_sum.dtype != torch.float64:
            raise ValueError(f"{self.layer.name}: statistics must be float64")
        if not (torch.isfinite(self.output_sum).all() and torch.isfinite(self.output_outer_sum).all()):
            raise ValueError(f"{self.layer.name}: statistics contain NaN or infinity")

    @property
    def name(self) -> str:
        return self.layer.name

    def mean(self) -> torch.Tensor:
        return self.output_sum / self.count

    def covariance(self) -> torch.Tensor:
        """Population covariance of the outputs (float64; symmetric up to rounding)."""
        mean = self.mean()
        # one fused pass (addr): the naive expression made four n×n temporaries and cost more than the
        # eigendecomposition of the 384- and 512-wide layers it feeds. Σyyᵀ is symmetric up to the rounding of its
        # accumulation order; eigh reads one triangle, so no symmetrising copy is made.
        return torch.addr(self.output_outer_sum, mean, mean, beta=1.0 / self.count, alpha=-1.0)


@dataclass(frozen=True)
class CalibrationStats:
    """Statistics of every linear layer of one encoder, in module order."""

    encoder_class: str
    layers: tuple[LayerStats, ...]

    def __post_init__(self):
        if not self.layers:
            raise ValueError("calibration statistics hold no layers")
        names = [stats.name for stats in self.layers]
        if len(set(names)) != len(names):
            raise ValueError("calibration statistics name a layer twice")

    def layer(self, name: str) -> LayerStats:
        for stats in self.layers:
            if stats.name == name:
                return stats
        raise KeyError(f"no calibration statistics for layer {name!r}")

    def save(self, path: str | Path) -> None:
        """One safetensors file; the layer descriptions go in its metadata."""
        from safetensors.torch import save_file

        tensors = {}
        described = []
        for index, stats in enumerate(self.layers):
            tensors[f"{index}.sum"] = stats.output_sum.contiguous().cpu()
            tensors[f"{index}.outer_sum"] = stats.output_outer_sum.contiguous().cpu()
            described.append({**stats.layer.__dict__, "count": stats.count})
        metadata = {
            "format": STATS_FORMAT,
            "encoder_class": self.encoder_class,
            "layers": json.dumps(described),
        }
        save_file(tensors, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> "CalibrationStats":
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"calibration statistics file {path} does not exist")
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                if metadata.get("format") != STATS_FORMAT:
                    raise ValueError(f"{path} is not a samp calibration statistics file (format {metadata.get('format')!r})")
                described = json.loads(metadata["layers"])
                layers = []
                for index, row in enumerate(described):
                    count = row.pop("count")
                    if row.get("role") not in ROLES:
                        raise ValueError(f"{path}: layer {index} has unknown role {row.get('role')!r}")
                    layers.append(
                        LayerStats(
                            layer=EncoderLinear(**row),
                            count=int(count),
                            output_sum=handle.get_tensor(f"{index}.sum"),
                            output_outer_sum=handle.get_tensor(f"{index}.outer_sum"),
                        )
                    )
        except (SafetensorError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: corrupt calibration statistics file ({error})") from error
        return cls(encoder_class=metadata["encoder_class"], layers=tuple(layers))


class StatsAccumulator:
    """Streams one layer's outputs into float64 ``count``, ``Σy`` and ``Σyyᵀ`` (rows = every leading index)."""

    def __init__(self, layer: EncoderLinear):
        self.layer = layer
        self.count = 0
        self.output_sum = None
        self.output_outer_sum = None

    def update(self, outputs: torch.Tensor, frame_mask: torch.Tensor | None = None) -> None:
        """Add ``outputs`` (``[..., out_features]``); with ``frame_mask`` (bool, ``outputs.shape[:-1]``) only the
        rows it marks."""
        if outputs.shape[-1] != self.layer.out_features:
            raise ValueError(f"{self.layer.name}: outputs of width {outputs.shape[-1]}, expected {self.layer.out_features}")
        outputs = outputs.detach()
        if frame_mask is not None:
            if tuple(frame_mask.shape) != tuple(outputs.shape[:-1]):
                raise ValueError(
                    f"{self.layer.name}: frame_mask of shape {tuple(frame_mask.shape)} does not match the layer's "
                    f"output frames {tuple(outputs.shape[:-1])}"
                )
            outputs = outputs[frame_mask.to(device=outputs.device, dtype=torch.bool)]
        rows = outputs.reshape(-1, outputs.shape[-1]).to(torch.float64)
        if not torch.isfinite(rows).all():
            raise ValueError(f"non-finite activations (NaN or infinity) at the output of layer {self.layer.name}")
        if self.output_sum is None:
            self.output_sum = torch.zeros(rows.shape[-1], dtype=torch.float64, device=rows.device)
            self.output_outer_sum = torch.zeros(rows.shape[-1], rows.shape[-1], dtype=torch.float64, device=rows.device)
        self.count += rows.shape[0]
        self.output_sum += rows.sum(0)
        self.output_outer_sum += rows.T @ rows

    frame_mask: torch.Tensor | None = None  # set per batch by calibrate()

    def hook(self, module, inputs, output):
        self.update(output, self.frame_mask)
        return None  # a forward hook that returns a value would replace the layer's output

    def result(self) -> LayerStats:
        if self.count == 0:
            raise ValueError(
                f"layer {self.layer.name} saw no rows during calibration (not used by forward, or every frame masked)"
            )
        return LayerStats(self.layer, self.count, self.output_sum.cpu(), self.output_outer_sum.cpu())


def balance_frames(whole: CalibrationStats, part: CalibrationStats, part_share: float = 0.5) -> CalibrationStats:
    """Statistics in which the frames of ``part`` (e.g. speech frames: ``calibrate`` with a ``frame_mask``) weigh
    ``part_share`` and the other frames of the same windows (``whole`` − ``part``: the padding) the rest.

    Why: a 30-s Whisper window is mostly padding, whose outputs barely change from frame to frame, so whole-window
    statistics spend their variance on it and fit the speech frames poorly; speech-only statistics never see the
    padding frames the decoder still attends to, and a basis fitted without them breaks them. The row count stays
    ``whole``'s, so a share equal to ``part``'s fraction of the frames gives ``whole`` back.
    """
    if not 0.0 <= part_share <= 1.0:
        raise ValueError(f"part_share must lie in [0, 1], got {part_share}")
    if whole.encoder_class != part.encoder_class or [s.layer for s in whole.layers] != [s.layer for s in part.layers]:
        raise ValueError("balance_frames needs statistics of the same layers (the same encoder)")
    layers = []
    for total, chosen in zip(whole.layers, part.layers):
        rest = total.count - chosen.count
        if rest <= 0 and part_share < 1.0:
            raise ValueError(f"{total.name}: the part holds every frame ({chosen.count} of {total.count}); "
                             "nothing is left to balance it against")
        if chosen.count > total.count:
            raise ValueError(f"{total.name}: the part has more frames ({chosen.count}) than the whole ({total.count})")
        part_weight = part_share * total.count / chosen.count
        rest_weight = (1.0 - part_share) * total.count / rest if rest > 0 else 0.0
        layers.append(LayerStats(
            total.layer, total.count,
            part_weight * chosen.output_sum + rest_weight * (total.output_sum - chosen.output_sum),
            part_weight * chosen.output_outer_sum + rest_weight * (total.output_outer_sum - chosen.output_outer_sum),
        ))
    return CalibrationStats(whole.encoder_class, tuple(layers))


def _split_batch(batch):
    """``(encoder inputs, frame mask or None)`` from a tensor or a mapping that may hold ``frame_mask``."""
    if isinstance(batch, torch.Tensor):
        if batch.numel() == 0:
            raise ValueError("empty tensor")
        return batch, None
    if isinstance(batch, Mapping):
        inputs = dict(batch)
        return inputs, inputs.pop("frame_mask", None)
    raise ValueError(f"must be a tensor of input features or a mapping of keyword inputs, got {type(batch).__name__}")


def calibrate(encoder: nn.Module, batches: Iterable, *, progress: bool = True) -> CalibrationStats:
    """Run ``encoder`` over ``batches`` and collect every block linear layer's output statistics.

    A batch is the encoder's input features (a tensor), or a mapping of its keyword inputs that may also hold
    ``frame_mask``: a bool ``[batch, frames]`` tensor at the blocks' frame rate marking the frames to count, so the
    padding of 30-s windows does not dominate the statistics. The encoder runs in eval mode under
    ``torch.no_grad``; its training flag is restored afterwards.
    """
    layers = find_encoder_linears(encoder)
    accumulators = [StatsAccumulator(layer) for layer in layers]
    handles = [encoder.get_submodule(acc.layer.name).register_forward_hook(acc.hook) for acc in accumulators]
    was_training = encoder.training
    encoder.eval()
    seen = 0
    try:
        with torch.no_grad():
            for batch in tqdm(batches, desc="calibrating", unit="batch", disable=not progress):
                try:
                    inputs, frame_mask = _split_batch(batch)
                except ValueError as error:
                    raise ValueError(f"calibration batch {seen}: {error}") from None
                for accumulator in accumulators:
                    accumulator.frame_mask = frame_mask
                if isinstance(inputs, Mapping):
                    encoder(**inputs)
                else:
                    encoder(inputs)
                seen += 1
    finally:
        for handle in handles:
            handle.remove()
        encoder.train(was_training)
    if seen == 0:
        raise ValueError("empty calibration set: no batches were given")
    return CalibrationStats(
        encoder_class=f"{type(encoder).__module__}.{type(encoder).__qualname__}",
        layers=tuple(acc.result() for acc in accumulators),
    )
