"""Data-flow graphs of C and Java functions, as GraphCodeBERT reads them (Guo et al., ICLR 2021).

The nodes are the occurrences of variables in the code; an edge says where a node's value comes from:

- ``comesFrom``: a plain copy. A variable read takes its value from the occurrences that last wrote (or read)
  it on some path to here; ``x = y`` and ``int x = y`` take x from y.
- ``computedFrom``: a value built by an expression: ``x = a + f(b)`` and ``int x = a * 2`` compute x from a
  and b; ``x += a`` from a and x's previous occurrences; ``x++`` from x's previous occurrences; the variable
  of ``for (T v : xs)`` from xs.

Flow follows the program: declarations and parameters start a variable; if/else and switch merge the
occurrences reaching the end of each branch; loops are walked twice so that values carried round the loop
reach the top again; a declaration inside a block shadows the outer variable until the block ends. Function
and method names, fields, labels and types are not variables. Token indices are into ``tokens``: the code's
leaves (strings and characters whole, comments dropped), which is how the model's subword tokens are mapped
back to the nodes. Code that does not parse still yields its tokens and whatever graph tree-sitter's
recovered tree gives; extraction never raises on any input.
"""

from __future__ import annotations

from dataclasses import dataclass

from avatar.runtime.parsers import parser

COMES_FROM, COMPUTED_FROM = "comesFrom", "computedFrom"
LANGUAGES = ("c", "java")
WHOLE_TOKENS = {"string_literal", "char_literal", "string", "character_literal", "text_block", "system_lib_string"}
COMMENTS = {"comment", "line_comment", "block_comment"}


@dataclass(frozen=True)
class Variable:
    name: str
    token: int  # index into DataFlow.tokens


@dataclass(frozen=True)
class DataFlow:
    tokens: tuple[str, ...]  # the code's tokens in order (tree-sitter leaves; strings whole; no comments)
    nodes: tuple[Variable, ...]  # every variable occurrence, in token order
    edges: tuple[tuple[int, str, tuple[int, ...]], ...]  # (node, relation, source nodes), one per node, by node index
    parsed: bool  # False when tree-sitter had to recover from errors: the graph is best effort


@dataclass(frozen=True)
class _Grammar:
    declarations: frozenset[str]  # nodes that introduce variables (with or without a value)
    declarators: frozenset[str]  # wrappers whose "declarator"/"name" leads to the declared identifier
    assignments: frozenset[str]
    updates: frozenset[str]  # x++ and friends
    ifs: frozenset[str]
    loops: frozenset[str]
    for_each: frozenset[str]
    switches: frozenset[str]
    blocks: frozenset[str]  # scopes
    lambdas: frozenset[str]
    not_variables: frozenset[tuple[str, str]]  # (parent type, field): identifiers there name no variable
    skip: frozenset[str]  # subtrees with no variables (types, labels, annotations, imports)


GRAMMARS = {
    "c": _Grammar(
        declarations=frozenset({"declaration", "parameter_declaration"}),
        declarators=frozenset({"init_declarator", "pointer_declarator", "array_declarator", "parenthesized_declarator",
                               "attributed_declarator"}),
        assignments=frozenset({"assignment_expression"}),
        updates=frozenset({"update_expression"}),
        ifs=frozenset({"if_statement"}),
        loops=frozenset({"for_statement", "while_statement", "do_statement"}),
        for_each=frozenset(),
        switches=frozenset({"switch_statement"}),
        blocks=frozenset({"compound_statement", "for_statement"}),
        lambdas=frozenset(),
        not_variables=frozenset({("call_expression", "function"), ("field_expression", "field"), ("function_declarator", "declarator"),
                                 ("labeled_statement", "label"), ("goto_statement", "label"), ("preproc_def", "name"),
                                 ("preproc_function_def", "name"), ("enumerator", "name")}),
        skip=frozenset({"primitive_type", "type_identifier", "sized_type_specifier", "struct_specifier", "enum_specifier",
                        "union_specifier", "type_descriptor", "preproc_include", "preproc_def", "preproc_function_def",
                        "comment", "string_literal", "char_literal"}),
    ),
    "java": _Grammar(
        declarations=frozenset({"local_variable_declaration", "formal_parameter", "catch_formal_parameter", "field_declaration",
                                "spread_parameter", "resource"}),
        declarators=frozenset({"variable_declarator"}),
        assignments=frozenset({"assignment_expression"}),
        updates=frozenset({"update_expression"}),
        ifs=frozenset({"if_statement"}),
        loops=frozenset({"for_statement", "while_statement", "do_statement"}),
        for_each=frozenset({"enhanced_for_statement"}),
        switches=frozenset({"switch_expression", "switch_statement"}),
        blocks=frozenset({"block", "for_statement", "enhanced_for_statement", "catch_clause", "lambda_expression"}),
        lambdas=frozenset({"lambda_expression"}),
        not_variables=frozenset({("method_invocation", "name"), ("field_access", "field"), ("method_declaration", "name"),
                                 ("constructor_declaration", "name"), ("class_declaration", "name"),
                                 ("labeled_statement", "label"), ("break_statement", "label"), ("continue_statement", "label"),
                                 ("method_reference", "name"), ("enum_constant", "name")}),
        skip=frozenset({"integral_type", "floating_point_type", "boolean_type", "void_type", "type_identifier", "generic_type",
                        "array_type", "scoped_type_identifier", "annotation", "marker_annotation", "package_declaration",
                        "import_declaration", "scoped_identifier", "line_comment", "block_comment", "string_literal",
                        "character_literal", "text_block", "catch_type", "type_arguments", "type_parameters"}),
    ),
}


