"""Find the functions in source files with tree-sitter: what ``avatar scan`` and ``avatar clones`` score.

Languages: C/C++, Java, Python, JavaScript, Go. Functions are found in the syntax tree, not by matching text, so
braces in strings and comments, K&R-style parameter declarations, attribute macros and ``#ifdef`` blocks do not
confuse it. C files (and ``.h``) are read with the C grammar, C++ files with the C++ one (namespaces, classes,
templates, ``extern "C"``). Names are qualified by what encloses them (classes, Go receivers). A function inside
another is part of it and not looked for on its own, except in Java, whose local and anonymous classes have
methods. Python functions include their decorators; JavaScript's are declarations, methods and functions or
arrow functions with a block body bound to a variable. tree-sitter recovers from what it cannot parse (unknown
macros), so a file with errors still yields the functions it can see. Source files are read as bytes; line
numbers are 1-based.
"""

from __future__ import annotations

import os
import stat
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from avatar.errors import AvatarError
from avatar.runtime.parsers import parser

CPP_EXTENSIONS = (".cc", ".cpp", ".cxx", ".c++", ".hh", ".hpp", ".hxx", ".h++")
EXTENSIONS = {  # files looked for in folders, by the model's language (C and C++ models read both)
    "c": (".c", ".h", *CPP_EXTENSIONS), "cpp": (".c", ".h", *CPP_EXTENSIONS), "java": (".java",), "python": (".py",),
    "javascript": (".js", ".mjs", ".cjs", ".jsx"), "go": (".go",),
}
FUNCTION_NODES = {
    "c": ("function_definition",),
    "cpp": ("function_definition",),
    "java": ("method_declaration", "constructor_declaration", "compact_constructor_declaration"),
    "python": ("function_definition",),
    "javascript": ("function_declaration", "generator_function_declaration", "method_definition", "variable_declarator"),
    "go": ("function_declaration", "method_declaration"),
}
SCOPES = {  # what qualifies a name, by language
    "python": ("class_definition",),
    "javascript": ("class_declaration", "class"),
}
JS_FUNCTION_VALUES = ("arrow_function", "function_expression", "function", "generator_function")
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


def _scoped_name(source: bytes, node, language: str, name: str) -> str:
    """``name`` qualified by the classes around it (Python, JavaScript)."""
    parts = [name]
    parent = node.parent
    while parent is not None:
        if parent.type in SCOPES[language] and (outer := parent.child_by_field_name("name")) is not None:
            parts.append(_text(source, outer))
        parent = parent.parent
    return ".".join(reversed(parts))


def _go_name(source: bytes, node) -> str:
    """A Go function's name; a method's with its receiver's type: ``(*T).M`` as ``T.M``."""
    name = _text(source, node.child_by_field_name("name"))
    receiver = node.child_by_field_name("receiver")
    if receiver is None:
        return name
    kind = next((n for n in _walk(receiver) if n.type == "type_identifier"), None)
    return f"{_text(source, kind)}.{name}" if kind is not None else name


def _walk(node):
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def _definition(source: bytes, node, language: str) -> tuple[object, str] | None:
    """(node whose text is the function, its name) of a function node with a body; None when it is not one (a
    declaration, a JavaScript variable bound to something else)."""
    if language == "javascript" and node.type == "variable_declarator":
        value = node.child_by_field_name("value")
        if value is None or value.type not in JS_FUNCTION_VALUES or (value.child_by_field_name("body") or value).type != "statement_block":
            return None
        outer = node.parent if node.parent is not None and node.parent.type in ("lexical_declaration", "variable_declaration") else node
        return outer, _text(source, node.child_by_field_name("name"))
    if node.child_by_field_name("body") is None:  # abstract and interface methods, prototypes
        return None
    if language == "java":
        return node, _java_name(source, node)
    if language in ("c", "cpp"):
        return node, _c_name(source, node)
    if language == "go":
        return node, _go_name(source, node)
    name = _scoped_name(source, node, language, _text(source, node.child_by_field_name("name")))
    if language == "python" and node.parent is not None and node.parent.type == "decorated_definition":
        return node.parent, name  # its decorators are part of it
    return node, name


def functions_in_source(source: bytes, language: str, path: str = "<string>") -> list[Function]:
    """Every function definition with a body, in file order; definitions inside one are not looked for (except
    in Java, whose local and anonymous classes have methods)."""
    tree = parser(language).parse(source)
    kinds = FUNCTION_NODES[language]
    found = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type in kinds and (definition := _definition(source, node, language)) is not None:
            outer, name = definition
            code = _text(source, outer)
            if language == "python":  # a method reads as the same function at top level: its indentation is relative
                indent = source[source.rfind(b"\n", 0, outer.start_byte) + 1 : outer.start_byte].decode("utf-8", errors="replace")
                code = textwrap.dedent(indent + code) if not indent.strip() else code
            found.append(Function(path, name, outer.start_point[0] + 1, outer.end_point[0] + 1, code, outer.start_point[1] + 1))
            if language != "java":
                continue  # no nested functions (C++ lambdas, Python inner functions are part of theirs)
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
