"""The one tree-sitter parser loader: grammars from their per-language wheels (no download at run time)."""

from __future__ import annotations

from functools import cache

from avatar.errors import AvatarError

LANGUAGES = ("c", "cpp", "java")


@cache
def parser(language: str):
    """A tree-sitter parser for ``language`` (c, cpp or java), made once per process."""
    from tree_sitter import Language, Parser

    if language == "c":
        import tree_sitter_c as grammar
    elif language == "cpp":
        import tree_sitter_cpp as grammar
    elif language == "java":
        import tree_sitter_java as grammar
    else:
        raise AvatarError(f"unknown language {language!r}; choose from {', '.join(LANGUAGES)}")
    return Parser(Language(grammar.language()))
