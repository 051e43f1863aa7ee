"""The promotion gate at every month-end cut of the real history, next to what happened after it.

For each cut D from 2021-08-31 to 2022-01-31, ``evaluate_csv`` trains the shipped recipe on the
leads up to D, runs the gate's backtests inside that window and asks the live gate's verdict
(``promotion_verdict``, as for a first deployment); the leads after D are the test and only say
whether the model would have held the targets there. The rule was chosen on the backtests (how
much history each fold's model saw); the test columns are reported, never used to choose. The
previous rule (every fold counts, every month blocks) is shown beside it. Skipped when the file
is absent.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from benchmarks.harness import Result, progress
from benchmarks.model_real import REAL

CUTS = ("2021-08-31", "2021-09-30", "2021-10-31", "2021-11-30", "2021-12-31", "2022-01-31")
SECTION = "Promotion gate at every month-end cut"


def _previous_rule(report: dict) -> str:
    """The gate before fold weighting: every fold counts and every month blocks."""
    from lead_assets.core.model.judging import DEFAULT_GATE, gate

    verdict = gate(report["backtest_pooled"], None, DEFAULT_GATE["targets"], months=report["backtest_months"],
                   tolerance=DEFAULT_GATE["month_tolerance"])
    return "promote" if verdict.passed else "refuse: " + "; ".join(verdict.reasons)


def gate_table(cuts=CUTS) -> pd.DataFrame:
    from lead_assets.core.model.file_evaluation import evaluate_csv
    from lead_assets.core.model.recipe import TrainConfig

    rows = []
    for cut in cuts:
        progress(f"gate at the cut {cut}: shipped rule")
        report = evaluate_csv(REAL, train_until=cut)
        progress(f"gate at the cut {cut}: previous rule (every fold)")
        every_fold = evaluate_csv(REAL, train_until=cut, config=replace(TrainConfig(), min_fold_share=0.0))
        pooled = report["backtest_pooled"]
        met = bool(report["targets_met_on_test"])
        promoted = report["gate_verdict"] == "promote"
        rows.append({
            "cut": cut,
            "folds counted": ", ".join(m["month"] for m in report["backtest_months"]),
            "backtest AUC / P / R": f"{pooled['auc']:.3f} / {pooled['precision']:.3f} / {pooled['recall']:.3f}",
            "gate": report["gate_verdict"] if promoted else f"refuse: {report['gate_reasons']}",
            "previous rule": _previous_rule(every_fold),
            "test window": report["test_window"],
            "test AUC / P / R": f"{report['auc']:.3f} / {report['precision']:.3f} / {report['recall']:.3f}",
            "test met targets": "yes" if met else "no",
            "right": "yes" if promoted == met else ("wrong refusal" if met else "wrong promotion"),
        })
    return pd.DataFrame(rows)


def bench_gate(quick: bool = False) -> tuple[list[Result], str]:
    if not REAL.exists():
        progress(f"gate at every cut: skipped ({REAL} not found)")
        return [], ""
    table = gate_table(CUTS[-1:] if quick else CUTS)
    wrong = table[table["right"] != "yes"]
    results = [Result(SECTION, "cuts where the gate's verdict matched the months after the cut",
                      float(len(table) - len(wrong)), f"of {len(table)}", target=f"{len(table)} of {len(table)}",
                      met=wrong.empty)]
    appendix = (f"### {SECTION}\n\n`python -m benchmarks.run --only gate`. Each cut trains on the leads up to it; "
                "`gate` is the live gate's verdict on the backtests inside the window (a first deployment), "
                "`test` is every month after the cut at the production cut-off, only reported.\n\n"
                + table.to_markdown(index=False) + "\n")
    return results, appendix
