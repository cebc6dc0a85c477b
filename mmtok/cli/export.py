"""`mmtok export-hf --checkpoint DIR --out DIR`: a checkpoint as a transformers Llama directory."""

from __future__ import annotations

DTYPES = ("fp32", "bf16", "fp16")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export-hf",
        help="export a checkpoint as a HuggingFace LlamaForCausalLM directory (+ tokenizer)",
        description="Write OUT/config.json + OUT/model.safetensors (loadable with "
        "transformers.LlamaForCausalLM.from_pretrained(OUT)), OUT/mmtok.json and OUT/tokenizer/.",
    )
    p.add_argument("--checkpoint", required=True, help="run directory (its latest checkpoint) or step directory")
    p.add_argument("--out", required=True, help="output directory (written aside, then renamed into place)")
    p.add_argument("--dtype", choices=DTYPES, default="fp32", help="weight dtype in the export (default fp32)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from mmtok.checkpoint import CheckpointError, load_for_inference
    from mmtok.cli import CLIError
    from mmtok.export.hf import export_hf

    try:
        model, run_config, tokenizer = load_for_inference(args.checkpoint)
    except CheckpointError as e:
        raise CLIError(str(e)) from None
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    try:
        out = export_hf(model, run_config.model, args.out, tokenizer=tokenizer, dtype=dtype,
                        overwrite=args.overwrite)
    except FileExistsError as e:
        raise CLIError(str(e)) from None
    n = run_config.model.num_params()
    print(f"exported {n / 1e6:.2f}M parameters ({args.dtype}) to {out}")
    return 0
