"""The report: every grid cell appears with its numbers in Markdown, HTML and JSON; HTML stands alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from satk8s.errors import DataError
from satk8s.evaluation import bootstrap_ci, compare_runs
from satk8s.report import FIGURES, build_report

EVAL_SETS = {"arith_test": 40, "gsm8k": 30}
ALGORITHMS = ["best_of_n", "weighted_sft", "dpo", "dpo_lora"]
SIGNALS = ["entropy", "self_judge"]
N_BOOT = 200
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_run(model: str, p_correct: float, seed: int) -> dict:
    """A run whose per-question correctness is drawn at rate p_correct, with its summary."""
    rng = np.random.default_rng(seed)
    rows, summaries = [], {}
    for name, n in EVAL_SETS.items():
        correct = rng.random(n) < p_correct
        rows += [
            {"eval_set": name, "question_id": f"{name}-{i}", "correct": bool(ok)}
            for i, ok in enumerate(correct)
        ]
        acc = bootstrap_ci(correct.astype(float), N_BOOT, 0)._asdict()
        summaries[name] = {"n_questions": n, "accuracy": acc, "strict_match": acc}
    summary = {
        "model": model,
        "bootstrap": {"n_boot": N_BOOT, "seed": 0, "alpha": 0.05},
        "eval_sets": summaries,
    }
    return {"summary": summary, "per_question": pa.Table.from_pylist(rows)}


SATURATION = {
    "questions": 20,
    "saturated_questions": 12,
    "saturated_fraction": 0.6,
    "threshold": 1.0,
    "kept_solutions": 96,
    "histogram": {"0.250": 3, "0.500": 5, "1.000": 12},
}
CALIBRATION = {
    "reference": "external_judge",
    "signals": {
        "entropy": {
            "pairwise_agreement": {"mean": 0.71, "lo": 0.65, "hi": 0.77},
            "cohen_kappa": {"mean": 0.42, "lo": 0.3, "hi": 0.54},
            "n_pairs": 240,
        },
        "self_judge": {
            "pairwise_agreement": {"mean": 0.62, "lo": 0.55, "hi": 0.69},
            "cohen_kappa": {"mean": 0.24, "lo": 0.1, "hi": 0.38},
            "n_pairs": 240,
        },
    },
}


@pytest.fixture(scope="module")
def grid():
    base = synthetic_run("base", 0.5, seed=100)
    sft = {"algorithm": "sft", "signal": "none", "seed": 0, **synthetic_run("sft", 0.6, 101)}
    cells = [sft] + [
        {
            "algorithm": a,
            "signal": s,
            "seed": 0,
            **synthetic_run(f"{a}-{s}", 0.55 + 0.05 * i, seed=200 + 10 * i + j),
        }
        for i, a in enumerate(ALGORITHMS)
        for j, s in enumerate(SIGNALS)
    ]
    return base, cells


@pytest.fixture(scope="module")
def report(grid, tmp_path_factory):
    base, cells = grid
    out = tmp_path_factory.mktemp("report")
    paths = build_report(cells, base, SATURATION, CALIBRATION, None, out)
    return paths, out


def label(cell: dict) -> str:
    return "sft" if cell["algorithm"] == "sft" else f"{cell['algorithm']} / {cell['signal']}"


def expected_texts(cell: dict, base: dict, sft: dict) -> list[str]:
    """What a row must show per eval set: accuracy ± CI half-width, Δ base, Δ sft."""
    texts = []
    vs_base = compare_runs(cell["per_question"], base["per_question"], N_BOOT, 0)
    vs_sft = compare_runs(cell["per_question"], sft["per_question"], N_BOOT, 0)
    for name in EVAL_SETS:
        acc = cell["summary"]["eval_sets"][name]["accuracy"]
        texts.append(f"{100 * acc['mean']:.1f} ± {100 * (acc['hi'] - acc['lo']) / 2:.1f}")
        for tag, d in (("base", vs_base[name]), ("sft", vs_sft[name])):
            if tag == "sft" and cell["algorithm"] == "sft":
                continue
            texts.append(
                f"Δ{tag} {100 * d['diff']:+.1f} [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}]"
            )
    return texts


def html_row(page: str, row_label: str) -> str:
    match = re.search(rf"<tr><td>{re.escape(row_label)}</td>.*?</tr>", page)
    assert match, f"no HTML table row for {row_label!r}"
    return match.group(0)


def md_row(page: str, row_label: str) -> str:
    lines = [line for line in page.splitlines() if line.startswith(f"| {row_label} |")]
    assert lines, f"no Markdown table row for {row_label!r}"
    return lines[0]


def test_every_cell_appears_with_its_numbers_in_markdown_and_html(grid, report):
    base, cells = grid
    paths, _ = report
    markdown, page = (
        Path(paths["markdown"]).read_text(encoding="utf-8"),
        Path(paths["html"]).read_text(encoding="utf-8"),
    )
    assert paths["table_markdown"] in markdown
    sft = cells[0]
    assert len(cells) == 1 + len(ALGORITHMS) * len(SIGNALS)
    for cell in cells:
        for text in expected_texts(cell, base, sft):
            assert text in md_row(markdown, label(cell)), (label(cell), text)
            assert text in md_row(paths["table_markdown"], label(cell))
            assert text in html_row(page, label(cell)), (label(cell), text)
    for name in EVAL_SETS:
        acc = base["summary"]["eval_sets"][name]["accuracy"]
        text = f"{100 * acc['mean']:.1f} ± {100 * (acc['hi'] - acc['lo']) / 2:.1f}"
        assert text in md_row(markdown, "base") and text in html_row(page, "base")
        assert name in md_row(markdown, "model")


def test_report_json_holds_every_number(grid, report):
    base, cells = grid
    paths, _ = report
    data = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
    assert data["eval_sets"] == list(EVAL_SETS)
    rows = {r["label"]: r for r in data["rows"]}
    assert list(rows)[:2] == ["base", "sft"]
    assert set(rows) == {"base", *(label(c) for c in cells)}
    for cell in cells:
        row = rows[label(cell)]
        assert (row["algorithm"], row["signal"], row["seed"]) == (
            cell["algorithm"],
            cell["signal"],
            cell["seed"],
        )
        vs_base = compare_runs(cell["per_question"], base["per_question"], N_BOOT, 0)
        for name in EVAL_SETS:
            assert (
                row["eval_sets"][name]["accuracy"] == cell["summary"]["eval_sets"][name]["accuracy"]
            )
            delta = dict(row["eval_sets"][name]["delta_base"])
            assert delta.pop("p_holm") >= delta["p_two_sided"]
            assert delta == vs_base[name]
            if cell["algorithm"] == "sft":
                assert row["eval_sets"][name]["delta_sft"] is None
            else:
                assert row["eval_sets"][name]["delta_sft"]["n_questions"] == EVAL_SETS[name]
    assert data["saturation"] == SATURATION
    assert data["calibration"] == CALIBRATION


def test_report_includes_saturation_and_calibration_tables(report):
    paths, _ = report
    for path in (paths["markdown"], paths["html"]):
        text = Path(path).read_text(encoding="utf-8")
        assert "12 saturated (60.0%) at threshold 1.0" in text
        assert "0.250" in text and "0.500" in text
        assert "0.710 [0.650, 0.770]" in text and "0.240 [0.100, 0.380]" in text
        assert "self_judge" in text and "external_judge" in text


def test_html_is_self_contained(report):
    paths, _ = report
    page = Path(paths["html"]).read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(FIGURES)
    assert all(s.startswith("data:image/png;base64,") for s in sources)


def test_figures_are_non_empty_png_files(report):
    _, out = report
    for name in FIGURES.values():
        data = (out / name).read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC), name


def test_every_delta_carries_a_holm_adjusted_p_value_over_the_whole_table(report):
    paths, _ = report
    data = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
    deltas = [
        cell[key]
        for row in data["rows"]
        for cell in row["eval_sets"].values()
        for key in ("delta_base", "delta_sft")
        if cell[key] is not None
    ]
    # Recomputed by hand: sort, multiply the i-th smallest by m - i, running max, cap at 1.
    m = len(deltas)
    assert data["multiplicity"]["comparisons"] == m == 2 * (1 + 2 * 8)
    order = sorted(range(m), key=lambda k: deltas[k]["p_two_sided"])
    running, expected = 0.0, [0.0] * m
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (m - rank) * deltas[k]["p_two_sided"]))
        expected[k] = running
    assert [d["p_holm"] for d in deltas] == pytest.approx(expected)
    markdown = Path(paths["markdown"]).read_text(encoding="utf-8")
    assert f"Holm-adjusted across the {m} Δs" in markdown
    assert " p_H " in md_row(markdown, "sft")


def test_a_gated_cell_is_shown_with_its_reasons_and_no_numbers(grid, tmp_path):
    base, cells = grid
    gate = {"passed": False, "reasons": ["label mass 4e-05 < 0.5"], "judged": True}
    gated = {
        "algorithm": "dpo",
        "signal": "self_judge",
        "seed": 0,
        "gated": gate,
        "summary": {"eval_sets": {}},
        "per_question": None,
    }
    paths = build_report([cells[0], cells[1], gated], base, None, None, None, tmp_path)
    markdown = Path(paths["markdown"]).read_text(encoding="utf-8")
    assert "gated: label mass 4e-05 < 0.5" in md_row(markdown, "dpo / self_judge")
    assert "- dpo / self_judge: label mass 4e-05 < 0.5" in markdown
    row = next(
        r
        for r in json.loads(Path(paths["json"]).read_text())["rows"]
        if r["label"] == "dpo / self_judge"
    )
    assert row["gated"] == gate and row["eval_sets"] == {}
    assert "gated: label mass" in Path(paths["html"]).read_text(encoding="utf-8")


def test_training_sets_show_their_weight_spread(grid, tmp_path):
    base, cells = grid
    spread = {
        "rows": 40,
        "min": 0.2,
        "max": 1.9,
        "max_over_min": 9.5,
        "ess": 28.0,
        "ess_fraction": 0.7,
    }
    weighted = {
        **cells[2],
        "summary": {**cells[2]["summary"], "training_set": {"rows": 40, "weights": spread}},
    }
    paths = build_report([cells[0], weighted], base, None, None, None, tmp_path)
    markdown = Path(paths["markdown"]).read_text(encoding="utf-8")
    assert f"| {label(weighted)} | 40 | 9.50 | 28.0 (70%) |" in markdown


def test_several_seeds_get_a_mean_row_with_intervals_over_seeds_and_questions(grid, tmp_path):
    from satk8s.evaluation import hierarchical_bootstrap_diff

    base, cells = grid
    sft, cell = cells[0], cells[1]
    seeds = [
        {**sft, "seed": 1, **synthetic_run("sft1", 0.6, 301)},
        {**cell, "seed": 1, **synthetic_run("c1", 0.7, 302)},
    ]
    paths = build_report([sft, cell, *seeds], base, None, None, None, tmp_path)
    data = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
    row = next(r for r in data["rows"] if r["label"] == f"{label(cell)} (2 seeds)")
    assert row["seed"] == [0, 1]

    def correct(run):
        return {
            r["question_id"]: float(r["correct"])
            for r in run["per_question"].to_pylist()
            if r["eval_set"] == "gsm8k"
        }

    a = {0: correct(cell), 1: correct(seeds[1])}
    b = {0: correct(sft), 1: correct(seeds[0])}
    expected = hierarchical_bootstrap_diff(a, b, N_BOOT, 0)
    got = row["eval_sets"]["gsm8k"]["delta_sft"]
    assert (got["diff"], got["lo"], got["hi"]) == (expected.diff, expected.lo, expected.hi)
    assert got["diff"] == pytest.approx(
        sum(a[s][q] - b[s][q] for s in a for q in a[s]) / (2 * len(a[0]))
    )
    markdown = Path(paths["markdown"]).read_text(encoding="utf-8")
    assert "## Per seed" in markdown and "seeds x questions" in markdown


def test_several_seeds_get_their_own_rows_and_a_missing_sft_seed_shows_na(grid, tmp_path):
    base, cells = grid
    seed1 = {**cells[1], "seed": 1}  # no sft cell with seed 1
    paths = build_report([cells[0], cells[1], seed1], base, None, None, "| given |", tmp_path)
    markdown = Path(paths["markdown"]).read_text(encoding="utf-8")
    assert "Δsft n/a" in md_row(markdown, f"{label(cells[1])} (seed 1)")
    assert "Δsft n/a" not in md_row(markdown, f"{label(cells[1])} (seed 0)")
    assert "| given |" in markdown  # calibration_markdown is used verbatim
    assert not (tmp_path / FIGURES["saturation"]).exists()


def test_a_cell_evaluated_on_other_eval_sets_is_refused(grid, tmp_path):
    base, cells = grid
    partial = synthetic_run("odd", 0.5, seed=7)
    del partial["summary"]["eval_sets"]["gsm8k"]
    odd = {"algorithm": "dpo", "signal": "random", "seed": 0, **partial}
    with pytest.raises(DataError, match="same eval sets"):
        build_report([cells[0], odd], base, None, None, None, tmp_path)


def test_a_rebuilt_report_drops_figures_it_no_longer_draws(grid, tmp_path):
    base, cells = grid
    build_report(cells[:2], base, SATURATION, CALIBRATION, None, tmp_path)
    build_report(cells[:2], base, None, None, None, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [FIGURES["accuracy"]]
