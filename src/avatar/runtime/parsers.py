"""The one tree-sitter parser loader: grammars from their per-language wheels (no download at run time)."""

from __future__ import annotations

from functools import cache

from avatar.errors import AvatarError

LANGUAGES = ("c", "cpp", "java", "python", "javascript", "go")


@cache
def parser(language: str):
    """A tree-sitter parser for ``language`` (one of ``LANGUAGES``), made once per process."""
    from tree_sitter import Language, Parser

    if language == "c":
        import tree_sitter_c as grammar
    elif language == "cpp":
        import tree_sitter_cpp as grammar
    elif language == "java":
        import tree_sitter_java as grammar
    elif language == "python":
        import tree_sitter_python as grammar
    elif language == "javascript":
        import tree_sitter_javascript as grammar
    elif language == "go":
        import tree_sitter_go as grammar
    else:
        raise AvatarError(f"unknown language {language!r}; choose from {', '.join(LANGUAGES)}")
    return Parser(Language(grammar.language()))
