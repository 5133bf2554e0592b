"""``sparsekit models``: list the built-in zoo."""

from __future__ import annotations

from rich.table import Table

from sparsekit.cli.common import emit, out


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list built-in models and their arguments", description="List the built-in model zoo. Any argument can be overridden with --model-arg KEY=VALUE.")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from sparsekit.models.zoo import ZOO

    payload = {name: {"description": e.description, "defaults": e.defaults} for name, e in ZOO.items()}
    if args.json:
        emit(args, payload)
        return 0
    t = Table(title="built-in models")
    for col in ("name", "description", "arguments (defaults)"):
        t.add_column(col)
    for name, e in ZOO.items():
        t.add_row(name, e.description, " ".join(f"{k}={v}" for k, v in e.defaults.items()))
    out.print(t)
    out.print("Also: path/to/file.py:factory, pkg.module:factory, hf:DIR (a Hugging Face save_pretrained folder; needs transformers), torchvision:NAME (needs torchvision), or a checkpoint .pt")
    return 0
