"""Step 9's logic: the paper's results table, the figures, as Markdown + HTML + JSON + PNG.

Inputs of `build_report`:

- `cells`: one dict per trained model of the grid::

      {"algorithm": "dpo",          # "sft" for the baseline
       "signal": "entropy",         # "none" for sft
       "seed": 0,                   # training seed; Δ vs SFT pairs with the sft cell of this seed
       "summary": {...},            # the summary `evaluate_model` returned for this model
       "per_question": pa.Table}    # its per-question table, or the path of that table's
                                    # Parquet file; only eval_set, question_id, correct are read

- `base`: the same for the base model, without algorithm/signal/seed (greedy decoding is
  deterministic, so one base evaluation serves every seed).
- `saturation_summary`: the `saturate` step's summary: "histogram" ({"<accuracy>": questions},
  accuracy as a "0.875" string), "questions", "saturated_questions", "saturated_fraction",
  "threshold", "kept_solutions" (each optional except the histogram).
- `calibration_summary`: each signal's agreement with the external judge::

      {"reference": "external_judge",             # optional, names the judge
       "signals": {"entropy": {"pairwise_agreement": {"mean": .., "lo": .., "hi": ..},
                               "cohen_kappa": {...}, "kendall_tau": {...},
                               "n_pairs": 240},     # plain numbers are shown, not plotted
                   ...}}

  (without a "signals" key, the top-level dict entries are taken as the signals). Interval
  dicts are `satk8s.evaluation.Interval._asdict()`; "value" is accepted for "mean".
- `calibration_markdown`: the calibrate step's own table; used verbatim in report.md instead
  of the one rendered here from the summary.

The table has one row per base model and per cell (algorithm / signal), one column per eval
set. A table cell shows accuracy in % ± half the width of its 95% bootstrap CI, then Δ vs base
and Δ vs SFT in percentage points with their 95% paired-bootstrap CIs over the same questions
and `p_H`, the two-sided bootstrap p-value Holm-adjusted across every Δ of the table (the
report's family of comparisons). With several training seeds, a row is the mean over seeds
and its intervals come from a bootstrap over seeds x questions; the per-seed rows follow in
their own table (not part of the family). A cell whose judge failed the health gate (its
summary's "gated") is shown as gated, with the reasons, and has no numbers. Each trained
cell's training-set weight spread (max/min weight, effective sample size) is listed.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from satk8s.errors import DataError
from satk8s.evaluation import (
    compare_runs,
    hierarchical_bootstrap_diff,
    holm_adjust,
)
from satk8s.report.plots import accuracy_plot, calibration_plot, saturation_plot

FIGURES = {
    "accuracy": "accuracy.png",
    "calibration": "calibration.png",
    "saturation": "saturation.png",
}
# The table's other evaluation numbers (pass@k / maj@k appear only when configured).
_MORE_METRICS = ("strict_match", "flexible_extract", "pass_at_k", "maj_at_k")


def build_report(
    cells: Sequence[Mapping[str, Any]],
    base: Mapping[str, Any],
    saturation_summary: Mapping[str, Any] | None,
    calibration_summary: Mapping[str, Any] | None,
    calibration_markdown: str | None,
    out_dir: Path,
) -> dict[str, Any]:
    """Write report.md, report.html (self-contained), report.json and the PNGs into `out_dir`.

    Returns {"markdown": path, "html": path, "json": path, "table_markdown": str}.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    eval_sets = list(_eval_sets(base, "base"))
    trained = [c for c in cells if not c.get("gated")]
    gated = [c for c in cells if c.get("gated")]
    seed_rows = _rows(trained, base, eval_sets)
    several_seeds = len({c["seed"] for c in cells}) > 1
    rows = _seed_means(trained, base, eval_sets) if several_seeds else seed_rows
    rows += [_gated_row(c, several_seeds) for c in gated]
    _holm(rows)
    calibration = _calibration(calibration_summary)

    plotted = [r for r in rows if not r.get("gated")]
    figures = {
        "accuracy": accuracy_plot(
            [r["label"] for r in plotted],
            eval_sets,
            {e: [_triple(r["eval_sets"][e]["accuracy"]) for r in plotted] for e in eval_sets},
            out_dir / FIGURES["accuracy"],
        )
    }
    if calibration and calibration["metrics"]:
        figures["calibration"] = calibration_plot(
            list(calibration["signals"]),
            calibration["metrics"],
            {
                s: {m: _triple(v) for m, v in ms.items() if isinstance(v, dict)}
                for s, ms in calibration["signals"].items()
            },
            calibration["reference"],
            out_dir / FIGURES["calibration"],
        )
    if saturation_summary and saturation_summary.get("histogram"):
        figures["saturation"] = saturation_plot(
            saturation_summary["histogram"],
            saturation_summary.get("threshold"),
            out_dir / FIGURES["saturation"],
        )

    for name, filename in FIGURES.items():
        if name not in figures:  # a figure left from an earlier report in the same directory
            (out_dir / filename).unlink(missing_ok=True)

    table_md = _table_markdown(rows, eval_sets)
    seed_md = _table_markdown(seed_rows[1:], eval_sets) if several_seeds else None
    paths = {
        "markdown": out_dir / "report.md",
        "html": out_dir / "report.html",
        "json": out_dir / "report.json",
    }
    paths["markdown"].write_text(
        _markdown(
            table_md,
            seed_md,
            rows,
            eval_sets,
            saturation_summary,
            calibration,
            calibration_markdown,
            figures,
            base,
        ),
        encoding="utf-8",  # Δ and ±: a pod's POSIX locale would otherwise fail to encode them
    )
    paths["html"].write_text(
        _html(
            rows, eval_sets, saturation_summary, calibration, calibration_markdown, figures, base
        ),
        encoding="utf-8",
    )
    paths["json"].write_text(
        json.dumps(
            {
                "eval_sets": eval_sets,
                "bootstrap": base["summary"].get("bootstrap", {}),
                "multiplicity": {
                    "method": "holm",
                    "comparisons": _family_size(rows),
                    "p_value": "two-sided paired bootstrap, Holm-adjusted across the table",
                },
                "rows": rows,
                "seed_rows": seed_rows if several_seeds else None,
                "saturation": saturation_summary,
                "calibration": calibration_summary,
                "figures": {name: p.name for name, p in figures.items()},
            },
            indent=2,
            default=_json_default,
        ),
        encoding="utf-8",
    )
    return {
        "markdown": str(paths["markdown"]),
        "html": str(paths["html"]),
        "json": str(paths["json"]),
        "table_markdown": table_md,
    }


