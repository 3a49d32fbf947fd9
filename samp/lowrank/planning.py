"""Rank planning: per layer, the smallest rank whose principal output subspace keeps θ of the centred variance.

A plan is data: one frozen ``LayerPlan`` per linear layer (``rank=None`` where the layer stays dense), optional
``SharedBasis`` groups, a JSON round trip and a readable table. Parameters and FLOPs are derived from the shapes
and ranks, so an edited plan cannot carry stale accounting.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

import torch

from samp.lowrank.calibration import CalibrationStats, LayerStats
from samp.lowrank.layers import ROLES
from samp.lowrank.schedule import ThetaSchedule

PLAN_FORMAT = "samp.lowrank.plan/1"


@dataclass(frozen=True)
class PrincipalComponents:
    """Mean, eigenvalues (descending, clipped at zero) and eigenvectors (columns, same order) of a layer's outputs."""

    mean: torch.Tensor
    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor


def _descending_eigh(covariance: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 eigendecomposition on ``device`` (a GPU turns minutes per 5120-wide layer into seconds), on CPU out."""
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance.to(device))
    return eigenvalues.flip(0).clamp_min(0.0).cpu(), eigenvectors.flip(1).cpu()


# Covariance = E[yyᵀ] − μμᵀ cancels in float64: variance below this fraction of E[|y|²] is rounding noise.
NOISE_FLOOR = 1e-12
# Extra sketch columns beyond the input width, and the variance (fraction of the total) the sketched subspace may
# miss before the full decomposition is used instead: far below any θ step, far above float32 activation rounding.
SKETCH_OVERSAMPLING = 16
SKETCH_TOLERANCE = 1e-9


def _range_eigh(covariance: torch.Tensor, range_width: int, device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Eigenpairs of a covariance known to have rank at most ``range_width`` (< its width), from its range only.

    An expanding layer ``y = Wx + b`` (Whisper's fc1: d → 4d) has outputs whose centred part lies in the column
    space of ``W``, so its ``4d × 4d`` covariance has rank ≤ d. A Gaussian sketch ``C Ω`` with ``d + 16`` columns
    spans that range; ``Qᵀ C Q`` (float64, ``(d+16)²``) has the same nonzero eigenvalues and gives the eigenvectors
    as ``Q U`` (Rayleigh–Ritz, exact when the range is captured). That replaces a ``(4d)³`` decomposition by two
    ``(4d)² d`` products and a ``d³`` one (≈5× less for fc1 on one thread). The variance the sketch misses,
    ``tr C − tr QᵀCQ``, is checked: above ``SKETCH_TOLERANCE`` of the total the caller decomposes the full matrix.
    Returns descending eigenvalues padded with zeros to the width and the ``[width, range_width + 16]`` vectors.
    """
    width = covariance.shape[0]
    columns = range_width + SKETCH_OVERSAMPLING
    generator = torch.Generator().manual_seed(0)  # a fixed sketch: the same statistics give the same plan
    # float32 Gaussian numbers (a third of the float64 draw's time) are exact in float64: still a Gaussian sketch
    sketch = torch.randn(width, columns, generator=generator).to(device=device, dtype=torch.float64)
    covariance = covariance.to(device)
    basis = torch.linalg.qr(covariance @ sketch).Q
    projected = basis.T @ covariance @ basis
    total = float(covariance.trace())
    if total <= 0.0 or total - float(projected.trace()) > SKETCH_TOLERANCE * total:
        return None
    values, vectors = torch.linalg.eigh((projected + projected.T) / 2)
    eigenvalues = torch.zeros(width, dtype=torch.float64)
    eigenvalues[:columns] = values.flip(0).clamp_min(0.0).cpu()
    return eigenvalues, (basis @ vectors.flip(1)).cpu()


def principal_components(stats: LayerStats, device: str | torch.device = "cpu", *, full: bool = False) -> PrincipalComponents:
    """The layer's centred output spectrum and eigenvectors. For an expanding layer (``out_features`` at least twice
    ``in_features + 16``) only the eigenvectors of its ≤ ``in_features``-dimensional output range are computed
    (see ``_range_eigh``; the rest have eigenvalue zero) unless ``full`` asks for all of them."""
    layer = stats.layer
    found = None
    if not full and 2 * (layer.in_features + SKETCH_OVERSAMPLING) <= layer.out_features:
        found = _range_eigh(stats.covariance(), layer.in_features, device)
    eigenvalues, eigenvectors = found if found is not None else _descending_eigh(stats.covariance(), device)
    mean_square = float(stats.output_outer_sum.diagonal().sum()) / stats.count
    eigenvalues = torch.where(eigenvalues > NOISE_FLOOR * mean_square, eigenvalues, torch.zeros_like(eigenvalues))
    return PrincipalComponents(stats.mean(), eigenvalues, eigenvectors)


def round_up(rank: int, multiple: int, limit: int) -> int:
    return min(-(-rank // multiple) * multiple, limit)


def rank_for_theta(eigenvalues: torch.Tensor, theta: float, multiple: int) -> int:
    """Smallest rank (rounded up to ``multiple``, at most the width) keeping ``theta`` of the variance.

    θ = 1 keeps the full width, which no floating-point cumulative sum could be trusted to reach.
    """
    width = eigenvalues.numel()
    total = float(eigenvalues.sum())
    if theta >= 1.0:
        return width
    if total <= 0.0:  # a constant output: its mean alone reproduces it
        return min(multiple, width)
    fractions = torch.cumsum(eigenvalues, 0) / total
    rank = int(torch.searchsorted(fractions, torch.tensor([theta], dtype=fractions.dtype)).item()) + 1
    return round_up(min(rank, width), multiple, width)


def retained_fraction(eigenvalues: torch.Tensor, rank: int) -> float:
    total = float(eigenvalues.sum())
    if total <= 0.0:
        return 1.0
    return min(float(eigenvalues[:rank].sum()) / total, 1.0)


def dense_params(in_features: int, out_features: int, has_bias: bool) -> int:
    return in_features * out_features + (out_features if has_bias else 0)


def low_rank_params(in_features: int, out_features: int, rank: int) -> int:
    return rank * (in_features + out_features) + out_features


def dense_flops(in_features: int, out_features: int) -> int:
    """Matmul FLOPs per input row (one multiply and one add per weight), as torch's FLOP counter counts them."""
    return 2 * in_features * out_features


def low_rank_flops(in_features: int, out_features: int, rank: int) -> int:
    return 2 * rank * (in_features + out_features)


def low_rank_is_cheaper(in_features: int, out_features: int, has_bias: bool, rank: int) -> bool:
    """LiteASR's check, which LITEALLM dropped: a pair that costs as much as the dense layer only loses accuracy."""
    return (
        low_rank_params(in_features, out_features, rank) < dense_params(in_features, out_features, has_bias)
        and low_rank_flops(in_features, out_features, rank) < dense_flops(in_features, out_features)
    )


@dataclass(frozen=True)
class LayerPlan:
    """The decision for one linear layer.

    rank:              kept rank, or ``None`` where the layer stays dense.
    theta:             the variance threshold the schedule gave this layer.
    retained_variance: fraction of the centred output variance the kept subspace holds on the calibration data
                       (1.0 for a dense layer); the relative output error there is ``sqrt(1 - retained_variance)``.
    basis:             name of the ``SharedBasis`` this layer uses, or ``None`` for its own basis.
    """

    name: str
    role: str
    block_index: int
    in_features: int
    out_features: int
    has_bias: bool
    theta: float
    rank: int | None
    retained_variance: float
    basis: str | None = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"{self.name}: unknown role {self.role!r}")
        if self.rank is not None and not 1 <= self.rank <= self.out_features:
            raise ValueError(f"{self.name}: rank {self.rank} outside 1..{self.out_features}")
        if self.rank is None and self.basis is not None:
            raise ValueError(f"{self.name}: a dense layer cannot use shared basis {self.basis!r}")
        if not 0.0 < self.theta <= 1.0:
            raise ValueError(f"{self.name}: theta {self.theta} outside (0, 1]")

    @property
    def params_before(self) -> int:
        return dense_params(self.in_features, self.out_features, self.has_bias)

    @property
    def params_after(self) -> int:
        """Parameters this layer owns after compression (a shared basis is counted once, in its ``SharedBasis``)."""
        if self.rank is None:
            return self.params_before
        if self.basis is not None:
            return self.rank * self.in_features + self.out_features
        return low_rank_params(self.in_features, self.out_features, self.rank)

    @property
    def flops_before(self) -> int:
        return dense_flops(self.in_features, self.out_features)

    @property
    def flops_after(self) -> int:
        if self.rank is None:
            return self.flops_before
        return low_rank_flops(self.in_features, self.out_features, self.rank)

    @property
    def relative_error(self) -> float:
        """Relative output error on the calibration data, as a fraction of the centred output energy."""
        return math.sqrt(max(1.0 - self.retained_variance, 0.0))


@dataclass(frozen=True)
class SharedBasis:
    """One output basis fitted to the pooled statistics of several layers, each keeping its own coefficients.

    own_relative_errors / shared_relative_errors: per member, the calibration-data relative error with its own
    basis (at its own planned rank) and with the shared one. params_own / params_shared: the members' parameters
    with per-layer bases and with the shared basis (basis included).
    """

    name: str
    out_features: int
    rank: int
    members: tuple[str, ...]
    own_relative_errors: tuple[float, ...]
    shared_relative_errors: tuple[float, ...]
    params_own: int
    params_shared: int

    def __post_init__(self):
        if len(self.members) < 2:
            raise ValueError(f"shared basis {self.name} needs at least two members, got {len(self.members)}")
        if not len(self.members) == len(self.own_relative_errors) == len(self.shared_relative_errors):
            raise ValueError(f"shared basis {self.name}: one error per member expected")

    @property
    def params(self) -> int:
        return self.rank * self.out_features

    @property
    def params_saved(self) -> int:
        return self.params_own - self.params_shared

    @property
    def extra_error(self) -> float:
        """Largest increase of a member's relative output error caused by sharing."""
        return max(shared - own for own, shared in zip(self.own_relative_errors, self.shared_relative_errors))


@dataclass(frozen=True)
class Plan:
    rank_threshold: str
    rank_multiple: int
    layers: tuple[LayerPlan, ...]
    shared_bases: tuple[SharedBasis, ...] = ()
    # The statistics the bases are computed from at apply time; not part of the plan's data (or its JSON).
    stats: CalibrationStats | None = field(default=None, compare=False, repr=False)
    # Eigendecompositions made while planning, so apply() need not repeat them (minutes for 5120-wide layers).
    components: Mapping[str, PrincipalComponents] = field(default_factory=dict, compare=False, repr=False)
    shared_vectors: Mapping[str, torch.Tensor] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError("plan names a layer twice")
        by_name = {layer.name: layer for layer in self.layers}
        for shared in self.shared_bases:
            for member in shared.members:
                layer = by_name.get(member)
                if layer is None or layer.basis != shared.name or layer.rank != shared.rank:
                    raise ValueError(f"shared basis {shared.name}: member {member!r} is not a rank-{shared.rank} layer using it")
        known = {shared.name for shared in self.shared_bases}
        for layer in self.layers:
            if layer.basis is not None and layer.basis not in known:
                raise ValueError(f"{layer.name}: unknown shared basis {layer.basis!r}")

    def principal_components(self, name: str) -> PrincipalComponents:
        """The components of layer ``name``'s outputs: from planning when cached, else from the statistics."""
        if name in self.components:
            return self.components[name]
        if self.stats is None:
            raise ValueError("the plan carries no calibration statistics; load it with Plan.from_json(text, stats=...)")
        return principal_components(self.stats.layer(name))

    def basis(self, name: str) -> torch.Tensor:
        """The ``[out, rank]`` orthonormal output basis of low-rank layer ``name`` (its own or its shared one)."""
        layer = self.layer(name)
        if layer.rank is None:
            raise ValueError(f"{name} stays dense in this plan; it has no low-rank basis")
        if layer.basis is not None:
            return self.shared_basis_vectors(layer.basis)
        eigenvectors = self.principal_components(name).eigenvectors
        if eigenvectors.shape[1] < layer.rank:  # a rank past the output range (only by with_ranks): complete it
            if self.stats is None:
                raise ValueError("the plan carries no calibration statistics; load it with Plan.from_json(text, stats=...)")
            eigenvectors = principal_components(self.stats.layer(name), full=True).eigenvectors
        return eigenvectors[:, : layer.rank]

    def shared_basis_vectors(self, name: str) -> torch.Tensor:
        """The ``[out, rank]`` orthonormal basis of shared basis ``name``: from planning when cached, else refitted
        from the members' statistics."""
        if name in self.shared_vectors:
            return self.shared_vectors[name]
        if self.stats is None:
            raise ValueError("the plan carries no calibration statistics; load it with Plan.from_json(text, stats=...)")
        shared = next((basis for basis in self.shared_bases if basis.name == name), None)
        if shared is None:
            raise KeyError(f"plan has no shared basis {name!r}")
        eigenvectors, _ = shared_components([self.stats.layer(member) for member in shared.members])
        return eigenvectors[:, : shared.rank]

    def layer(self, name: str) -> LayerPlan:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"plan has no layer {name!r}")

    @property
    def params_before(self) -> int:
        return sum(layer.params_before for layer in self.layers)

    @property
    def params_after(self) -> int:
        return sum(layer.params_after for layer in self.layers) + sum(shared.params for shared in self.shared_bases)

    @property
    def flops_before(self) -> int:
        return sum(layer.flops_before for layer in self.layers)

    @property
    def flops_after(self) -> int:
        return sum(layer.flops_after for layer in self.layers)

    def with_ranks(self, ranks: Mapping[str, int | None]) -> "Plan":
        """A copy with some layers' ranks changed (``None`` = dense); retained variance is recomputed from the
        statistics when the plan carries them. Layers on a shared basis must be re-planned, not edited."""
        by_name = {layer.name: layer for layer in self.layers}
        for name in ranks:
            if name not in by_name:
                raise KeyError(f"plan has no layer {name!r}")
            if by_name[name].basis is not None:
                raise ValueError(f"{name} uses shared basis {by_name[name].basis}; re-plan instead of editing its rank")
        layers = []
        for layer in self.layers:
            if layer.name in ranks:
                rank = ranks[layer.name]
                if rank is None:
                    retained = 1.0
                elif self.stats is not None:
                    retained = retained_fraction(self.principal_components(layer.name).eigenvalues, rank)
                else:
                    retained = float("nan")
                layer = replace(layer, rank=rank, retained_variance=retained)
            layers.append(layer)
        return replace(self, layers=tuple(layers))

    def to_dict(self) -> dict:
        layers = []
        for layer in self.layers:
            row = asdict(layer)
            row.update(
                params_before=layer.params_before,
                params_after=layer.params_after,
                flops_before=layer.flops_before,
                flops_after=layer.flops_after,
            )
            layers.append(row)
        shared = []
        for basis in self.shared_bases:
            row = asdict(basis)
            row.update(params_saved=basis.params_saved, extra_error=basis.extra_error)
            shared.append(row)
        return {
            "format": PLAN_FORMAT,
            "rank_threshold": self.rank_threshold,
            "rank_multiple": self.rank_multiple,
            "layers": layers,
            "shared_bases": shared,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping, stats: CalibrationStats | None = None) -> "Plan":
        if not isinstance(data, Mapping) or data.get("format") != PLAN_FORMAT:
            raise ValueError(f"not a samp low-rank plan (expected format {PLAN_FORMAT!r})")
        derived = {"params_before", "params_after", "flops_before", "flops_after", "params_saved", "extra_error"}
        try:
            layers = tuple(
                LayerPlan(**{key: value for key, value in row.items() if key not in derived}) for row in data["layers"]
            )
            shared = []
            for row in data.get("shared_bases", []):
                row = {key: value for key, value in row.items() if key not in derived}
                for key in ("members", "own_relative_errors", "shared_relative_errors"):
                    row[key] = tuple(row[key])
                shared.append(SharedBasis(**row))
            return cls(
                rank_threshold=str(data["rank_threshold"]),
                rank_multiple=int(data["rank_multiple"]),
                layers=layers,
                shared_bases=tuple(shared),
                stats=stats,
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"malformed low-rank plan: {error}") from error

    @classmethod
    def from_json(cls, text: str, stats: CalibrationStats | None = None) -> "Plan":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"low-rank plan is not valid JSON: {error}") from error
        return cls.from_dict(data, stats=stats)

    def table(self) -> str:
        header = (
            f"{'layer':<34} {'role':<9} {'theta':>6} {'rank':>5} {'retained':>9} {'params before -> after':>24} "
            f"{'MFLOP/frame before -> after':>28} basis"
        )
        lines = [f"low-rank plan, rank threshold {self.rank_threshold}, ranks rounded up to {self.rank_multiple}", header]
        for layer in self.layers:
            rank = "dense" if layer.rank is None else str(layer.rank)
            lines.append(
                f"{layer.name:<34} {layer.role:<9} {layer.theta:>6.4f} {rank:>5} {layer.retained_variance:>9.5f} "
                f"{layer.params_before:>11,} -> {layer.params_after:>9,} "
                f"{layer.flops_before / 1e6:>15.3f} -> {layer.flops_after / 1e6:>9.3f} {layer.basis or '-'}"
            )
        for basis in self.shared_bases:
            lines.append(
                f"shared basis {basis.name}: rank {basis.rank} x {basis.out_features}, {len(basis.members)} layers, "
                f"saves {basis.params_saved:,} parameters against per-layer bases, extra error at most {basis.extra_error:.5f}"
            )
        lines.append(
            f"total: {self.params_before:,} -> {self.params_after:,} parameters "
            f"({self.params_after / self.params_before:.3f}), {self.flops_before / 1e6:.3f} -> {self.flops_after / 1e6:.3f} "
            f"MFLOP per frame ({self.flops_after / self.flops_before:.3f}), "
            f"{sum(layer.rank is not None for layer in self.layers)} of {len(self.layers)} layers low-rank"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def subspace_similarity(basis_a: torch.Tensor, basis_b: torch.Tensor) -> float:
    """Mean squared cosine of the principal angles between two orthonormal bases (1 = one contains the other):
    the squared singular values of ``Aᵀ B`` are the squared cosines, and their sum is ``|Aᵀ B|²_F``."""
    overlap = basis_a.T @ basis_b
    return float((overlap**2).sum()) / min(basis_a.shape[1], basis_b.shape[1])


def _normalised_covariance(stats: LayerStats) -> torch.Tensor:
    covariance = stats.covariance()
    return covariance / covariance.trace()


def shared_components(member_stats: list[LayerStats], device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvectors (descending) of the members' pooled covariances, each scaled to unit total variance so no
    layer dominates by its magnitude; also each member's variance captured per component (``[members, width]``)."""
    normalised = [_normalised_covariance(stats) for stats in member_stats]
    _, eigenvectors = _descending_eigh(sum(normalised), device)
    captured = torch.stack([((covariance @ eigenvectors) * eigenvectors).sum(0) for covariance in normalised])
    return eigenvectors, captured


def _fit_shared(members: list[LayerPlan], member_stats: list[LayerStats], multiple: int, device):
    """The smallest shared rank at which every member still keeps its θ and stays cheaper than dense, its
    retained variance per member and the shared eigenvectors; or None."""
    width = members[0].out_features
    eigenvectors, captured = shared_components(member_stats, device)
    cumulative = torch.cumsum(captured, 1)
    thetas = torch.tensor([layer.theta for layer in members], dtype=torch.float64)
    for rank in range(multiple, width + multiple, multiple):
        rank = min(rank, width)
        if bool((cumulative[:, rank - 1] >= thetas).all()):
            break
    else:
        return None
    if not all(low_rank_is_cheaper(m.in_features, m.out_features, m.has_bias, rank) for m in members):
        return None
    retained = [min(float(value), 1.0) for value in cumulative[:, rank - 1]]
    return rank, retained, eigenvectors


def _share_bases(layers, stats: CalibrationStats, components: dict, similarity: float, multiple: int, device):
    # a constant output (no variance) has no subspace to compare or pool
    candidates = [
        layer for layer in layers
        if layer.rank is not None and layer.theta < 1.0 and float(components[layer.name].eigenvalues.sum()) > 0.0
    ]
    own_bases = {layer.name: components[layer.name].eigenvectors[:, : layer.rank] for layer in candidates}
    groups: list[list[LayerPlan]] = []
    fits: list[tuple | None] = []
    for layer in candidates:
        placed = False
        for index, group in enumerate(groups):
            if group[0].out_features != layer.out_features:
                continue
            if any(subspace_similarity(own_bases[layer.name], own_bases[m.name]) < similarity for m in group):
                continue
            trial = group + [layer]
            fit = _fit_shared(trial, [stats.layer(m.name) for m in trial], multiple, device)
            if fit is None:
                continue
            rank = fit[0]
            own = sum(m.params_after for m in trial)
            shared = sum(rank * m.in_features + m.out_features for m in trial) + rank * layer.out_features
            if shared >= own:
                continue
            group.append(layer)
            fits[index] = fit
            placed = True
            break
        if not placed:
            groups.append([layer])
            fits.append(None)

    by_name = {layer.name: layer for layer in layers}
    shared_bases, shared_vectors = [], {}
    for group, fit in zip(groups, fits):
        if fit is None:
            continue
        rank, retained, eigenvectors = fit
        name = f"shared{len(shared_bases)}"
        shared_vectors[name] = eigenvectors[:, :rank]
        params_own = sum(m.params_after for m in group)
        for member, kept in zip(group, retained):
            by_name[member.name] = replace(member, rank=rank, retained_variance=kept, basis=name)
        shared_bases.append(
            SharedBasis(
                name=name,
                out_features=group[0].out_features,
                rank=rank,
                members=tuple(m.name for m in group),
                own_relative_errors=tuple(m.relative_error for m in group),
                shared_relative_errors=tuple(by_name[m.name].relative_error for m in group),
                params_own=params_own,
                params_shared=sum(by_name[m.name].params_after for m in group) + rank * group[0].out_features,
            )
        )
    return [by_name[layer.name] for layer in layers], shared_bases, shared_vectors


def plan(
    stats: CalibrationStats,
    rank_threshold: "str | float | ThetaSchedule" = "0.99:0.999",
    *,
    share_bases: bool = False,
    share_similarity: float = 0.9,
    rank_multiple: int = 16,
    min_flop_saving: float = 0.0,
    device: str | torch.device = "cpu",
) -> Plan:
    """Plan every layer in ``stats``: θ from the depth-aware schedule, the smallest rank keeping θ of the centred
    output variance (rounded up to ``rank_multiple``), dense where the low-rank pair would not be cheaper.

    ``min_flop_saving`` keeps a pair only when it saves at least that fraction of the dense layer's FLOPs. Two
    thin matrix products are slower per FLOP than one dense product, so on CPU a pair near the FLOP break-even
    (rank 0.5·d for d×d, 0.8·d for d×4d: LiteASR's rule is the same break-even) costs more time than the dense
    layer (scripts/lowrank_break_even.py measures where); 0 keeps every pair that is cheaper at all.

    With ``share_bases``, layers of equal output width whose own bases have a subspace similarity of at least
    ``share_similarity`` are grouped greedily; a group keeps one basis fitted to the pooled statistics, at the
    smallest rank where every member still keeps its θ, when that saves parameters.

    ``device`` runs the float64 eigendecompositions (e.g. ``"cuda"``: on one CPU thread a 5120-wide layer takes
    about a minute).
    """
    schedule = ThetaSchedule.parse(rank_threshold)
    if not isinstance(stats, CalibrationStats):
        raise ValueError(f"plan() needs CalibrationStats (from samp.lowrank.calibrate), got {type(stats).__name__}")
    if rank_multiple < 1:
        raise ValueError(f"rank_multiple must be at least 1, got {rank_multiple}")
    if not 0.0 < share_similarity <= 1.0:
        raise ValueError(f"share_similarity must lie in (0, 1], got {share_similarity}")
    if not 0.0 <= min_flop_saving < 1.0:
        raise ValueError(f"min_flop_saving must lie in [0, 1), got {min_flop_saving}")
    layers = []
    components = {}
    for layer_stats in stats.layers:
        layer = layer_stats.layer
        theta = schedule.theta(layer.role, layer.block_index, layer.num_blocks)
        components[layer.name] = principal_components(layer_stats, device)
        eigenvalues = components[layer.name].eigenvalues
        rank = rank_for_theta(eigenvalues, theta, rank_multiple)
        if not low_rank_is_cheaper(layer.in_features, layer.out_features, layer.has_bias, rank) or (
            low_rank_flops(layer.in_features, layer.out_features, rank)
            > (1.0 - min_flop_saving) * dense_flops(layer.in_features, layer.out_features)
        ):
            rank = None
        layers.append(
            LayerPlan(
                name=layer.name,
                role=layer.role,
                block_index=layer.block_index,
                in_features=layer.in_features,
                out_features=layer.out_features,
                has_bias=layer.has_bias,
                theta=theta,
                rank=rank,
                retained_variance=1.0 if rank is None else retained_fraction(eigenvalues, rank),
            )
        )
    shared_bases, shared_vectors = [], {}
    if share_bases:
        layers, shared_bases, shared_vectors = _share_bases(
            layers, stats, components, share_similarity, rank_multiple, device
        )
    return Plan(
        rank_threshold=str(schedule),
        rank_multiple=rank_multiple,
        layers=tuple(layers),
        shared_bases=tuple(shared_bases),
        stats=stats,
        components=components,
        shared_vectors=shared_vectors,
    )
