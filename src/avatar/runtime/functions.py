"""Find the functions in C/C++ and Java source files with tree-sitter: what ``avatar scan`` and ``avatar clones`` score.

Functions are found in the syntax tree, not by matching text, so braces in strings and comments, K&R-style
parameter declarations, attribute macros and ``#ifdef`` blocks do not confuse it. C files (and ``.h``) are
read with the C grammar, C++ files with the C++ one (namespaces, classes, templates, ``extern "C"``).
tree-sitter recovers from what it cannot parse (unknown macros), so a file with errors still yields the
functions it can see. Source files are read as bytes; line numbers are 1-based.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from avatar.errors import AvatarError
from avatar.runtime.parsers import parser

CPP_EXTENSIONS = (".cc", ".cpp", ".cxx", ".c++", ".hh", ".hpp", ".hxx", ".h++")
EXTENSIONS = {"c": (".c", ".h", *CPP_EXTENSIONS), "java": (".java",)}  # by what the user asks for: C/C++, or Java
FUNCTION_NODES = {
    "c": ("function_definition",),
    "cpp": ("function_definition",),
    "java": ("method_declaration", "constructor_declaration", "compact_constructor_declaration"),
}
C_NAMES = ("identifier", "field_identifier", "destructor_name", "operator_name", "qualified_identifier", "template_function")
CPP_SCOPES = ("namespace_definition", "class_specifier", "struct_specifier", "union_specifier")
JAVA_TYPES = ("class_declaration", "interface_declaration", "enum_declaration", "record_declaration")
DEFAULT_MAX_BYTES = 1 << 20  # larger files are skipped: generated code, amalgamations
BINARY_SNIFF = 8192  # bytes looked at for a NUL, which text source never has


@dataclass(frozen=True)
class Function:
    path: str  # the file, as found (relative when given relative)
    name: str  # the function's name; Java's are qualified by what encloses them: Outer.Inner.method
    start_line: int  # 1-based, first line of the definition
    end_line: int  # 1-based, line of its closing brace
    code: str  # the definition's text, as the model reads it
    start_column: int = 1  # 1-based byte column where the definition starts (two can share a line)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}"


def _text(source: bytes, node) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8", errors="replace")


def _c_name(source: bytes, node) -> str:
    """The declared name: the innermost name of the declarator chain (through pointers, references, parentheses,
    attributes, function-pointer returns), C++ names qualified by their namespaces and classes; for a
    macro-made header such as ``DEFINE_OP(add) {`` the header's text."""
    declarator = node.child_by_field_name("declarator")
    seen_function = False
    current = declarator
    while current is not None:
        if current.type in C_NAMES:
            if seen_function:
                return _cpp_scope(source, node) + _text(source, current)
            break
        seen_function |= current.type == "function_declarator"
        inner = current.child_by_field_name("declarator")
        if inner is None and current.type == "parenthesized_declarator":
            inner = next((c for c in current.named_children if c.type != "comment"), None)
        current = inner
    body = node.child_by_field_name("body")
    header = source[node.start_byte : body.start_byte if body is not None else node.end_byte]
    return " ".join(header.decode("utf-8", errors="replace").split()) or "<anonymous>"


def _cpp_scope(source: bytes, node) -> str:
    """``outer::inner::`` of the namespaces and classes around a C++ definition (empty in C)."""
    parts = []
    parent = node.parent
    while parent is not None:
        if parent.type in CPP_SCOPES and (name := parent.child_by_field_name("name")) is not None:
            parts.append(_text(source, name))
        parent = parent.parent
    return "".join(p + "::" for p in reversed(parts))


def _java_name(source: bytes, node) -> str:
    name = node.child_by_field_name("name")
    parts = [_text(source, name) if name is not None else "<anonymous>"]
    parent = node.parent
    while parent is not None:
        if parent.type in JAVA_TYPES + FUNCTION_NODES["java"] and (outer := parent.child_by_field_name("name")) is not None:
            parts.append(_text(source, outer))  # classes, and methods around a local or anonymous class
        parent = parent.parent
    return ".".join(reversed(parts))


def functions_in_source(source: bytes, language: str, path: str = "<string>") -> list[Function]:
    """Every function definition with a body, in file order; definitions inside one are not looked for."""
    tree = parser(language).parse(source)
    kinds = FUNCTION_NODES[language]
    found = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type in kinds:
            if node.child_by_field_name("body") is None:  # abstract and interface methods
                continue
            name = _java_name(source, node) if language == "java" else _c_name(source, node)
            found.append(Function(path, name, node.start_point[0] + 1, node.end_point[0] + 1, _text(source, node),
                                  node.start_point[1] + 1))
            if language != "java":
                continue  # no nested functions (C++ lambdas are part of theirs); Java's anonymous and local classes have methods
        stack.extend(reversed(node.children))
    return sorted(found, key=lambda f: (f.start_line, f.start_column))


def source_files(paths: Iterable[Path], language: str, warn: Callable[[str], None]) -> list[Path]:
    """The files to read: files given by name whatever their extension; in folders, recursively, those with
    the language's extensions (hidden folders such as .git are skipped). A path that does not exist is an error."""
    extensions = EXTENSIONS[language]
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = []
            for root, dirs, names in os.walk(path, onerror=lambda e: warn(f"{e.filename}: skipped, cannot list ({e.strerror})")):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [Path(root) / n for n in sorted(names) if n.lower().endswith(extensions)]
            if not found:
                warn(f"{path}: no {'/'.join(extensions)} files")
            files += found
        elif path.exists():
            raise AvatarError("not a file or folder", path)
        else:
            raise AvatarError("no such file or folder", path)
    unique = list(dict.fromkeys(files))  # a file named twice (or inside a folder also given) is read once
    return unique


def read_source(path: Path, max_bytes: int, warn: Callable[[str], None]) -> bytes | None:
    """The file's bytes, or None (with a warning) when it is too large, unreadable or binary."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block, a device never end
            warn(f"{path}: skipped, not a regular file")
            return None
        if info.st_size > max_bytes:
            warn(f"{path}: skipped, {info.st_size / 1024:.0f} KB is over the {max_bytes / 1024:.0f} KB limit (--max-file-size)")
            return None
        source = path.read_bytes()
    except OSError as e:
        warn(f"{path}: skipped, cannot read ({e.strerror or e})")
        return None
    if b"\0" in source[:BINARY_SNIFF]:
        warn(f"{path}: skipped, binary file")
        return None
    return source


def find_functions(paths: Iterable[Path], language: str, warn: Callable[[str], None],
                   max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[list[Function], int]:
    """Every function in the source files under ``paths``, and how many files were read."""
    functions: list[Function] = []
    read = 0
    for path in source_files(paths, language, warn):
        source = read_source(path, max_bytes, warn)
        if source is None:
            continue
        read += 1
        grammar = "cpp" if language == "c" and path.suffix.lower() in CPP_EXTENSIONS else language
        functions += functions_in_source(source, grammar, str(path))
    return functions, read
