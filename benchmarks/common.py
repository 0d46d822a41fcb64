"""Helpers the benchmark scripts share: the `HxW` argument and a plain right-aligned text table."""

from __future__ import annotations

import argparse


def parse_size(text: str, minimum: int = 1) -> tuple[int, int]:
    """`512x1024` -> (512, 1024); an argparse error naming the value otherwise (or a side under `minimum` px)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HxW, e.g. 512x1024") from None
    if min(h, w) < minimum:
        raise argparse.ArgumentTypeError(f"size {text!r}: at least {minimum} px per side")
    return h, w


def table(header: list[str], rows: list[list[str]]) -> str:
    """Columns right-aligned under their header, a dashed rule below it."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([line.format(*header), line.format(*("-" * w for w in widths))] + [line.format(*r) for r in rows])
