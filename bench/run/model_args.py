"""The `--model-args` grammar: `key=value,...` text -> the keyword arguments of a user's model factory.

`RunConfig.model_args` takes it (`config.parse_model_args_field`); the `py:` and plugin sources call the factory with
the parsed arguments (`segbench.models.user`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any


def _split_top_level(text: str) -> list[str]:
    """Split at the commas outside brackets and quotes: `a=[1,2],b='x,y'` -> [`a=[1,2]`, `b='x,y'`]."""
    parts, depth, quote, start, escaped = [], 0, "", 0, False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _literal(text: str) -> Any:
    """A Python literal where the text is one (`3`, `1e-3`, `True`, `None`, `[1, 2]`, `'x'`), else the text itself.

    `true`, `false`, `none` and `null` in any case are the booleans and None too (quote them to pass the words).
    """
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text


def parse_model_args(text: str | Iterable[str] | None) -> dict[str, Any]:
    """`--model-args "depth=2,widths=[8,16],act=gelu,pretrained=false"` -> the factory's keyword arguments.

    Items are split at commas outside brackets and quotes; values are Python literals where they parse
    (`ast.literal_eval`: ints, floats, strings in quotes, lists, tuples, dicts), booleans and None also in lower case
    (`true`, `false`, `none`, `null`), and the plain text otherwise. Several texts (a repeated option) are joined.

    Raises:
        ValueError: an item without `=`, a key that is not an identifier, a key given twice, or `num_classes`
            (segbench passes that one itself). The message does not name the option: `RunConfig` names the field
            (`ConfigError`), and the command line its flag.
    """
    texts = [] if text is None else [text] if isinstance(text, str) else list(text)
    out: dict[str, Any] = {}
    for part in (p for t in texts for p in _split_top_level(t)):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise ValueError(f"{part.strip()!r} is not key=value (e.g. depth=2,act=gelu)")
        if key == "num_classes":
            raise ValueError("num_classes is set by segbench from the dataset; leave it out")
        if key in out:
            raise ValueError(f"{key} is given twice")
        out[key] = _literal(value)
    return out
