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
            assert row["eval_sets"][name]["delta_base"] == vs_base[name]
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
