"""Finding functions with tree-sitter: names and line ranges in tricky C and Java, and which files are read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from avatar.errors import AvatarError
from avatar.runtime.functions import find_functions, functions_in_source, source_files

FIXTURES = Path(__file__).parent / "fixtures" / "code"


def _found(paths, language, **kw):
    warnings = []
    functions, files = find_functions(paths, language, warnings.append, **kw)
    return [(Path(f.path).name, f.name, f.start_line, f.end_line) for f in functions], files, warnings


def test_c_functions_with_macros_k_and_r_and_braces_in_strings_and_comments():
    found, files, warnings = _found([FIXTURES / "c"], "c")
    assert found == [
        ("shapes.cpp", "geo::Box::Box", 5, 5),  # C++ files get the C++ grammar
        ("shapes.cpp", "geo::Box::~Box", 6, 6),
        ("shapes.cpp", "geo::Box::operator==", 8, 8),  # area() is only declared in the class
        ("shapes.cpp", "geo::Box::area", 12, 12),
        ("shapes.cpp", "geo::twice", 13, 13),  # inside a template declaration
        ("shapes.cpp", "c_api", 15, 15),  # inside extern "C"
        ("tricky.c", "decode_init", 6, 12),  # av_cold attribute macro; braces in a string, a char and a comment
        ("tricky.c", "old_style", 14, 19),  # K&R parameter declarations
        ("tricky.c", "ptr_ret", 21, 22),  # pointer return type on the line before
        ("tricky.c", "DECLARE_HANDLER(foo)", 24, 27),  # a header made by a macro: named by its text
        ("tricky.c", "in_ifdef", 30, 34),  # inside #ifdef, with #if inside the body
        ("tricky.c", "qemu_abort", 37, 37),
        ("tricky.c", "get_fn", 39, 39),  # returns a function pointer
        ("tricky.c", "attr_fn", 41, 41),  # __attribute__
        ("copy.c", "copy_name", 3, 6),  # sub-folder; declarations without a body are not functions
        ("copy.c", "main", 8, 16),
    ]
    assert files == 3 and warnings == []  # notes.txt is not C


def test_function_text_is_the_whole_definition():
    source = b"/* x */\nint add(int a, int b)\n{\n    return a + b; /* } */\n}\nint z;\n"
    (f,) = functions_in_source(source, "c")
    assert f.code == "int add(int a, int b)\n{\n    return a + b; /* } */\n}" and (f.start_line, f.end_line) == (2, 5)


def test_java_methods_are_qualified_and_bodiless_ones_skipped():
    found, files, _ = _found([FIXTURES / "java"], "java")
    assert found == [
        ("Sorter.java", "Sorter.Sorter", 7, 7),
        ("Sorter.java", "Sorter.bubbleSort", 9, 19),
        ("Sorter.java", "Sorter.sum", 21, 27),
        ("Sorter.java", "Sorter.Shape.printer", 32, 36),  # abstract area() has no body
        ("Sorter.java", "Sorter.Shape.printer.run", 34, 34),  # a method of an anonymous class
        ("Other.java", "Other.add", 4, 6),
        ("Other.java", "Other.sortDescending", 8, 18),
    ]
    assert files == 2


def test_unparsable_and_non_utf8_code_never_raises():
    assert functions_in_source(b"}}}{{{ int ( ;; #if", "c") == []
    (f,) = functions_in_source(b"int caf\xe9(void) { return '\xe9'; }\n", "c")  # Latin-1 source
    assert f.name == "int caf\ufffd(void)" and f.start_line == 1  # the grammar stops the name at the odd byte: header text
    assert functions_in_source(b"", "java") == []


def test_large_binary_and_unreadable_files_are_skipped_with_a_warning(tmp_path):
    (tmp_path / "ok.c").write_text("int ok(void) { return 0; }\n")
    (tmp_path / "big.c").write_text("int big(void) { return 0; }\n" + "/* padding */\n" * 200)
    (tmp_path / "blob.c").write_bytes(b"int f(void) { return 0; }\0\x01\x02")
    (tmp_path / "gone.c").symlink_to(tmp_path / "missing.c")  # a dangling link: listed, cannot be read
    os.mkfifo(tmp_path / "pipe.c")  # reading it would block forever
    found, files, warnings = _found([tmp_path], "c", max_bytes=2048)
    assert [name for _, name, _, _ in found] == ["ok"] and files == 1
    assert sorted(w.split(": ", 1)[1] for w in warnings) == [
        "skipped, 3 KB is over the 2 KB limit (--max-file-size)",
        "skipped, binary file",
        "skipped, cannot read (No such file or directory)",
        "skipped, not a regular file",
    ]


def test_files_named_explicitly_are_read_whatever_their_extension(tmp_path):
    (tmp_path / "code.txt").write_text("int f(void) { return 0; }\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.c").write_text("int hidden(void) { return 0; }\n")
    warnings = []
    assert source_files([tmp_path / "code.txt", tmp_path / "code.txt"], "c", warnings.append) == [tmp_path / "code.txt"]
    assert source_files([tmp_path], "c", warnings.append) == [] and len(warnings) == 1
    assert warnings[0].startswith(f"{tmp_path}: no .c/.h/.cc/.cpp/") and warnings[0].endswith(" files")


def test_a_missing_path_is_an_error(tmp_path):
    with pytest.raises(AvatarError, match="no such file or folder"):
        source_files([tmp_path / "nope"], "c", print)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(AvatarError, match="not a file or folder"):
        source_files([fifo], "c", print)
