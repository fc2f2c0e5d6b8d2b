"""Rewriting one benchmark's section of BENCHMARKS.md: the text between
`<!-- NAME:start -->` and `<!-- NAME:end -->`, appended when missing."""

from __future__ import annotations

import pathlib


def replace_section(path: str, name: str, table: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    file = pathlib.Path(path)
    text = file.read_text()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{table}\n{end}{tail}"
    else:
        text += f"\n{start}\n{table}\n{end}\n"
    file.write_text(text)
