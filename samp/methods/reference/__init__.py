"""The SA-MAP reference flavours: every method exactly as Tencent/AngelSlim's SA-MAP branch runs it for
Qwen2-Audio, GLM-ASR and Kimi-Audio, quirks included (``shared/spec/reference-algorithms.md``).

    rows = reference_rows(features, lengths, method="samp", keep_ratio=0.6, threshold=0.85,
                          attention=attention, keys=None, frames_per_token=2, flavor="qwen2_audio")
    llm_input_rows(rows[0], features[0, :lengths[0]], keep_ratio=0.6, flavor="qwen2_audio", method="samp")
    rows[0].positions        # Kimi-Audio: the sequence positions that survive

:func:`compress_reference` packs the same rows into :class:`~samp.methods.result.Compressed` for
``samp.compress(..., flavor=...)``. The default ``flavor="samp"`` is the clean algorithm and lives elsewhere.
"""
from __future__ import annotations

import torch

from samp.methods.reference.counts import FLAVORS, check_flavor, reference_keep_count, visionzip_counts
from samp.methods.reference.flavors import SPECS, FlavorSpec
from samp.methods.reference.methods import ATTENTION_FREE, KEEP_MASK_METHODS, METHODS, UtteranceRows
from samp.methods.reference.scores import UtteranceScores
from samp.methods.result import Compressed

__all__ = [
    "FLAVORS",
    "FlavorSpec",
    "UtteranceRows",
    "compress_reference",
    "llm_input_rows",
    "processor_placeholder_count",
    "reference_keep_count",
    "reference_rows",
    "visionzip_counts",
]


def reference_rows(
    features: torch.Tensor,
    lengths: torch.Tensor,
    *,
    method: str,
    keep_ratio: float,
    threshold: float,
    attention: torch.Tensor | None,
    keys: torch.Tensor | None,
    frames_per_token: int,
    flavor: str,
) -> list[UtteranceRows]:
    """Run the reference ``method`` on each utterance of a padded batch, one at a time as the reference does.

    features ``[B, N, C]``; lengths ``[B]``; attention the FULL last-layer softmax map ``[B, H, P·N, P·N]``
    (the reference flavours need the map itself, not reduced statistics); keys ``[B, H, P·N, d]`` (VisionZip).
    Computations follow the dtypes given (fp32 golden data; a bf16 GLM-ASR run compares similarities in bf16).
    """
    check_flavor(flavor)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} for the reference flavours; expected one of {sorted(METHODS)}")
    if method not in ATTENTION_FREE and not isinstance(attention, torch.Tensor):
        raise ValueError(
            f"{method} ({flavor} flavour) needs the full attention map [B, H, P·N, P·N]; "
            f"got {type(attention).__name__} (reference flavours cannot use precomputed AttentionStats)"
        )
    spec = SPECS[flavor]
    results = []
    for b in range(features.shape[0]):
        length = int(lengths[b])
        if length < 1:
            raise ValueError(f"utterance {b} has no valid tokens (length {length})")
        x = features[b, :length]
        scores = UtteranceScores(
            attention=attention[b] if isinstance(attention, torch.Tensor) else torch.empty(0, 0, 0),
            length=length,
            frames_per_token=frames_per_token,
            trimmed=spec.trimmed_attention,
        )
        keep = reference_keep_count(length, keep_ratio, flavor, method)
        results.append(
            METHODS[method](
                x,
                scores,
                keep,
                spec,
                keep_ratio=keep_ratio,
                threshold=threshold,
                keys=None if keys is None else keys[b],
            )
        )
    return results


def compress_reference(
    features: torch.Tensor,
    lengths: torch.Tensor,
    *,
    method: str,
    keep_ratio: float,
    threshold: float,
    attention: torch.Tensor | None,
    keys: torch.Tensor | None,
    frames_per_token: int,
    flavor: str,
) -> Compressed:
    """:func:`reference_rows` packed as :class:`Compressed`.

    ``features[b, :lengths[b]]`` are exactly the rows the reference method returns (duplicates included);
    ``assignment`` maps each input token to the first slot holding it (-1 when dropped); ``weights`` are its
    normalised merge weight, or ``None`` for VisionZip (``target + mean`` is not a weighted mean).
    """
    per_utterance = reference_rows(
        features,
        lengths,
        method=method,
        keep_ratio=keep_ratio,
        threshold=threshold,
        attention=attention,
        keys=keys,
        frames_per_token=frames_per_token,
        flavor=flavor,
    )
    batch, n_tokens, channels = features.shape
    kept = [r.rows.shape[0] for r in per_utterance]
    out = torch.zeros(batch, max(kept, default=0), channels, dtype=features.dtype, device=features.device)
    assignment = torch.full((batch, n_tokens), -1, dtype=torch.long)
    weights = None if method == "visionzip" else torch.zeros(batch, n_tokens, dtype=torch.float32)
    for b, result in enumerate(per_utterance):
        out[b, : kept[b]] = result.rows.to(features.dtype)
        # Walk slots backwards so a token present in several (duplicated) slots ends up at its first one.
        for slot in range(kept[b] - 1, -1, -1):
            members = torch.tensor(result.members[slot], dtype=torch.long)
            assignment[b, members] = slot
            if weights is not None:
                weights[b, members] = result.member_weights[slot]
    return Compressed(
        features=out,
        lengths=torch.tensor(kept, dtype=torch.long, device=features.device),
        assignment=assignment.to(features.device),
        weights=None if weights is None else weights.to(features.device),
    )