State = dict[str, frozenset[int]]  # variable name -> token indices of the occurrences that reach this point


def _merge(*states: State) -> State:
    out: dict[str, frozenset[int]] = {}
    for state in states:
        for name, occ in state.items():
            out[name] = out.get(name, frozenset()) | occ
    return out


class _Extractor:
    def __init__(self, source: bytes, grammar: _Grammar, token_of: dict[tuple[int, int], int]):
        self.source, self.g, self.token_of = source, grammar, token_of
        self.edges: dict[int, tuple[str, set[int]]] = {}  # token index -> (relation, source token indices)
        self.names: dict[int, str] = {}
        self.scopes: list[set[str]] = [set()]  # names declared in each open block

    # --- occurrences -------------------------------------------------------------------------------------

    def _occurrence(self, node) -> tuple[str, int] | None:
        index = self.token_of.get((node.start_byte, node.end_byte))
        if index is None:
            return None
        name = self.source[node.start_byte : node.end_byte].decode("utf-8", errors="replace")
        self.names[index] = name
        return name, index

    def _record(self, index: int, relation: str, sources) -> None:
        old = self.edges.get(index)
        if old is None:
            self.edges[index] = (relation, set(sources))
        else:  # the second walk of a loop: more sources reach the same occurrence
            old[1].update(sources)

    def _is_variable(self, node) -> bool:
        parent = node.parent
        if node.type != "identifier" or parent is None:
            return False
        for parent_type, field in self.g.not_variables:
            if parent.type == parent_type and (child := parent.child_by_field_name(field)) is not None and child.id == node.id:
                return False
        return True

    def _define(self, node, state: State, relation: str, sources: list[int]) -> State:
        occ = self._occurrence(node)
        if occ is None:
            return state
        name, index = occ
        self._record(index, relation, sources)
        return {**state, name: frozenset({index})}

    def _declared_identifier(self, node):
        """The identifier a declarator declares (through pointers, arrays, parentheses)."""
        while node is not None and node.type != "identifier":
            if node.type in self.g.declarators or node.type in self.g.declarations:
                node = node.child_by_field_name("declarator") or node.child_by_field_name("name")
            else:
                return None
        return node

    # --- expressions ---------------------------------------------------------------------------------------

    def expr(self, node, state: State) -> tuple[list[int], State]:
        """The variable occurrences an expression reads (their edges recorded), and the state after it."""
        if node is None or node.type in self.g.skip:
            return [], state
        if node.type == "identifier":
            if not self._is_variable(node):
                return [], state
            occ = self._occurrence(node)
            if occ is None:
                return [], state
            name, index = occ
            self._record(index, COMES_FROM, state.get(name, frozenset()))
            return [index], {**state, name: frozenset({index})}
        if node.type in self.g.assignments:
            return self.assignment(node, state)
        if node.type in self.g.updates:
            target = next((c for c in node.named_children if c.type == "identifier"), None)
            if target is not None and self._is_variable(target):
                occ = self._occurrence(target)
                if occ is not None:
                    name, index = occ
                    self._record(index, COMPUTED_FROM, state.get(name, frozenset()))
                    return [index], {**state, name: frozenset({index})}
        if node.type in self.g.lambdas:
            self.block(node, dict(state))  # its body runs later, if ever: its writes do not flow on
            return [], state
        reads: list[int] = []
        for child in node.named_children:
            got, state = self.expr(child, state)
            reads += got
        return reads, state

    def assignment(self, node, state: State) -> tuple[list[int], State]:
        left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
        operator = node.child_by_field_name("operator")
        sources, state = self.expr(right, state)
        compound = operator is not None and operator.type != "="
        if left is not None and left.type == "identifier" and self._is_variable(left):
            name = self.source[left.start_byte : left.end_byte].decode("utf-8", errors="replace")
            if compound:
                sources = sources + sorted(state.get(name, frozenset()))
            plain = not compound and (right is None or right.type == "identifier" or not sources)
            state = self._define(left, state, COMES_FROM if plain else COMPUTED_FROM, sources)
            index = self.token_of.get((left.start_byte, left.end_byte))
            return ([index] if index is not None else []), state
        reads, state = self.expr(left, state)  # a[i] = ..., p->x = ...: the index and the pointer are read
        return reads + sources, state

    # --- statements ----------------------------------------------------------------------------------------

    def declaration(self, node, state: State) -> State:
        targets = [c for c in node.named_children if c.type in self.g.declarators or c.type == "identifier"]
        if node.type not in ("declaration", "local_variable_declaration", "field_declaration"):
            targets = [node]  # a parameter or a resource: the node is its own declarator
        for target in targets:
            value = target.child_by_field_name("value")
            sources, state = self.expr(value, state) if value is not None else ([], state)
            if target.type == "identifier":
                identifier = target
            else:
                identifier = self._declared_identifier(target.child_by_field_name("declarator") or target.child_by_field_name("name"))
                size = target.child_by_field_name("size")  # int a[n]: n is read
                if size is not None:
                    _, state = self.expr(size, state)
            if identifier is None:
                continue
            plain = value is None or value.type == "identifier" or not sources  # a copy, a constant, or nothing
            state = self._define(identifier, state, COMES_FROM if plain else COMPUTED_FROM, sources)
            self.scopes[-1].add(self.source[identifier.start_byte : identifier.end_byte].decode("utf-8", errors="replace"))
        return state

    def scoped(self, state: State, walk) -> State:
        """``walk(state)`` as a scope: names declared inside stop shadowing the outer ones when it ends."""
        outer = dict(state)
        self.scopes.append(set())
        try:
            state = walk(state)
        finally:
            declared = self.scopes.pop()
        for name in declared:
            if name in outer:
                state = {**state, name: outer[name]}
            else:
                state = {k: v for k, v in state.items() if k != name}
        return state

    def block(self, node, state: State) -> State:
        return self.scoped(state, lambda s: self.children(node, s))

    def children(self, node, state: State) -> State:
        for child in node.named_children:
            state = self.stmt(child, state)
        return state

    def loop(self, node, state: State) -> State:
        """Walk the body twice: what it writes at the end reaches its top on the next turn."""
        g = node.child_by_field_name
        for init in (g("initializer"), g("init")):
            if init is not None:
                state = self.stmt(init, state)
        entry = state
        for _ in range(2):
            turn = state
            if node.type == "do_statement":
                turn = self.stmt(g("body"), turn)
                _, turn = self.expr(g("condition"), turn)
            else:
                _, turn = self.expr(g("condition"), turn)
                turn = self.stmt(g("body"), turn)
                for update in [c for c in node.children_by_field_name("update")]:
                    _, turn = self.expr(update, turn)
            state = _merge(entry, turn)
        return state

    def stmt(self, node, state: State) -> State:
        if node is None or node.type in self.g.skip:
            return state
        t = node.type
        if t in self.g.declarations:
            return self.declaration(node, state)
        if t in self.g.ifs:
            _, state = self.expr(node.child_by_field_name("condition"), state)
            then = self.stmt(node.child_by_field_name("consequence"), dict(state))
            alternative = node.child_by_field_name("alternative")
            other = self.stmt(alternative, dict(state)) if alternative is not None else state
            return _merge(then, other)
        if t == "else_clause":
            return self.children(node, state)
        if t in self.g.for_each:
            return self.for_each(node, state)
        if t in self.g.loops:
            if t in self.g.blocks:  # for (int i = ...): i lives in the loop
                return self.scoped(state, lambda s: self.loop(node, s))
            return self.loop(node, state)
        if t in self.g.switches:
            _, state = self.expr(node.child_by_field_name("condition"), state)
            body = node.child_by_field_name("body")
            ends, running = [state], state
            for case in body.named_children if body is not None else []:
                running = self.stmt(case, _merge(state, running))  # a case is entered directly or by falling through
                ends.append(running)
            return _merge(*ends)
        if t in ("try_statement", "try_with_resources_statement"):
            return self.try_(node, state)
        if t in self.g.blocks:
            return self.block(node, state)
        if t in ("expression_statement", "return_statement", "parenthesized_expression", "throw_statement"):
            _, state = self.expr(node.named_children[0] if node.named_children else None, state)
            return state
        if t in ("function_definition", "method_declaration", "constructor_declaration"):
            return self.function(node, state)
        if t.endswith("expression") or t == "identifier":
            _, state = self.expr(node, state)
            return state
        return self.children(node, state)

    def for_each(self, node, state: State) -> State:
        def walk(state: State) -> State:
            sources, state = self.expr(node.child_by_field_name("value"), state)
            entry = state
            name = node.child_by_field_name("name")
            if name is not None:
                self.scopes[-1].add(self.source[name.start_byte : name.end_byte].decode("utf-8", errors="replace"))
            for _ in range(2):
                turn = self._define(name, state, COMPUTED_FROM, sources) if name is not None else state
                turn = self.stmt(node.child_by_field_name("body"), turn)
                state = _merge(entry, turn)
            return state

        return self.scoped(state, walk)

    def try_(self, node, state: State) -> State:
        """A handler may start anywhere in the try block: from the state before it or after it."""
        def walk(state: State) -> State:
            resources = node.child_by_field_name("resources")
            if resources is not None:
                state = self.children(resources, state)
            entry = state
            state = self.stmt(node.child_by_field_name("body"), state)
            ends = [state] + [self.block(c, _merge(entry, state)) for c in node.named_children if c.type == "catch_clause"]
            state = _merge(*ends)
            for clause in node.named_children:
                if clause.type == "finally_clause":
                    state = self.children(clause, state)
            return state

        return self.scoped(state, walk)

    def function(self, node, state: State) -> State:
        """Parameters start their variables; the body is a scope."""
        self.scopes.append(set())
        try:
            params = node.child_by_field_name("parameters")
            if params is None:  # C: the parameter list sits inside the function declarator
                declarator = node.child_by_field_name("declarator")
                while declarator is not None and params is None:
                    params = declarator.child_by_field_name("parameters")
                    declarator = declarator.child_by_field_name("declarator")
            for p in params.named_children if params is not None else []:
                state = self.stmt(p, state)
            for extra in node.named_children:  # K&R parameter declarations sit between the declarator and the body
                if extra.type == "declaration":
                    state = self.stmt(extra, state)
            state = self.stmt(node.child_by_field_name("body"), state)
        finally:
            self.scopes.pop()
        return state