# -- the numbers -------------------------------------------------------------------------------


def _rows(
    cells: Sequence[Mapping[str, Any]], base: Mapping[str, Any], eval_sets: list[str]
) -> list[dict[str, Any]]:
    """Base row first, then sft, then the other cells by algorithm, signal and seed in the
    order they first appear in `cells`; each with its accuracies and paired differences."""
    for i, cell in enumerate(cells):
        missing = {"algorithm", "signal", "seed", "summary", "per_question"} - set(cell)
        if missing:
            raise DataError(f"report cell {i}", f"missing keys {sorted(missing)}")
    keys = [(c["algorithm"], c["signal"], c["seed"]) for c in cells]
    if len(set(keys)) != len(keys):
        raise DataError("report cells", "the same (algorithm, signal, seed) appears twice")
    algorithms = list(dict.fromkeys(["sft", *(k[0] for k in keys)]))
    signals = list(dict.fromkeys(k[1] for k in keys))
    ordered = sorted(
        cells,
        key=lambda c: (algorithms.index(c["algorithm"]), signals.index(c["signal"]), c["seed"]),
    )
    several_seeds = len({k[2] for k in keys}) > 1
    boot = base["summary"].get("bootstrap", {})
    n_boot, seed = int(boot.get("n_boot", 1000)), int(boot.get("seed", 0))

    base_table = _per_question(base, "base")
    sft = {c["seed"]: c for c in cells if c["algorithm"] == "sft"}
    sft_tables = {s: _per_question(c, f"sft seed {s}") for s, c in sft.items()}
    rows = [_row("base", None, None, None, base, eval_sets, {}, {})]
    for cell in ordered:
        name = _label(cell, several_seeds)
        table = _per_question(cell, name)
        _eval_sets(cell, name, expected=eval_sets)
        vs_base = compare_runs(table, base_table, n_boot, seed)
        is_sft = cell["algorithm"] == "sft"
        vs_sft = (
            {}
            if is_sft or cell["seed"] not in sft_tables
            else compare_runs(table, sft_tables[cell["seed"]], n_boot, seed)
        )
        rows.append(
            _row(
                name,
                cell["algorithm"],
                cell["signal"],
                cell["seed"],
                cell,
                eval_sets,
                vs_base,
                vs_sft,
            )
        )
    return rows


