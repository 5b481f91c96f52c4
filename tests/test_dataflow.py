"""Data-flow graphs: hand-written expected edges for C and Java (assignments, loops, calls, shadowing)."""

from __future__ import annotations

import pytest

from avatar.dataflow import extract


def graph(code: str, language: str) -> list[str]:
    """Edges as text: each occurrence named by its variable and its count so far (x1 is the first x)."""
    flow = extract(code, language)
    seen: dict[str, int] = {}
    labels = []
    for v in flow.nodes:
        seen[v.name] = seen.get(v.name, 0) + 1
        labels.append(f"{v.name}{seen[v.name]}")
    return [f"{labels[n]} {relation} {' '.join(labels[s] for s in sources)}".rstrip() for n, relation, sources in flow.edges]


def test_c_assignments_calls_and_branches():
    code = """int f(int a) {
        int x = a + 1, y;
        x += a;
        y = g(x, "a string");
        if (x) y = x; else y = 3;
        return y;
    }"""
    assert graph(code, "c") == [
        "a1 comesFrom",  # a parameter starts its variable
        "x1 computedFrom a2",
        "a2 comesFrom a1",
        "y1 comesFrom",
        "x2 computedFrom x1 a3",  # a compound assignment also reads the old x
        "a3 comesFrom a2",
        "y2 computedFrom x3",  # through a call's arguments; g is no variable
        "x3 comesFrom x2",
        "x4 comesFrom x3",
        "y3 comesFrom x5",
        "x5 comesFrom x4",
        "y4 comesFrom",  # a constant
        "y5 comesFrom y3 y4",  # both branches reach the return
    ]


def test_c_loops_carry_values_round():
    code = "int s(int n) { int t = 0; for (int i = 0; i < n; i++) t += i; while (t > 9) t--; return t; }"
    assert graph(code, "c") == [
        "n1 comesFrom",
        "t1 comesFrom",
        "i1 comesFrom",
        "i2 comesFrom i1 i3",  # the condition sees i from before the loop and from the update
        "n2 comesFrom n1 n2",
        "i3 computedFrom i4",  # i was last seen in the body
        "t2 computedFrom t1 t2 i4",  # t from before the loop and from the last turn
        "i4 comesFrom i2",
        "t3 comesFrom t1 t2 t4",  # the for loop may not have run at all
        "t4 computedFrom t3",
        "t5 comesFrom t1 t2 t4",
    ]


def test_c_shadowing_ends_with_the_block():
    code = "void f(int a) { if (a) { int a = 2; use(a); } use(a); }"
    assert graph(code, "c") == [
        "a1 comesFrom",
        "a2 comesFrom a1",
        "a3 comesFrom",  # the inner a
        "a4 comesFrom a3",
        "a5 comesFrom a2",  # the outer a again: the inner one is gone
    ]


def test_java_for_each_switch_try_and_lambdas():
    code = """class A {
        int f(List<Integer> xs, int k) {
            int y = k;
            for (int v : xs) { y = y + v; }
            switch (k) { case 1: y = 2; break; default: y = k; }
            try { y = parse(y); } catch (Exception e) { y = e.hashCode(); }
            Runnable r = () -> { int q = y; };
            return this.total + y;
        }
    }"""
    assert graph(code, "java") == [
        "xs1 comesFrom",
        "k1 comesFrom",
        "y1 comesFrom k2",  # a copy
        "k2 comesFrom k1",
        "v1 computedFrom xs2",  # the loop variable from the collection
        "xs2 comesFrom xs1",
        "y2 computedFrom y3 v2",
        "y3 comesFrom y1 y2",  # from before the loop and from the last turn
        "v2 comesFrom v1",
        "k3 comesFrom k2",
        "y4 comesFrom",
        "y5 comesFrom k4",
        "k4 comesFrom k3",
        "y6 computedFrom y7",  # a method call's arguments; parse is no variable
        "y7 comesFrom y1 y2 y4 y5",
        "e1 comesFrom",
        "y8 computedFrom e2",  # hashCode is no variable; e is read
        "e2 comesFrom e1",
        "r1 comesFrom",  # the lambda's body runs later: nothing flows out of it
        "q1 comesFrom y9",
        "y9 comesFrom y6 y8",  # the handler may have run, or not
        "y10 comesFrom y6 y8",  # this.total is a field, not a variable
    ]


@pytest.mark.parametrize("language", ["c", "java"])
def test_code_that_does_not_parse_still_gives_tokens_and_never_raises(language):
    flow = extract("int }} f(( { x = = ; \x00 \ud800", language)
    assert not flow.parsed and len(flow.tokens) > 5
    assert extract("", language).tokens == ()
    deep = "int f() { return " + "(" * 3000 + "x" + ")" * 3000 + "; }"
    assert "x" in extract(deep, language).tokens


def test_tokens_are_the_code_leaves_with_strings_whole_and_no_comments():
    flow = extract('int f() { /* note */ return g("a b", \'c\'); } // end', "c")
    assert flow.tokens == ("int", "f", "(", ")", "{", "return", "g", "(", '"a b"', ",", "'c'", ")", ";", "}")
    assert flow.nodes == ()  # g is a function, not a variable
