"""``samp eval`` and ``samp data prepare``: argument parsing only; the work is in the library."""
from __future__ import annotations

import sys
from pathlib import Path


def register(subparsers) -> None:
    evaluate = subparsers.add_parser(
        "eval", help="evaluate a model (with token compression) on ASR / MQA datasets",
        description="Infer (resumable, sharded with torchrun), score and append records to <work-dir>/records.jsonl. "
                    "Options are checked before the model loads; a run of a setting already recorded appends "
                    "nothing.")
    evaluate.add_argument("--model", required=True,
                          help="checkpoint directory; records name it by its folder (a folder named 'model' by its "
                               "parent) plus a content fingerprint")
    evaluate.add_argument("--data", required=True,
                          help="comma-separated dataset names (e.g. LibriSpeech,AISHELL-1) or manifest .jsonl paths")
    evaluate.add_argument("--work-dir", required=True, type=Path,
                          help="folder for result lines (resumable) and records.jsonl; one run at a time per setting")
    evaluate.add_argument("--method", default="samp",
                          help="token-compression method (default: samp; 'samp methods' lists them all)")
    evaluate.add_argument("--keep-ratio", type=float, default=None,
                          help="fraction of audio tokens kept, in (0, 1] (default: 1.0 for --method base, else 0.6)")
    evaluate.add_argument("--threshold", type=float, default=0.85,
                          help="cosine-similarity threshold in [-1, 1] of the merging methods (default: 0.85)")
    evaluate.add_argument("--flavor", default="samp",
                          help="compression flavour: samp (default) or the model family's SA-MAP reference one")
    evaluate.add_argument("--scorer", default="samp", choices=("samp", "evalkit"),
                          help="normalisation/scoring flavour (evalkit reproduces the reference harness)")
    evaluate.add_argument("--lowrank-encoder", type=Path,
                          help="directory written by 'samp lowrank apply': evaluate with that compressed encoder")
    evaluate.add_argument("--data-root", type=Path, help="folder holding <NAME>/<NAME>.jsonl manifests")
    evaluate.add_argument("--config", type=Path, help="Evalkit-style config.yaml naming manifest paths")
    evaluate.add_argument("--task", choices=("asr", "mqa"), default="asr", help="task of a manifest given by path")
    evaluate.add_argument("--lang", default="en", help="language of an ASR manifest given by path")
    evaluate.add_argument("--limit", type=int, help="evaluate only the first N items of each dataset")
    evaluate.add_argument("--batch-size", type=int, default=16,
                          help="utterances per generate call (default: 16; larger batches pay off on a GPU)")
    evaluate.add_argument("--max-new-tokens", type=int, default=256,
                          help="most tokens generated per utterance (default: 256)")
    evaluate.add_argument("--device", default=None,
                          help="torch device: cpu, cuda, cuda:N (default: cuda if available, else cpu)")
    evaluate.add_argument("--seed", type=int, default=0,
                          help="seed of the random method and of the bootstrap confidence intervals (default: 0)")
    mode = evaluate.add_mutually_exclusive_group()
    mode.add_argument("--skip-eval", action="store_true", help="only infer; score later with --reeval")
    mode.add_argument("--reeval", action="store_true",
                      help="only score existing result lines (no model needed) and append their records again")
    evaluate.add_argument("--retry-failed", action="store_true",
                          help="infer again the items whose result line is a failure (a resumed run skips them)")
    evaluate.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    evaluate.set_defaults(func=run_eval)

    data = subparsers.add_parser("data", help="dataset utilities")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    prepare = data_commands.add_parser("prepare", help="turn a downloaded dataset into a manifest + 16 kHz audio")
    prepare.add_argument("name", help="registered dataset name (e.g. LibriSpeech)")
    prepare.add_argument("source", type=Path, nargs="?", default=None,
                         help="LibriSpeech (OpenSLR) folder, or parquet file/folder; for a dataset shipped in Debian "
                              "packages (PocketSphinx-en, Asterisk-en) the install root, default /")
    prepare.add_argument("--out", type=Path, required=True, help="data root to write <NAME>/<NAME>.jsonl into")
    prepare.add_argument("--subset", help="subset name for every item (default: from the source)")
    prepare.set_defaults(func=run_prepare)


def _datasets(args) -> list:
    from samp.eval.datasets import get_dataset
    from samp.eval.identity import manifest_dataset
    from samp.eval.manifest import find_manifest, load_manifest

    out = []
    for entry in [e.strip() for e in args.data.split(",") if e.strip()]:
        path = Path(entry)
        if entry.endswith(".jsonl") or path.is_file():
            spec = manifest_dataset(path, args.task, args.lang)
            manifest = path
        else:
            spec = get_dataset(entry)
            manifest = find_manifest(spec, data_root=args.data_root, config=args.config)
        out.append((spec, load_manifest(manifest, check_audio=not args.reeval, limit=args.limit)))
    if not out:
        raise ValueError("--data names no dataset")
    return out