def _row(
    label: str,
    algorithm: str | None,
    signal: str | None,
    seed: int | None,
    run: Mapping[str, Any],
    eval_sets: list[str],
    vs_base: dict,
    vs_sft: dict,
) -> dict:
    summary = run["summary"]["eval_sets"]
    return {
        "label": label,
        "algorithm": algorithm,
        "signal": signal,
        "seed": seed,
        "model": run["summary"].get("model"),
        "gated": None,
        "training_set": run["summary"].get("training_set"),
        "eval_sets": {
            e: {
                "accuracy": summary[e]["accuracy"],
                "delta_base": vs_base.get(e),
                "delta_sft": vs_sft.get(e),
                "more": {m: summary[e][m] for m in _MORE_METRICS if m in summary[e]},
            }
            for e in eval_sets
        },
    }


def _gated_row(cell: Mapping[str, Any], several_seeds: bool) -> dict[str, Any]:
    """A cell whose judge failed the health gate: its reasons, no numbers."""
    label = _label(cell, several_seeds=False)
    if several_seeds:
        label = f"{label} (seed {cell['seed']})"
    return {
        "label": label,
        "algorithm": cell["algorithm"],
        "signal": cell["signal"],
        "seed": cell["seed"],
        "model": None,
        "gated": cell["gated"],
        "training_set": None,
        "eval_sets": {},
    }


