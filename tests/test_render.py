from rich.console import Console

from avatar._render import metrics_table, space_summary, times


def test_ratio_text_and_summaries():
    assert times(None) == "n/a" and times(12.345) == "12.3x"
    summary = space_summary({"configurations": {"feasible": 1234, "total": 100000, "feasible_fraction": 0.01234},
                             "splits": 7, "z3_checks": 9, "wall_seconds": 1.5})
    assert summary == "1,234 of 100,000 configurations feasible (1.2340 %); 7 linear splits, 9 z3 checks, 1.50 s"
    console = Console(record=True, width=100)
    console.print(metrics_table("t", {"test": {"accuracy": 0.5, "precision": 0.25, "recall": 1.0, "f1": 0.4}}))
    assert "0.2500" in console.export_text()


def test_tables_show_the_interval_and_the_constant_baseline_beside_each_score():
    from avatar._render import results_table

    test = {"accuracy": 0.6, "precision": 0.5, "recall": 0.7, "f1": 0.58, "roc_auc": 0.64, "examples": 500,
            "interval95": {"accuracy": [0.557, 0.643], "f1": [0.53, 0.63]}, "baseline": {"accuracy": 0.54, "f1": 0.7},
            "prediction_spread": 0.2}
    console = Console(record=True, width=200)
    console.print(metrics_table("student", {"valid": {"accuracy": 0.61, "precision": 0.5, "recall": 0.6, "f1": 0.55}, "test": test}))
    text = console.export_text()
    assert "0.6000 [0.557, 0.643]" in text and "0.5800 [0.530, 0.630]" in text
    baseline_row = next(line for line in text.splitlines() if "constant baseline" in line)
    assert "0.5400" in baseline_row and "0.7000" in baseline_row
    result = {"model": "s", "test": test, "parameters": 10, "size_mb": 1.0, "inputs": {"tokens_per_input": 200},
              "latency_ms": {"median": 1.0, "p90": 2.0}, "throughput": {"examples_per_second": 9.0},
              "energy": {"joules_per_example": 0.1, "method": "estimate"}, "carbon": {"grams_per_1000_examples": 0.01}}
    console = Console(record=True, width=250)
    console.print(results_table([result], "accuracy"))
    row = next(line for line in console.export_text().splitlines() if line.lstrip("│ ").startswith("s "))
    assert "0.6000 [0.557, 0.643]" in row and "0.5400" in row