def _check_counts(args) -> None:
    for option, value in (("--limit", args.limit), ("--max-new-tokens", args.max_new_tokens),
                          ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{option} must be a positive integer, got {value}")


def run_eval(args) -> int:
    from samp.devices import resolve_device
    from samp.eval.identity import ModelIdentity, model_identity, model_name
    from samp.eval.runner import (
        RunConfig,
        adapter_inference,
        check_items,
        check_run_dir,
        distributed_context,
        evaluate,
        format_table,
        install_lowrank_encoder,
    )

    keep_ratio = args.keep_ratio
    if keep_ratio is None:  # base keeps every token; asking for 0.6 of it would be an error
        keep_ratio = 1.0 if args.method == "base" else 0.6
    # Everything a user can get wrong is checked here, before the model loads and before any record is written.
    try:
        _check_counts(args)
        if args.reeval and not (Path(args.model) / "config.json").is_file():
            model = ModelIdentity(model_name(args.model), None)  # scoring needs no checkpoint, only its name
        else:
            model = model_identity(args.model)
        config = RunConfig(model=model.name, model_fingerprint=model.fingerprint, method=args.method,
                           keep_ratio=keep_ratio, threshold=args.threshold, flavor=args.flavor, scorer=args.scorer,
                           batch_size=args.batch_size, seed=args.seed,
                           lowrank_plan=str(args.lowrank_encoder.resolve()) if args.lowrank_encoder else None)
        device = resolve_device(args.device)
        if not args.reeval:
            import samp.models

            adapter_class = samp.models.adapter_class(args.model)
            adapter_class.check_flavor(args.flavor)
            adapter_class.check_method(args.method)
            if args.lowrank_encoder is not None and not args.lowrank_encoder.is_dir():
                raise ValueError(f"--lowrank-encoder {args.lowrank_encoder} does not exist (write it with "
                                 f"'samp lowrank apply')")
        datasets = _datasets(args)
        check_run_dir(args.work_dir, config)
    except ValueError as error:
        print(f"samp eval: {error}", file=sys.stderr)
        return 2
    rank, world_size, barrier, close = distributed_context()
    try:
        import torch

        infer = None
        if not args.reeval:
            import samp.models

            model, processor = samp.models.load(args.model, device=device)
            if args.lowrank_encoder is not None:
                install_lowrank_encoder(model, args.lowrank_encoder)
            adapter = samp.models.adapter_for(model, processor)
            check_items(adapter, datasets)
            infer = adapter_inference(adapter, config, max_new_tokens=args.max_new_tokens)
        device_name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else device
        records = evaluate(config, datasets, args.work_dir, infer, skip_eval=args.skip_eval, reeval=args.reeval,
                           rank=rank, world_size=world_size, barrier=barrier, device=device_name,
                           progress=not args.no_progress, retry_failed=args.retry_failed)
    except ValueError as error:
        print(f"samp eval: {error}", file=sys.stderr)
        return 2
    finally:
        close()
    if records:
        print(format_table(records))
        print(f"records appended to {args.work_dir / 'records.jsonl'}")
    return 0


def run_prepare(args) -> int:
    from collections import Counter

    from samp.eval.datasets import get_dataset
    from samp.eval.packaged_speech import recipe_for
    from samp.eval.prepare import prepare, prepare_packaged

    try:
        spec = get_dataset(args.name)
        if recipe_for(spec.name) is None or args.subset is not None:
            print(f"wrote {prepare(spec, args.source, args.out, subset=args.subset)}")
            return 0
        prepared = prepare_packaged(spec, args.source, args.out)
    except ValueError as error:
        print(f"samp data prepare: {error}", file=sys.stderr)
        return 2
    sizes = prepared.summary["splits"]
    print(f"wrote {prepared.manifest} ({sizes['all']['items']} items, {sizes['all']['seconds'] / 60:.1f} min)")
    for split, path in prepared.split_manifests.items():
        print(f"wrote {path} ({sizes[split]['items']} items, {sizes[split]['seconds'] / 60:.1f} min)")
    reasons = Counter(entry["reason"] for entry in prepared.summary["excluded"])
    if reasons:
        print("left out: " + "; ".join(f"{count} × {reason}" for reason, count in sorted(reasons.items())))
    return 0
