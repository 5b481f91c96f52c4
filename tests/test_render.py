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