def _tokens(root, source: bytes) -> tuple[list[str], dict[tuple[int, int], int]]:
    tokens: list[str] = []
    token_of: dict[tuple[int, int], int] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type in COMMENTS:
            continue
        if node.child_count == 0 or node.type in WHOLE_TOKENS:
            text = source[node.start_byte : node.end_byte].decode("utf-8", errors="replace")
            if text.strip():
                token_of[(node.start_byte, node.end_byte)] = len(tokens)
                tokens.append(text)
            continue
        stack.extend(reversed(node.children))
    return tokens, token_of


def extract(code: str, language: str) -> DataFlow:
    """The tokens and data-flow graph of one function (or any fragment of code) in ``language``."""
    if language not in GRAMMARS:
        raise ValueError(f"no data-flow grammar for {language!r}; choose from {', '.join(LANGUAGES)}")
    source = code.encode("utf-8", errors="replace")
    tree = parser(language).parse(source)
    tokens, token_of = _tokens(tree.root_node, source)
    extractor = _Extractor(source, GRAMMARS[language], token_of)
    try:
        extractor.stmt(tree.root_node, {})
    except RecursionError:  # absurdly deep code: keep the tokens and what was found so far
        pass
    order = sorted(extractor.edges)
    node_of = {token: i for i, token in enumerate(order)}
    nodes = tuple(Variable(extractor.names[t], t) for t in order)
    edges = tuple(
        (node_of[t], relation, tuple(sorted(node_of[s] for s in sources if s in node_of)))
        for t, (relation, sources) in ((t, extractor.edges[t]) for t in order)
    )
    return DataFlow(tuple(tokens), nodes, edges, not tree.root_node.has_error)
