"""Training-set builders on fixed inputs: exact rows, weights and pairs; bad inputs rejected."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from satk8s.errors import ConfigError, DataError
from satk8s.signals.schema import ScoreRow, scores_table
from satk8s.training import BuildConfig, build_metadata, build_training_set, validate_training_set

# Three saturated questions x three correct solutions. Scores (higher = better):
#   qa: 0.5, 2.0, 1.0    distinct
#   qb: 1.0, 1.0, 1.0    all equal: no preference
#   qc: -1.0, 0.0, 3.0   distinct
SCORES = {"qa": [0.5, 2.0, 1.0], "qb": [1.0, 1.0, 1.0], "qc": [-1.0, 0.0, 3.0]}


def prompt(qid: str) -> str:
    return f"Question: {qid}?\nAnswer:"


def completion(qid: str, idx: int) -> str:
    return f" {qid} solution {idx}\n#### {idx}"


def kept_table(
    rows: list[tuple[str, int]] | None = None, correct: list[bool] | None = None
) -> pa.Table:
    # Out of order on purpose: the builders sort by (question_id, sample_index).
    rows = rows or [(q, i) for q in ("qc", "qa", "qb") for i in (2, 0, 1)]
    return pa.table(
        {
            "question_id": [q for q, _ in rows],
            "sample_index": pa.array([i for _, i in rows], pa.int32()),
            "prompt": [prompt(q) for q, _ in rows],
            "completion": [completion(q, i) for q, i in rows],
            "finish_reason": ["stop"] * len(rows),
            "extracted_answer": [str(i) for _, i in rows],
            "correct": correct or [True] * len(rows),
        }
    )


def scores(values: dict[str, list[float]] = SCORES, drop: tuple = ()) -> pa.Table:
    return scores_table(
        [
            ScoreRow(q, i, "entropy", s, -s)
            for q, row in values.items()
            for i, s in enumerate(row)
            if (q, i) not in drop
        ]
    )


def build(algorithm: str, score_table: pa.Table | None = None, **kw) -> pa.Table:
    return build_training_set(kept_table(), score_table, BuildConfig(algorithm=algorithm, **kw))


# ----------------------------------------------------------------------------- builders


def test_sft_keeps_every_correct_solution_in_question_then_sample_order_with_weight_one():
    table = build("sft")
    expected = [
        {
            "prompt": prompt(q),
            "completion": completion(q, i),
            "question_id": q,
            "sample_index": i,
            "weight": 1.0,
        }
        for q in ("qa", "qb", "qc")
        for i in (0, 1, 2)
    ]
    assert table.to_pylist() == expected


def test_sft_drops_rows_marked_incorrect_and_needs_no_scores():
    rows = [("qa", 0), ("qa", 1), ("qa", 2)]
    table = build_training_set(
        kept_table(rows, correct=[True, False, True]), None, BuildConfig("sft")
    )
    assert table.column("sample_index").to_pylist() == [0, 2]


def test_best_of_1_takes_the_top_scored_solution_of_each_question():
    table = build("best_of_n", scores())
    rows = table.to_pylist()
    assert [r["question_id"] for r in rows] == ["qa", "qb", "qc"]
    assert rows[0] == {
        "prompt": prompt("qa"),
        "completion": completion("qa", 1),
        "question_id": "qa",
        "sample_index": 1,
        "weight": 1.0,
    }
    assert rows[1]["sample_index"] in (0, 1, 2)  # qb: a three-way tie, see the tie test
    assert rows[2]["sample_index"] == 2  # qc: 3.0


def test_best_of_2_lists_each_questions_top_two_best_first():
    values = {"qa": [0.5, 2.0, 1.0], "qb": [0.2, 0.1, 0.3], "qc": [-1.0, 0.0, 3.0]}
    table = build("best_of_n", scores(values), k=2)
    keys = [(r["question_id"], r["sample_index"]) for r in table.to_pylist()]
    assert keys == [("qa", 1), ("qa", 2), ("qb", 2), ("qb", 0), ("qc", 2), ("qc", 1)]


def test_best_of_n_with_k_above_the_solution_count_keeps_them_all():
    table = build("best_of_n", scores(), k=5)
    assert table.num_rows == 9


def test_best_of_n_breaks_ties_by_a_seeded_shuffle_same_seed_same_pick():
    picks = {}
    for seed in range(20):
        first = build("best_of_n", scores(), seed=seed).column("sample_index").to_pylist()
        again = build("best_of_n", scores(), seed=seed).column("sample_index").to_pylist()
        assert first == again  # deterministic given the seed
        assert first[0] == 1 and first[2] == 2  # only the tied question depends on the seed
        picks[seed] = first[1]
    assert set(picks.values()) == {0, 1, 2}  # every tied solution gets picked under some seed


def _zscore_weights(values: list[float], temperature: float) -> list[float]:
    """The expected weights, computed independently with numpy: n * softmax(z / tau) with z
    the population z-score within the question."""
    import numpy as np

    x = np.asarray(values, float)
    z = (x - x.mean()) / x.std()
    e = np.exp(z / temperature)
    return list(len(x) * e / e.sum())


def test_weighted_sft_weights_are_a_softmax_of_within_question_z_scores_with_mean_one():
    table = build("weighted_sft", scores(), temperature=1.0)
    expected = (
        _zscore_weights(SCORES["qa"], 1.0) + [1.0, 1.0, 1.0] + _zscore_weights(SCORES["qc"], 1.0)
    )
    weights = table.column("weight").to_pylist()
    assert weights == pytest.approx(expected, rel=1e-12)
    assert weights[:3] == pytest.approx([0.209617, 2.323040, 0.467343], abs=1e-6)
    assert table.column("completion").to_pylist() == [
        completion(q, i) for q in ("qa", "qb", "qc") for i in (0, 1, 2)
    ]


def test_weighted_sft_temperature_sharpens_or_flattens_the_weights():
    sharp = build("weighted_sft", scores(), temperature=0.5).column("weight").to_pylist()[:3]
    assert sharp == pytest.approx(_zscore_weights(SCORES["qa"], 0.5), rel=1e-12)
    flat = build("weighted_sft", scores(), temperature=1e6).column("weight").to_pylist()[:3]
    assert flat == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert sum(sharp) == pytest.approx(3.0)


def test_weighted_sft_on_entropy_scale_scores_is_not_plain_sft():
    # Mean entropies of one question's solutions span ~0.1 nats: softmax(score / 1) would give
    # weights within 5% of 1 (plain SFT). Standardised within the question, they are not.
    entropy_scale = {
        "qa": [-0.50, -0.55, -0.60],
        "qb": [-0.41, -0.47, -0.44],
        "qc": [-0.3, -0.32, -0.38],
    }
    weights = build("weighted_sft", scores(entropy_scale), temperature=1.0).column("weight")
    assert not all(abs(w - 1) < 0.05 for w in weights.to_pylist())
    assert max(weights.to_pylist()) > 1.5
    # The signal's scale no longer decides: scores x1000 give the same weights.
    scaled = {q: [1000 * v for v in vs] for q, vs in entropy_scale.items()}
    again = build("weighted_sft", scores(scaled), temperature=1.0).column("weight").to_pylist()
    assert again == pytest.approx(weights.to_pylist(), rel=1e-9)


def test_weighted_sft_raw_scores_keep_the_plain_softmax_when_asked():
    table = build("weighted_sft", scores(), temperature=1.0, weight_scores="raw")
    e = [math.exp(v) for v in SCORES["qa"]]
    assert table.column("weight").to_pylist()[:3] == pytest.approx([3 * x / sum(e) for x in e])


def test_the_weight_spread_of_every_training_set_is_recorded():
    import numpy as np

    table = build("weighted_sft", scores(), temperature=1.0)
    spread = build_metadata(table)["weights"]
    w = np.asarray(table.column("weight").to_pylist())
    assert spread["min"] == pytest.approx(w.min()) and spread["max"] == pytest.approx(w.max())
    assert spread["max_over_min"] == pytest.approx(w.max() / w.min())
    # Kish's effective sample size (sum w)^2 / sum w^2.
    assert spread["ess"] == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert spread["ess_fraction"] == pytest.approx(spread["ess"] / len(w))
    plain = build_metadata(build("sft"))["weights"]
    assert plain["max_over_min"] == 1.0 and plain["ess_fraction"] == 1.0
    assert build_metadata(build("dpo", scores()))["weights"] is None


def test_scores_within_tolerance_are_ties_for_every_builder():
    # qb's scores differ in the last bits only: a tie, not a preference.
    near = {"qa": [0.5, 2.0, 1.0], "qb": [1.0, 1.0 + 1e-15, 1.0 - 1e-15], "qc": [-1.0, 0.0, 3.0]}
    assert build("weighted_sft", scores(near)).column("weight").to_pylist()[3:6] == [1.0] * 3
    assert build_metadata(build("dpo", scores(near)))["skipped_question_ids"] == ["qb"]
    picks = {
        build("best_of_n", scores(near), seed=k).column("sample_index")[1].as_py()
        for k in range(20)
    }
    assert picks == {0, 1, 2}


def test_dpo_best_vs_worst_pairs_each_question_and_skips_all_equal_scores():
    table = build("dpo", scores())
    assert table.to_pylist() == [
        {
            "prompt": prompt("qa"),
            "chosen": completion("qa", 1),
            "rejected": completion("qa", 0),
            "question_id": "qa",
            "chosen_index": 1,
            "rejected_index": 0,
            "margin": 1.5,
        },
        {
            "prompt": prompt("qc"),
            "chosen": completion("qc", 2),
            "rejected": completion("qc", 0),
            "question_id": "qc",
            "chosen_index": 2,
            "rejected_index": 0,
            "margin": 4.0,
        },
    ]
    meta = build_metadata(table)
    assert meta["skipped_questions"] == 1 and meta["skipped_question_ids"] == ["qb"]
    assert meta["questions"] == 3 and meta["rows"] == 2


def test_dpo_margin_takes_every_pair_whose_margin_exceeds_the_threshold():
    table = build("dpo", scores(), dpo_pairs="margin", dpo_margin=0.75)
    pairs = [
        (r["question_id"], r["chosen_index"], r["rejected_index"], r["margin"])
        for r in table.to_pylist()
    ]
    # qa: 1>0 by 1.5, 1>2 by 1.0 (2>0 by 0.5 is too small); qb: none; qc: all three.
    assert pairs == [
        ("qa", 1, 0, 1.5),
        ("qa", 1, 2, 1.0),
        ("qc", 1, 0, 1.0),
        ("qc", 2, 0, 4.0),
        ("qc", 2, 1, 3.0),
    ]
    assert build_metadata(table)["skipped_question_ids"] == ["qb"]


def test_dpo_never_pairs_two_identical_texts():
    rows = [("qa", 0), ("qa", 1), ("qa", 2)]
    kept = kept_table(rows)
    same = kept.column("completion").to_pylist()
    same[0] = same[1]  # sample 0 and 1 wrote the same solution, scored 0.5 and 2.0
    kept = kept.set_column(kept.schema.get_field_index("completion"), "completion", pa.array(same))
    table = build_training_set(kept, scores({"qa": SCORES["qa"]}), BuildConfig("dpo"))
    assert [(r["chosen_index"], r["rejected_index"]) for r in table.to_pylist()] == [(1, 2)]


def test_a_built_table_round_trips_through_parquet_with_its_metadata(tmp_path):
    table = build("dpo", scores())
    pq.write_table(table, tmp_path / "dpo.parquet")
    back = pq.read_table(tmp_path / "dpo.parquet")
    assert back.to_pylist() == table.to_pylist()
    assert build_metadata(back)["config"]["algorithm"] == "dpo"


# ----------------------------------------------------------------------------- bad inputs


def test_scores_missing_a_kept_row_name_the_first_missing_row():
    with pytest.raises(DataError, match=r"question_id='qb', sample_index=1"):
        build("weighted_sft", scores(drop=(("qc", 2), ("qb", 1))))


def test_a_ranking_algorithm_without_scores_is_a_config_error():
    with pytest.raises(ConfigError, match="scores"):
        build("best_of_n", None)


def test_scores_of_several_signals_or_non_finite_scores_are_rejected():
    mixed = pa.concat_tables(
        [scores({"qa": [1.0, 2.0, 3.0]}), scores_table([ScoreRow("qb", 0, "random", 0.1, 0.1)])]
    )
    with pytest.raises(DataError, match="several signals"):
        build_training_set(kept_table([("qa", 0)]), mixed, BuildConfig("best_of_n"))
    with pytest.raises(DataError, match="not finite"):
        build("best_of_n", scores({**SCORES, "qb": [1.0, math.nan, 1.0]}))


@pytest.mark.parametrize(
    ("field", "value"),
    [("algorithm", "ppo"), ("k", 0), ("temperature", 0.0), ("dpo_pairs", "all"),
     ("dpo_margin", -1.0), ("append_eos", False)],
)  # fmt: skip
def test_build_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        BuildConfig(**{field: value})


def test_validate_rejects_an_empty_training_set():
    empty = build("sft").slice(0, 0)
    with pytest.raises(DataError, match="no rows"):
        validate_training_set(empty, "sft", "train.parquet")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -0.5])
def test_validate_rejects_a_bad_weight_naming_the_row(bad):
    table = build("weighted_sft", scores())
    weights = table.column("weight").to_pylist()
    weights[4] = bad
    table = table.set_column(4, "weight", pa.array(weights, pa.float64()))
    with pytest.raises(
        DataError, match=r"train\.parquet: row 4 \(question_id='qb', sample_index=1\)"
    ):
        validate_training_set(table, "weighted_sft", "train.parquet")


def test_validate_rejects_a_dpo_pair_whose_chosen_equals_rejected():
    table = build("dpo", scores())
    rejected = table.column("rejected").to_pylist()
    rejected[1] = table.column("chosen")[1].as_py()
    table = table.set_column(2, "rejected", pa.array(rejected))
    with pytest.raises(DataError, match=r"row 1 \(question_id='qc'.*chosen == rejected"):
        validate_training_set(table, "dpo", "pairs.parquet")


def test_validate_rejects_missing_columns_and_unknown_algorithms():
    with pytest.raises(DataError, match=r"missing columns \['chosen', 'rejected'\]"):
        validate_training_set(build("sft"), "dpo", "train.parquet")
    with pytest.raises(DataError, match=r"missing columns \['weight'\]"):
        validate_training_set(build("sft").drop_columns(["weight"]), "weighted_sft", "t")
    with pytest.raises(ConfigError, match="algorithm"):
        validate_training_set(build("sft"), "ppo", "t")


def test_validate_accepts_what_the_builders_make():
    for algorithm in ("sft", "best_of_n", "weighted_sft", "dpo"):
        validate_training_set(build(algorithm, scores()), algorithm, "t")
