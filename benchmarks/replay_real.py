"""`lead-assets replay` on the real CodePro file: the loop as it would have been lived.

Step 15 days, outcomes 14 days after each lead, the shipped defaults, nobody clicking. The months
table is what sales were shown on arrival, next to the first promoted model frozen. Skipped when
the file is absent.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness import Result, progress
from benchmarks.model_real import REAL

SECTION = "Replay of the real history"


def bench_replay(work: Path, quick: bool = False) -> tuple[list[Result], str]:
    if not REAL.exists() or quick:
        progress(f"replay: skipped ({'--quick' if quick else f'{REAL} not found'}; the replay test covers the code)")
        return [], ""
    from lead_assets.replay import run_replay

    result = run_replay(REAL, work / "replay", step_days=15, label_delay_days=14, say=progress)
    summary = result.summary
    months = result.months
    september = months[months["month"] >= "2021-09"]
    results = [
        Result(SECTION, "whole real file replayed (16 steps): wall time", result.seconds, "s",
               target="< 1,200 s", met=result.seconds < 1200),
        Result(SECTION, "leads scored on arrival from 2021-09", 100 * summary["scored_on_arrival_from_september"], "%",
               target=">= 95%", met=summary["scored_on_arrival_from_september"] >= 0.95),
        Result(SECTION, "months from 2021-09 holding P >= 0.65 and R >= 0.75 (or within 0.02 of the best cut-off)",
               float(summary["months_held_from_september"].split(" of ")[0]), f"of {len(september)}",
               target=f"{len(september)} of {len(september)}",
               met=summary["months_held_from_september"] == f"{len(september)} of {len(september)}"),
        Result(SECTION, "months from 2021-09 with calibration error <= 0.03",
               float(summary["months_calibrated_from_september"].split(" of ")[0]), f"of {len(september)}",
               target=f"{len(september)} of {len(september)}",
               met=summary["months_calibrated_from_september"] == f"{len(september)} of {len(september)}"),
    ]
    if "months_beating_frozen_auc_from_december" in summary:
        beaten, of = summary["months_beating_frozen_auc_from_december"].split(" of ")
        results.append(Result(SECTION, "months from 2021-12 where the loop's AUC beats the first model frozen",
                              float(beaten), f"of {of}", target=f"{of} of {of}", met=beaten == of))
    trainings = result.trainings.drop(columns=["champion_before", "run_key"]).round(3)
    appendix = (f"### {SECTION}\n\n`lead-assets replay --data {REAL.name} --step 15d --label-delay 14` "
                "(`python -m benchmarks.run --only replay`). What sales were shown on arrival, per month of lead "
                "creation; `frozen_*`: the first promoted model left alone on the same leads; "
                "`best_precision_at_target_recall`: the best any cut-off on the month's served scores reached at "
                "recall 0.75.\n\n" + months.round(3).to_markdown(index=False)
                + "\n\nEvery training the sensors started, with the gate's verdict:\n\n"
                + trainings.to_markdown(index=False) + "\n")
    return results, appendix