def _seed_means(
    cells: Sequence[Mapping[str, Any]], base: Mapping[str, Any], eval_sets: list[str]
) -> list[dict[str, Any]]:
    """One row per (algorithm, signal) over its seeds: the mean accuracy and the Δs with
    intervals from a bootstrap over seeds x questions (`hierarchical_bootstrap_diff`)."""
    boot = base["summary"].get("bootstrap", {})
    n_boot, seed = int(boot.get("n_boot", 1000)), int(boot.get("seed", 0))
    base_correct = _correct(_per_question(base, "base"))
    groups: dict[tuple[str, str], dict[int, Mapping[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["algorithm"], cell["signal"]), {})[cell["seed"]] = cell
    order = sorted(groups, key=lambda k: (k[0] != "sft",))
    sft = {
        s: _correct(_per_question(c, f"sft seed {s}"))
        for s, c in groups.get(("sft", "none"), {}).items()
    }
    rows = [_row("base", None, None, None, base, eval_sets, {}, {})]
    for algorithm, signal in order:
        runs = groups[(algorithm, signal)]
        correct = {
            s: _correct(_per_question(c, f"{algorithm} / {signal} seed {s}"))
            for s, c in runs.items()
        }
        label = "sft" if algorithm == "sft" else f"{algorithm} / {signal}"
        label += f" ({len(runs)} seeds)"
        per_set: dict[str, Any] = {}
        for e in eval_sets:
            a = {s: c[e] for s, c in correct.items()}
            zero = {s: dict.fromkeys(c[e], 0.0) for s, c in correct.items()}
            acc = hierarchical_bootstrap_diff(a, zero, n_boot, seed, what=label)
            vs_base = hierarchical_bootstrap_diff(
                a, {s: base_correct[e] for s in a}, n_boot, seed, what=label
            )
            vs_sft = None
            if algorithm != "sft" and set(a) <= set(sft):
                vs_sft = hierarchical_bootstrap_diff(
                    a, {s: sft[s][e] for s in a}, n_boot, seed, what=label
                )
            n = len(next(iter(a.values())))
            per_set[e] = {
                "accuracy": {"mean": acc.diff, "lo": acc.lo, "hi": acc.hi},
                "delta_base": {**vs_base._asdict(), "n_questions": n},
                "delta_sft": None if vs_sft is None else {**vs_sft._asdict(), "n_questions": n},
                "more": {},
            }
        first = next(iter(runs.values()))
        rows.append(
            {
                "label": label,
                "algorithm": algorithm,
                "signal": signal,
                "seed": sorted(runs),
                "model": None,
                "gated": None,
                "training_set": first["summary"].get("training_set"),
                "eval_sets": per_set,
            }
        )
    return rows


def _correct(table: pa.Table) -> dict[str, dict[str, float]]:
    """{eval_set: {question_id: 1.0 or 0.0}}."""
    out: dict[str, dict[str, float]] = {}
    for name, qid, ok in zip(
        table.column("eval_set").to_pylist(),
        table.column("question_id").to_pylist(),
        table.column("correct").to_pylist(),
        strict=True,
    ):
        out.setdefault(name, {})[qid] = float(bool(ok))
    return out


def _deltas(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every Δ of the table, in row and eval-set order: the report's family of comparisons."""
    found = []
    for row in rows:
        for cell in row["eval_sets"].values():
            for key in ("delta_base", "delta_sft"):
                if cell.get(key) is not None:
                    found.append(cell[key])
    return found


def _family_size(rows: Sequence[Mapping[str, Any]]) -> int:
    return len(_deltas(rows))


def _holm(rows: Sequence[Mapping[str, Any]]) -> None:
    """Add `p_holm` to every Δ of the table: its two-sided p-value, Holm-adjusted across all."""
    deltas = _deltas(rows)
    for delta, adjusted in zip(
        deltas, holm_adjust([d.get("p_two_sided") for d in deltas]), strict=True
    ):
        delta["p_holm"] = adjusted


def _label(cell: Mapping[str, Any], several_seeds: bool) -> str:
    label = "sft" if cell["algorithm"] == "sft" else f"{cell['algorithm']} / {cell['signal']}"
    return f"{label} (seed {cell['seed']})" if several_seeds else label


def _per_question(run: Mapping[str, Any], name: str) -> pa.Table:
    table = run.get("per_question")
    if isinstance(table, pa.Table):
        return table
    if isinstance(table, (str, Path)) and Path(table).is_file():
        return pq.read_table(table)
    raise DataError(name, f"per_question must be a pyarrow Table or a Parquet file, got {table!r}")


def _eval_sets(run: Mapping[str, Any], name: str, expected: list[str] | None = None) -> list[str]:
    found = list(run.get("summary", {}).get("eval_sets", {}))
    if not found:
        raise DataError(name, "its summary has no eval_sets; pass what evaluate_model returned")
    if expected is not None and set(found) != set(expected):
        raise DataError(
            name,
            f"evaluated on {sorted(found)} but the base model on "
            f"{sorted(expected)}; evaluate every model on the same eval sets",
        )
    return found


def _calibration(summary: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """{"reference", "signals": {signal: {metric: interval dict or number}}, "metrics": the
    metrics that have intervals, in first-seen order}, or None."""
    if not summary:
        return None
    signals = summary.get("signals")
    if not isinstance(signals, Mapping):
        signals = {k: v for k, v in summary.items() if isinstance(v, Mapping)}
    signals = {s: {m: _interval(v) for m, v in ms.items()} for s, ms in signals.items()}
    metrics = list(
        dict.fromkeys(m for ms in signals.values() for m, v in ms.items() if isinstance(v, dict))
    )
    columns = list(dict.fromkeys(m for ms in signals.values() for m in ms))
    return {
        "reference": str(summary.get("reference", "external judge")),
        "signals": signals,
        "metrics": metrics,
        "columns": columns,
    }


def _interval(value: Any) -> Any:
    """{"mean", "lo", "hi"} from an interval-like dict; other values pass through."""
    if isinstance(value, Mapping) and {"lo", "hi"} <= set(value):
        mean = value.get("mean", value.get("value"))
        if mean is not None and value["lo"] is not None and value["hi"] is not None:
            return {"mean": float(mean), "lo": float(value["lo"]), "hi": float(value["hi"])}
    return value


def _triple(interval: Mapping[str, float]) -> tuple[float, float, float]:
    return interval["mean"], interval["lo"], interval["hi"]


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# -- text ------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _delta(x: float) -> str:
    return f"{round(100 * x, 1) + 0.0:+.1f}"  # + 0.0 turns a rounded -0.0 into +0.0


def _accuracy_text(acc: Mapping[str, float]) -> str:
    """Accuracy in % ± half the CI width (the percentile CI may be asymmetric; JSON has both ends)."""
    return f"{_pct(acc['mean'])} ± {100 * (acc['hi'] - acc['lo']) / 2:.1f}"


def _delta_text(name: str, d: Mapping[str, float] | None) -> str:
    if d is None:
        return f"Δ{name} n/a"
    text = f"Δ{name} {_delta(d['diff'])} [{_delta(d['lo'])}, {_delta(d['hi'])}]"
    if d.get("p_holm") is not None:
        text += f" p_H {d['p_holm']:.2f}"
    return text


def _gate_text(gated: Mapping[str, Any]) -> str:
    return "gated: " + "; ".join(gated.get("reasons") or ["judge health gate"])


def _cell_lines(row: Mapping[str, Any], eval_set: str) -> list[str]:
    if row.get("gated"):
        return [_gate_text(row["gated"])]
    cell = row["eval_sets"][eval_set]
    lines = [_accuracy_text(cell["accuracy"])]
    if row["algorithm"] is not None:  # not the base row
        lines.append(_delta_text("base", cell["delta_base"]))
        if row["algorithm"] != "sft":
            lines.append(_delta_text("sft", cell["delta_sft"]))
    return lines


def _interval_text(value: Any, percent: bool) -> str:
    if isinstance(value, dict):
        fmt = _pct if percent else (lambda x: f"{x:.3f}")
        return f"{fmt(value['mean'])} [{fmt(value['lo'])}, {fmt(value['hi'])}]"
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:.3f}"
    return str(value)


def _more_metrics(rows: list[dict], eval_sets: list[str]) -> list[tuple[str, str, str, str]]:
    """(row, eval set, metric, "value [lo, hi]") for every metric beyond greedy accuracy."""
    out = []
    for row in rows:
        if row.get("gated"):
            continue
        for e in eval_sets:
            for metric, value in row["eval_sets"][e]["more"].items():
                if metric in ("pass_at_k", "maj_at_k"):
                    for k, interval in value.items():
                        name = f"{metric.split('_')[0]}@{k}"
                        out.append((row["label"], e, name, _interval_text(interval, True)))
                else:
                    out.append((row["label"], e, metric, _interval_text(value, True)))
    return out


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(_md_escape(h) for h in header) + " |",
        "|" + "|".join(["---"] * len(header)) + "|",
    ]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def _table_markdown(rows: list[dict], eval_sets: list[str]) -> str:
    body = [[r["label"], *("<br>".join(_cell_lines(r, e)) for e in eval_sets)] for r in rows]
    return _md_table(["model", *eval_sets], body)


def _saturation_lines(summary: Mapping[str, Any]) -> list[str]:
    parts = []
    if "questions" in summary:
        parts.append(f"{summary['questions']} training questions")
    if "saturated_questions" in summary:
        frac = summary.get("saturated_fraction")
        share = f" ({_pct(frac)}%)" if isinstance(frac, (int, float)) else ""
        at = f" at threshold {summary['threshold']}" if "threshold" in summary else ""
        parts.append(f"{summary['saturated_questions']} saturated{share}{at}")
    if "kept_solutions" in summary:
        parts.append(f"{summary['kept_solutions']} correct solutions kept")
    return ["; ".join(parts) + "."] if parts else []


def _calibration_rows(calibration: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["signal", *calibration["columns"]]
    body = [
        [s, *(_interval_text(ms[c], False) if c in ms else "" for c in calibration["columns"])]
        for s, ms in calibration["signals"].items()
    ]
    return header, body


def _method_note(base: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    boot = base["summary"].get("bootstrap", {})
    several = any(isinstance(r.get("seed"), list) for r in rows)
    return (
        f"Accuracy: greedy decoding, % of questions, ± half the width of the 95% percentile "
        f"bootstrap CI over questions ({boot.get('n_boot', 1000)} resamples, seed "
        f"{boot.get('seed', 0)}). Δ: percentage points vs the base model and vs the SFT "
        "baseline of the same seed, with 95% paired-bootstrap CIs over the same questions"
        + (
            "; rows over several training seeds: mean over seeds, CIs from a bootstrap over "
            "seeds x questions"
            if several
            else ""
        )
        + f". p_H: two-sided bootstrap p-value of Δ = 0, Holm-adjusted across the "
        f"{_family_size(rows)} Δs of this table (family-wise error 5%: p_H < 0.05 is a "
        "difference that survives the multiplicity; the unadjusted 95% CIs do not)."
    )


def _training_set_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """(cell, rows, max/min weight, effective sample size) of every trained cell's set."""
    body = []
    for row in rows:
        info = row.get("training_set") or {}
        weights = info.get("weights")
        if row["algorithm"] is None or row.get("gated"):
            continue
        if weights:
            spread = f"{weights['max_over_min']:.2f}"
            ess = f"{weights['ess']:.1f} ({100 * weights['ess_fraction']:.0f}%)"
        else:
            spread = ess = "—"  # DPO pairs carry no weights
        body.append([row["label"], str(info.get("rows", "—")), spread, ess])
    return body


def _markdown(
    table_md: str,
    seed_md: str | None,
    rows: list[dict],
    eval_sets: list[str],
    saturation: Mapping[str, Any] | None,
    calibration: Mapping[str, Any] | None,
    calibration_markdown: str | None,
    figures: Mapping[str, Path],
    base: Mapping[str, Any],
) -> str:
    parts = [
        "# Learning from saturated data: results",
        "",
        _method_note(base, rows),
        "",
        table_md,
        "",
        f"![accuracy]({figures['accuracy'].name})",
        "",
    ]
    if seed_md:
        parts += ["## Per seed", "", "Not part of the Holm family.", "", seed_md, ""]
    gated = [r for r in rows if r.get("gated")]
    if gated:
        parts += [
            "## Gated cells",
            "",
            "Not trained: the judge behind the signal failed the health gate.",
            "",
            *(f"- {r['label']}: {'; '.join(r['gated'].get('reasons') or [])}" for r in gated),
            "",
        ]
    sets = _training_set_rows(rows)
    if sets:
        parts += [
            "## Training sets",
            "",
            "Weight spread: max/min weight and Kish's effective sample size (share of rows); "
            "plain SFT has 1.00 and 100%.",
            "",
            _md_table(["cell", "rows", "max/min weight", "effective sample size"], sets),
            "",
        ]
    more = _more_metrics(rows, eval_sets)
    if more:
        parts += [
            "## More metrics",
            "",
            _md_table(["model", "eval set", "metric", "% [95% CI]"], more),
            "",
        ]
    if saturation:
        parts += ["## Saturation", "", *_saturation_lines(saturation), ""]
        histogram = saturation.get("histogram", {})
        if histogram:
            parts += [
                _md_table(
                    ["accuracy over samples", "questions"],
                    [[a, str(n)] for a, n in histogram.items()],
                ),
                "",
                f"![saturation]({figures['saturation'].name})",
                "",
            ]
    if calibration_markdown or calibration:
        reference = calibration["reference"] if calibration else "the external judge"
        parts += ["## Calibration", "", f"Agreement of each signal with {reference}.", ""]
        if calibration_markdown:
            parts += [calibration_markdown.strip(), ""]
        else:
            parts += [_md_table(*_calibration_rows(calibration)), ""]
        if "calibration" in figures:
            parts += [f"![calibration]({figures['calibration'].name})", ""]
    return "\n".join(parts)


# -- HTML ------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.35em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td .delta { color: #555; font-size: 0.9em; }
img { max-width: 100%; }
"""


def _html_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """Cells are already escaped HTML."""
    head = "".join(f"<th>{h}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{alt}" src="data:image/png;base64,{data}"></p>'


def _html(
    rows: list[dict],
    eval_sets: list[str],
    saturation: Mapping[str, Any] | None,
    calibration: Mapping[str, Any] | None,
    calibration_markdown: str | None,
    figures: Mapping[str, Path],
    base: Mapping[str, Any],
) -> str:
    esc = html.escape

    def cell(row: dict, e: str) -> str:
        first, *deltas = (esc(line) for line in _cell_lines(row, e))
        return first + "".join(f'<br><span class="delta">{d}</span>' for d in deltas)

    body = [
        f"<h1>Learning from saturated data: results</h1><p>{esc(_method_note(base, rows))}</p>",
        _html_table(
            ["model", *map(esc, eval_sets)],
            [[esc(r["label"]), *(cell(r, e) for e in eval_sets)] for r in rows],
        ),
        _img(figures["accuracy"], "accuracy"),
    ]
    sets = _training_set_rows(rows)
    if sets:
        body += [
            "<h2>Training sets</h2>",
            _html_table(
                ["cell", "rows", "max/min weight", "effective sample size"],
                [[esc(c) for c in r] for r in sets],
            ),
        ]
    more = _more_metrics(rows, eval_sets)
    if more:
        body += [
            "<h2>More metrics</h2>",
            _html_table(
                ["model", "eval set", "metric", "% [95% CI]"], [[esc(c) for c in r] for r in more]
            ),
        ]
    if saturation:
        body += [
            "<h2>Saturation</h2>",
            *(f"<p>{esc(line)}</p>" for line in _saturation_lines(saturation)),
        ]
        histogram = saturation.get("histogram", {})
        if histogram:
            body += [
                _html_table(
                    ["accuracy over samples", "questions"],
                    [[esc(a), esc(str(n))] for a, n in histogram.items()],
                ),
                _img(figures["saturation"], "saturation"),
            ]
    if calibration or calibration_markdown:
        reference = calibration["reference"] if calibration else "the external judge"
        body += ["<h2>Calibration</h2>", f"<p>Agreement of each signal with {esc(reference)}.</p>"]
        if calibration:
            header, cal_rows = _calibration_rows(calibration)
            body.append(
                _html_table([esc(h) for h in header], [[esc(c) for c in r] for r in cal_rows])
            )
        else:
            body.append(f"<pre>{esc(calibration_markdown or '')}</pre>")
        if "calibration" in figures:
            body.append(_img(figures["calibration"], "calibration"))
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>satk8s report</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
