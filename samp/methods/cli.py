"""``samp methods``: every registered method, what it needs from the encoder, its summary, and the flavours."""
from __future__ import annotations


def _needs(spec) -> str:
    needs = [name for name, needed in (("attention", spec.needs_attention), ("keys", spec.needs_keys)) if needed]
    return " + ".join(needs) or "-"


def methods_table() -> str:
    """The registry as text: one row per method, then the flavours (both read from the registries, so a new
    method or flavour appears without editing this)."""
    from samp.methods.counts import FLAVORS
    from samp.methods.reference import METHODS as REFERENCE_METHODS
    from samp.methods.registry import available

    specs = available()
    rows = [("method", "kind", "needs", "reference flavours", "summary")]
    rows += [(spec.name, spec.kind, _needs(spec), "yes" if spec.name in REFERENCE_METHODS else "-", spec.summary)
             for spec in specs]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths) + "  " + "-" * 7)
    references = [flavor for flavor in FLAVORS if flavor != "samp"]
    lines += [
        "",
        "needs: what samp.compress must be given besides the tokens (the model adapters capture both). kind: "
        "post-projector methods compress the projected audio tokens (samp.compress); in-llm methods prune them "
        "inside the LLM during adapter.generate (samp.models.llm_pruning).",
        "flavours (--flavor): samp (default: the clean algorithm, every method); "
        f"{', '.join(references)} (the SA-MAP reference of that model family, quirks included, for the methods "
        "marked yes; a model takes only its own).",
    ]
    return "\n".join(lines)


def _methods(args) -> int:
    print(methods_table())
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("methods", help="list every compression method, what it needs, and the flavours")
    parser.set_defaults(func=_methods)
