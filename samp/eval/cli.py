"""``samp eval`` and ``samp data prepare``: argument parsing only; the work is in the library."""
from __future__ import annotations

import sys
from pathlib import Path


def register(subparsers) -> None:
    evaluate = subparsers.add_parser(
        "eval", help="evaluate a model (with token compression) on ASR / MQA datasets",
        description="Infer (resumable, sharded with torchrun), score and append records to <work-dir>/records.jsonl.")
    evaluate.add_argument("--model", required=True, help="checkpoint directory (its name labels the run)")
    evaluate.add_argument("--data", required=True,
                          help="comma-separated dataset names (e.g. LibriSpeech,AISHELL-1) or manifest .jsonl paths")
    evaluate.add_argument("--work-dir", required=True, type=Path)
    evaluate.add_argument("--method", default="samp")
    evaluate.add_argument("--keep-ratio", type=float, default=None,
                          help="fraction of audio tokens kept (default: 1.0 for --method base, else 0.6)")
    evaluate.add_argument("--threshold", type=float, default=0.85)
    evaluate.add_argument("--flavor", default="samp", help="compression flavour: samp or the model's reference one")
    evaluate.add_argument("--scorer", default="samp", choices=("samp", "evalkit"),
                          help="normalisation/scoring flavour (evalkit reproduces the reference harness)")
    evaluate.add_argument("--lowrank-encoder", type=Path,
                          help="directory written by 'samp lowrank apply': evaluate with that compressed encoder")
    evaluate.add_argument("--data-root", type=Path, help="folder holding <NAME>/<NAME>.jsonl manifests")
    evaluate.add_argument("--config", type=Path, help="Evalkit-style config.yaml naming manifest paths")
    evaluate.add_argument("--task", choices=("asr", "mqa"), default="asr", help="task of a manifest given by path")
    evaluate.add_argument("--lang", default="en", help="language of an ASR manifest given by path")
    evaluate.add_argument("--limit", type=int, help="evaluate only the first N items of each dataset")
    evaluate.add_argument("--batch-size", type=int, default=1)
    evaluate.add_argument("--max-new-tokens", type=int, default=256)
    evaluate.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    evaluate.add_argument("--seed", type=int, default=0)
    mode = evaluate.add_mutually_exclusive_group()
    mode.add_argument("--skip-eval", action="store_true", help="only infer; score later with --reeval")
    mode.add_argument("--reeval", action="store_true", help="only score existing result lines (no model needed)")
    evaluate.add_argument("--retry-failed", action="store_true",
                          help="infer again the items whose result line is a failure (a resumed run skips them)")
    evaluate.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    evaluate.set_defaults(func=run_eval)

    data = subparsers.add_parser("data", help="dataset utilities")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    prepare = data_commands.add_parser("prepare", help="turn a downloaded dataset into a manifest + 16 kHz audio")
    prepare.add_argument("name", help="registered dataset name (e.g. LibriSpeech)")
    prepare.add_argument("source", type=Path, help="LibriSpeech (OpenSLR) folder, or parquet file/folder")
    prepare.add_argument("--out", type=Path, required=True, help="data root to write <NAME>/<NAME>.jsonl into")
    prepare.add_argument("--subset", help="subset name for every item (default: from the source)")
    prepare.set_defaults(func=run_prepare)


def _datasets(args) -> list:
    from samp.eval.datasets import custom_dataset, get_dataset
    from samp.eval.manifest import find_manifest, load_manifest

    out = []
    for entry in [e.strip() for e in args.data.split(",") if e.strip()]:
        path = Path(entry)
        if entry.endswith(".jsonl") or path.is_file():
            # <NAME>.jsonl names its dataset; a generic manifest.jsonl takes its folder's name
            name = path.parent.name if path.stem == "manifest" else path.stem
            try:
                spec = get_dataset(name)
            except ValueError:
                spec = custom_dataset(name, args.task, args.lang if args.task == "asr" else None)
            manifest = path
        else:
            spec = get_dataset(entry)
            manifest = find_manifest(spec, data_root=args.data_root, config=args.config)
        out.append((spec, load_manifest(manifest, check_audio=not args.reeval, limit=args.limit)))
    if not out:
        raise ValueError("--data names no dataset")
    return out


def run_eval(args) -> int:
    from samp.eval.runner import (
        RunConfig,
        adapter_inference,
        check_items,
        distributed_context,
        evaluate,
        format_table,
        install_lowrank_encoder,
    )

    keep_ratio = args.keep_ratio
    if keep_ratio is None:  # base keeps every token; asking for 0.6 of it would be an error
        keep_ratio = 1.0 if args.method == "base" else 0.6
    try:
        config = RunConfig(model=str(args.model), method=args.method, keep_ratio=keep_ratio,
                           threshold=args.threshold, flavor=args.flavor, scorer=args.scorer,
                           batch_size=args.batch_size, seed=args.seed,
                           lowrank_plan=str(args.lowrank_encoder) if args.lowrank_encoder else None)
        datasets = _datasets(args)
    except ValueError as error:
        print(f"samp eval: {error}", file=sys.stderr)
        return 2
    rank, world_size, barrier, close = distributed_context()
    try:
        import torch

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        infer = None
        if not args.reeval:
            import samp.models

            model, processor = samp.models.load(args.model, device=device)
            if args.lowrank_encoder is not None:
                install_lowrank_encoder(model, args.lowrank_encoder)
            adapter = samp.models.adapter_for(model, processor)
            check_items(adapter, datasets)
            infer = adapter_inference(adapter, config, max_new_tokens=args.max_new_tokens)
        device_name = torch.cuda.get_device_name() if device.startswith("cuda") else device
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
    from samp.eval.datasets import get_dataset
    from samp.eval.prepare import prepare

    try:
        manifest = prepare(get_dataset(args.name), args.source, args.out, subset=args.subset)
    except ValueError as error:
        print(f"samp data prepare: {error}", file=sys.stderr)
        return 2
    print(f"wrote {manifest}")
    return 0
