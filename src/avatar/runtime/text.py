"""The one whitespace rule for code, applied wherever a model reads it: training, labelling, parity, scanning.

Code's meaning does not depend on blank lines or trailing spaces, but a whitespace-sensitive tokenizer sees
them; Devign's functions carry a blank line after almost every line while files in the wild do not. So line
ends become ``\\n``, trailing whitespace goes, and blank lines are dropped. Indentation is kept.
"""

from __future__ import annotations


def normalize_code(text: str) -> str:
    lines = (line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return "\n".join(line for line in lines if line)