def processor_placeholder_count(length: int, keep_ratio: float, flavor: str, method: str) -> int:
    """Audio placeholders the prompt side reserves for ``length`` valid tokens (§5.1, §5.2).

    Qwen2-Audio's processor does not special-case ``base``: it reserves ``max(round(L·r), 2)`` placeholders for
    every method but VisionZip, so ``base`` works only at ``r = 1`` (§4.1). VisionZip's processor reads its two
    ratios from environment variables; this assumes they were set to ``r − 0.05`` and ``0.05`` exactly as the model
    computes them (quirk 4, the 0.55-vs-0.5499999999999999 mismatch, depends on how they are written and is not
    reproduced). GLM-ASR's model reads the count back from the prompt, so both sides agree by construction.
    """
    check_flavor(flavor)
    if flavor == "kimi_audio":
        raise ValueError("kimi_audio has no audio placeholders: it removes sequence positions (use .positions)")
    if flavor == "qwen2_audio" and method == "base":
        return max(round(length * keep_ratio), 2)
    return reference_keep_count(length, keep_ratio, flavor, method)


def llm_input_rows(
    results: list[UtteranceRows],
    features: torch.Tensor,
    lengths: torch.Tensor,
    *,
    keep_ratio: float,
    flavor: str,
    method: str,
) -> list[torch.Tensor]:
    """The rows the reference writes into each utterance's audio placeholder slots, for a batch.

    results: what :func:`reference_rows` returned; features ``[B, N, C]`` and lengths ``[B]``: its inputs.

    Qwen2-Audio (§5.1) works on the whole batch at once: the model gathers the rows selected by the keep masks of
    all utterances; merge methods keep every valid row in that mask, and the concatenated merged rows replace the
    gathered ones only when the two totals differ. So with ``T = L`` a merge method silently feeds the
    UNCOMPRESSED features (quirk 5), and a mask method whose total misses the placeholders references an undefined
    variable (raised here). ``masked_scatter`` then fills the placeholders in order from the concatenation: surplus
    rows (A-ToMe's ``max(T, ⌈L/2⌉)``, quirk 6) shift into the NEXT utterance's slots and the last surplus is
    dropped; too few rows fail.
    GLM-ASR (§5.2) runs one utterance at a time: its first ``T`` rows fill its placeholders; fewer rows fail.
    Kimi-Audio has no placeholders: it keeps sequence positions (:attr:`UtteranceRows.positions`).
    """
    check_flavor(flavor)
    counts = [int(n) for n in lengths.tolist()]
    placeholders = [processor_placeholder_count(n, keep_ratio, flavor, method) for n in counts]
    if flavor == "glm_asr":
        rows = []
        for result, needed in zip(results, placeholders):
            if result.rows.shape[0] < needed:
                raise ValueError(
                    f"{method} (glm_asr flavour): {result.rows.shape[0]} rows for {needed} placeholders; "
                    "the reference fails to fill the prompt"
                )
            rows.append(result.rows[:needed])
        return rows

    if method in KEEP_MASK_METHODS:
        gathered = [result.rows for result in results]
    else:
        gathered = [features[b, :n] for b, n in enumerate(counts)]
    if sum(g.shape[0] for g in gathered) == sum(placeholders):
        source = torch.cat(gathered)
    elif method in KEEP_MASK_METHODS:
        raise ValueError(
            f"{method} (qwen2_audio flavour): the keep masks select {sum(g.shape[0] for g in gathered)} rows but "
            f"the prompts have {sum(placeholders)} placeholders; the reference then references an undefined "
            "variable (quirks 4, 5)"
        )
    else:
        source = torch.cat([result.rows for result in results])
        if source.shape[0] < sum(placeholders):
            raise ValueError(
                f"{method} (qwen2_audio flavour): {source.shape[0]} merged rows for {sum(placeholders)} "
                "placeholders; masked_scatter fails"
            )
    offsets = [sum(placeholders[:b]) for b in range(len(placeholders))]
    return [source[start : start + needed] for start, needed in zip(offsets, placeholders)]
