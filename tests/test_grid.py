"""Grids: Hydra configs under pipelines/conf expanded into one static DAG (`satk8s.grid`)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from satk8s.cli.grid_cmd import grid_app
from satk8s.errors import ConfigError
from satk8s.grid import ROLES, Plan, expand, known_grids, load_grid, load_plan
from satk8s.grid.expand import STAGED_MODEL, UPSTREAM_MODEL
from satk8s.orchestration.addressed import resolve_config

SMOKE_SIGNALS = ("entropy", "self_judge", "random", "length")
NON_SFT = ("best_of_n", "weighted_sft", "dpo")
SMOKE_CELLS = ["sft-none"] + [f"{a}-{s}" for s in SMOKE_SIGNALS for a in NON_SFT]
SMOKE_NODES = [
    "tiny",
    "prepare",
    "generate",
    "saturate",
    "signal-entropy",
    "signal-self_judge",
    "signal-random",
    "signal-length",
    "signal-logprob",
    "signal-external_judge",
    "calibrate",
    "evaluate-base",
    *(f"{kind}-{cell}{suffix}" for cell in SMOKE_CELLS for kind, suffix in
      (("dataset", ""), ("train", "-s0"), ("evaluate", "-s0"))),
    "report",
]  # fmt: skip


@pytest.fixture(scope="module")
def smoke() -> Plan:
    return load_plan("smoke")


@pytest.fixture(scope="module")
def arith() -> Plan:
    return load_plan("arith")


@pytest.fixture(scope="module")
def gsm8k() -> Plan:
    return load_plan("gsm8k")


def _ids(plan: Plan, step: str | None = None) -> list[str]:
    return [n.id for n in plan.nodes if step is None or n.step == step]


# ----------------------------------------------------------------------------- loading


def test_the_shipped_grids_are_smoke_arith_and_gsm8k() -> None:
    assert known_grids() == ["arith", "gsm8k", "smoke"]


@pytest.mark.parametrize("name", ["smoke", "arith", "gsm8k"])
def test_every_grid_loads_and_expands(name: str) -> None:
    plan = load_plan(name)
    assert plan.grid == name
    assert plan.nodes[-1].id == "report"
    assert {n.role for n in plan.nodes} <= set(ROLES)
    assert set(plan.profiles) == set(ROLES)
    assert len({n.id for n in plan.nodes}) == len(plan.nodes)


def test_smoke_grid_has_exactly_the_demo_cells_and_nodes(smoke: Plan) -> None:
    assert [(c.signal, c.algorithm, c.seed) for c in smoke.cells] == [("none", "sft", 0)] + [
        (s, a, 0) for s in SMOKE_SIGNALS for a in NON_SFT
    ]
    assert [c.evaluate_node for c in smoke.cells] == [f"evaluate-{c}-s0" for c in SMOKE_CELLS]
    assert _ids(smoke) == SMOKE_NODES
    assert smoke.store_root == (Path.cwd() / ".satk8s-store").resolve().as_uri()


def test_smoke_grid_wires_inputs_like_the_demo(smoke: Plan) -> None:
    assert smoke.node("saturate").inputs == {"questions": ("prepare",), "samples": ("generate",)}
    assert smoke.node("calibrate").inputs == {
        "scores": (
            "signal-entropy",
            "signal-self_judge",
            "signal-random",
            "signal-length",
            "signal-logprob",
        ),
        "judge": ("signal-external_judge",),
    }
    assert smoke.node("dataset-sft-none").inputs == {"kept": ("saturate",)}
    assert smoke.node("dataset-dpo-entropy").inputs == {
        "kept": ("saturate",),
        "scores": ("signal-entropy",),
    }
    assert smoke.node("train-dpo-entropy-s0").inputs == {"dataset": ("dataset-dpo-entropy",)}
    assert smoke.node("evaluate-dpo-entropy-s0").inputs == {
        "questions": ("prepare",),
        "model": ("train-dpo-entropy-s0",),
    }
    assert smoke.node("report").inputs == {
        "evaluations": ("evaluate-base", *(f"evaluate-{c}-s0" for c in SMOKE_CELLS)),
        "saturation": ("saturate",),
        "calibration": ("calibrate",),
    }


def test_smoke_grid_has_the_demo_settings(smoke: Plan) -> None:
    from satk8s.evaluation.evaluate import EvalConfig
    from satk8s.tasks.arith import ArithTaskConfig, make_splits
    from satk8s.tiny import TinyBuildConfig

    def plain(config: object) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(config)))  # type: ignore[arg-type]

    # The tiny model's world: a pool of one-digit questions (saturated, three styles), one-digit
    # questions outside it (nothing may break) and two-digit additions (where the style matters).
    # Levels set to 0 draw nothing, so these are the same questions.
    arith = smoke.node("prepare").config["arith"]
    expected = ArithTaskConfig(
        train={"easy": 120},
        eval_id={"easy": 80},
        eval_hard={"add2": 150},
    )
    assert make_splits(ArithTaskConfig(**arith)) == make_splits(expected)
    assert smoke.node("prepare").config["fewshot"] == 0
    sampling = smoke.node("generate").config["sampling"]
    assert (sampling["n"], sampling["temperature"], sampling["max_new_tokens"]) == (8, 1.0, 48)
    assert sampling["top_k"] == 0 and sampling["seed"] == 0
    assert smoke.node("tiny").config == plain(TinyBuildConfig())
    for cell in SMOKE_CELLS:
        algorithm = cell.split("-")[0]
        train = smoke.node(f"train-{cell}-s0").config["train"]
        assert train["algorithm"] == algorithm
        assert train["max_steps"] == -1
        assert train["num_train_epochs"] == (6.0 if algorithm == "best_of_n" else 3.0)
        assert (train["per_device_batch_size"], train["max_length"]) == (16, 128)
        assert train["learning_rate"] == (5e-5 if algorithm == "dpo" else 2e-4)
        assert smoke.node(f"dataset-{cell}").config["algorithm"] == algorithm
        assert smoke.node(f"evaluate-{cell}-s0").config["eval"] == plain(
            EvalConfig(max_new_tokens=48, n_boot=1000)
        )
    assert smoke.node("signal-external_judge").config["external_judge"]["kind"] == "oracle"


def test_model_taking_nodes_read_the_tiny_output(smoke: Plan) -> None:
    takes_model = [n for n in smoke.nodes if n.model_from]
    assert [n.id for n in takes_model] == [
        "generate",
        "signal-entropy",
        "signal-self_judge",
        "signal-length",  # the tokenizer only
        "signal-logprob",
        "evaluate-base",
        *(f"train-{c}-s0" for c in SMOKE_CELLS),
    ]
    assert all(n.model_from == "tiny" and n.config["model"] == UPSTREAM_MODEL for n in takes_model)
    # A trained cell is evaluated from its train node, not from the base model.
    assert smoke.node("evaluate-sft-none-s0").config["model"] == ""


def test_a_hub_model_is_staged_once_and_read_from_the_store(arith: Plan) -> None:
    assert "tiny" not in _ids(arith)
    named = [n.id for n in arith.nodes if "Qwen/Qwen3-1.7B-Base" in json.dumps(n.config)]
    assert named == ["stage-model"]  # the one CPU task that reaches the hub
    stage = arith.node("stage-model")
    assert (stage.step, stage.role) == ("stage_model", "cpu")
    assert stage.config == {
        "model": "Qwen/Qwen3-1.7B-Base",
        "revision": "main",
        "ignore_patterns": [],
    }
    takes_model = [n for n in arith.nodes if n.model_from]
    assert {n.step for n in takes_model} == {"generate", "signals", "evaluate", "train"}
    assert all(
        n.model_from == "stage-model" and n.config["model"] == STAGED_MODEL for n in takes_model
    )
    assert len(_ids(arith, "train")) == 30 and all(
        arith.node(t).model_from == "stage-model" for t in _ids(arith, "train")
    )


def test_a_model_revision_reaches_the_stage_task_only() -> None:
    plan = load_plan("arith", ["seeds=[0]", "signals=[entropy]", "model.revision=v1.0"])
    assert plan.node("stage-model").config["revision"] == "v1.0"
    assert all("v1.0" not in json.dumps(n.config) for n in plan.nodes if n.id != "stage-model")


# ----------------------------------------------------------------------------- sharing


def test_arith_three_seeds_shares_upstream_work(arith: Plan) -> None:
    assert len(arith.cells) == 30  # (1 sft + 3 signals x 3 algorithms) x 3 seeds
    counts = {step: len(_ids(arith, step)) for step in dict.fromkeys(n.step for n in arith.nodes)}
    assert counts == {
        "stage_model": 1,
        "prepare": 1,
        "generate": 1,
        "saturate": 1,
        "signals": 6,
        "calibrate": 1,
        "evaluate": 31,
        "build_dataset": 10,
        "train": 30,
        "report": 1,
    }
    assert len(arith.nodes) == 83
    # One pipeline per cell: 10 steps (stage-model included) + cell signal + three controls +
    # judge, random cells and sft cells one signal fewer: 9 x 15 x 2 + 9 x 14 + 3 x 14.
    assert arith.naive_step_count == 438
    assert sum(sum(r.values()) for r in arith.naive_counts.values()) == 438
    assert arith.naive_counts["signals"] == {"judge": 18, "cpu": 120}
    assert arith.naive_counts["evaluate"] == {"evaluate": 60}


def test_a_training_set_serves_every_seed() -> None:
    plan = load_plan("smoke", ["seeds=[0,1]"])
    cells = 1 + 3 * len(SMOKE_SIGNALS)  # sft, then best-of-n, weighted SFT and DPO per signal
    assert len(_ids(plan, "build_dataset")) == cells
    assert len(_ids(plan, "train")) == 2 * cells
    assert plan.node("train-dpo-entropy-s1").inputs == {"dataset": ("dataset-dpo-entropy",)}
    assert plan.node("train-dpo-entropy-s1").config["train"]["seed"] == 1
    assert plan.node("evaluate-dpo-entropy-s1").config["seed"] == 1


def test_random_as_a_cell_signal_is_scored_once() -> None:
    plan = load_plan("smoke", ["signals=[random]", "algorithms=[best_of_n]"])
    assert _ids(plan, "signals") == [
        "signal-random",
        "signal-length",
        "signal-logprob",
        "signal-external_judge",
    ]
    assert plan.node("calibrate").inputs["scores"] == (
        "signal-random",
        "signal-length",
        "signal-logprob",
    )
    assert plan.naive_step_count == 14  # tiny..report with the three controls and the judge


def test_identical_nodes_are_merged_and_readers_follow_the_alias() -> None:
    from satk8s.grid.expand import _Dag

    dag = _Dag()
    first = dag.add("a-s0", "build_dataset", "cpu", {"k": 1}, {"kept": ["x"]})
    assert dag.add("a-s1", "build_dataset", "cpu", {"k": 1}, {"kept": ["x"]}) == first
    dag.add("t", "train", "train", {}, {"dataset": ["a-s1"]})
    assert [n.id for n in dag.nodes] == ["a-s0", "t"]
    assert dag.nodes[1].inputs == {"dataset": ("a-s0",)}


# ----------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("fixture", ["smoke", "arith", "gsm8k"])
def test_nodes_are_in_topological_order(fixture: str, request: pytest.FixtureRequest) -> None:
    plan: Plan = request.getfixturevalue(fixture)
    seen: set[str] = set()
    for node in plan.nodes:
        upstream = {i for ids in node.inputs.values() for i in ids}
        assert upstream | ({node.model_from} if node.model_from else set()) <= seen, node.id
        seen.add(node.id)


@pytest.mark.parametrize("fixture", ["smoke", "gsm8k"])
def test_node_configs_are_resolve_config_output(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    plan: Plan = request.getfixturevalue(fixture)
    for node in plan.nodes:
        assert resolve_config(node.step, node.config) == node.config, node.id


def test_node_inputs_are_the_step_inputs(smoke: Plan) -> None:
    from satk8s.steps import STEPS

    for node in smoke.nodes:
        step = STEPS[node.step]
        assert set(step.inputs) <= set(node.inputs) <= {*step.inputs, *step.optional_inputs}


def test_roles_follow_the_work(arith: Plan, gsm8k: Plan, smoke: Plan) -> None:
    roles = {n.id: n.role for n in smoke.nodes}
    assert {
        k: roles[k] for k in ("tiny", "prepare", "saturate", "calibrate", "report")
    } == dict.fromkeys(("tiny", "prepare", "saturate", "calibrate", "report"), "cpu")
    assert roles["generate"] == "generate"
    assert roles["signal-entropy"] == roles["signal-self_judge"] == "judge"
    assert roles["signal-random"] == roles["signal-external_judge"] == "cpu"  # oracle
    assert roles["dataset-dpo-entropy"] == "cpu"
    assert roles["train-dpo-entropy-s0"] == "train"
    assert roles["evaluate-base"] == roles["evaluate-dpo-entropy-s0"] == "evaluate"
    assert arith.node("signal-external_judge").role == "cpu"
    assert gsm8k.node("signal-external_judge").role == "external_judge"


def test_compute_profiles(arith: Plan, smoke: Plan) -> None:
    assert all(p["accelerator_count"] == 0 and p["secrets"] == [] for p in smoke.profiles.values())
    generate = arith.profiles["generate"]
    assert (generate["accelerator_type"], generate["accelerator_count"]) == ("nvidia.com/gpu", 1)
    # The generic preset: GPU feature discovery's product label of the H100 types, no label
    # of satk8s's own (no managed pool carries one).
    assert generate["node_selector"] == {}
    assert generate["node_affinity"] == [
        {
            "key": "nvidia.com/gpu.product",
            "operator": "In",
            "values": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"],
        }
    ]
    assert "satk8s.io/pool" not in json.dumps(arith.profiles)
    assert generate["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "value": "", "effect": "NoSchedule"}
    ]
    assert generate["shm_size"] == "2Gi"
    assert (generate["retries"], generate["backoff_duration"], generate["backoff_factor"]) == (
        2,
        "60s",
        2.0,
    )
    # No Secret or ConfigMap name in pipelines/conf: a cluster compile adds the chart's from
    # the cluster settings (satk8s.grid.cluster), a local run needs none.
    assert all(p["secrets"] == [] and p["config_maps"] == [] for p in arith.profiles.values())
    assert all(p["env"] == {} for p in arith.profiles.values())
    assert arith.profiles["external_judge"]["accelerator_count"] == 2
    assert arith.profiles["cpu"]["accelerator_count"] == 0
    assert arith.store_root == ""  # the cluster's store, from its settings


def test_gsm8k_grid(gsm8k: Plan) -> None:
    prepare = gsm8k.node("prepare").config
    assert (prepare["task"], prepare["gsm8k_path"], prepare["fewshot"]) == ("gsm8k", None, 4)
    assert gsm8k.node("evaluate-base").config["splits"] == ["test"]
    judge = gsm8k.node("signal-external_judge").config["external_judge"]
    assert (judge["kind"], judge["model"], judge["tensor_parallel_size"]) == (
        "vllm",
        "Qwen/Qwen3-32B",
        2,
    )
    assert gsm8k.node("generate").config["sampling"]["n"] == 16
    assert gsm8k.node("train-sft-none-s0").config["train"]["bf16"] is True
    assert [c.seed for c in gsm8k.cells[:3]] == [0, 1, 2]


# ----------------------------------------------------------------------------- overrides


def test_command_line_overrides() -> None:
    plan = load_plan(
        "arith", ["seeds=[0]", "signals=[entropy]", "train.max_steps=10", "store.root=s3://b/p"]
    )
    assert [(c.signal, c.algorithm, c.seed) for c in plan.cells] == [
        ("none", "sft", 0),
        ("entropy", "best_of_n", 0),
        ("entropy", "weighted_sft", 0),
        ("entropy", "dpo", 0),
    ]
    assert _ids(plan, "signals") == [
        "signal-entropy",
        "signal-random",
        "signal-length",
        "signal-logprob",
        "signal-external_judge",
    ]
    assert {plan.node(i).config["train"]["max_steps"] for i in _ids(plan, "train")} == {10}
    assert plan.store_root == "s3://b/p"


def test_group_options_and_unmentioned_step_settings_can_be_overridden() -> None:
    grid = load_grid("smoke", ["compute=gke", "store=cluster", "generate.limit=5"])
    assert (grid.compute.name, grid.compute.cloud, grid.compute.gpu) == ("gke", "gke", "h100-80gb")
    assert grid.store.root == ""
    plan = expand(grid)
    assert plan.node("generate").config["limit"] == 5
    assert plan.profiles["train"]["accelerator_count"] == 1


def test_a_dict_override_replaces_the_levels_instead_of_merging() -> None:
    replaced = load_plan("smoke", ["task.prepare.arith.train={easy:4}"])
    # medium is in PrepareConfig's default train dict: resolve_config would keep its 100.
    assert replaced.node("prepare").config["arith"]["train"] == {"easy": 4, "medium": 0}
    dotted = load_plan("smoke", ["task.prepare.arith.train.easy=4"])
    assert dotted.node("prepare").config["arith"]["train"] == {"easy": 4, "add2": 0, "medium": 0}


def test_a_dict_left_partial_counts_missing_keys_as_zero() -> None:
    # resolve_config alone would merge {easy: 1.0} into the default mix and keep add2.
    plan = load_plan("smoke", ["model.build.mix={easy:1.0}"])
    assert plan.node("tiny").config["mix"] == {"easy": 1.0, "add2": 0.0}
    assert resolve_config("tiny", {"mix": {"easy": 1.0}})["mix"]["add2"] == 0.5


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("name", "overrides", "field", "message"),
    [
        ("paper", [], "grid", "unknown grid 'paper'; known: arith, gsm8k, smoke"),
        ("arith", ["signals=[entropie]"], "signals", "unknown signal 'entropie'; known: entropy, self_judge, random"),
        ("arith", ["algorithms=[ppo]"], "algorithms", "unknown algorithm 'ppo'; known: sft, best_of_n, weighted_sft, dpo"),
        ("arith", ["seeds=[a]"], "seeds[0]", "could not be converted to Integer"),
        ("arith", ["~model"], "model", "chooses no model"),
        ("arith", ["model=llama"], "model", "unknown option 'llama'; known: qwen3-1.7b-base, tiny"),
        ("arith", ["model.path="], "model.path", "names no hub id or directory"),
        ("arith", ["signals=[external_judge]"], "signals", "'external_judge' is the reference"),
        ("arith", ["signals=[none]"], "signals", "algorithm 'best_of_n' needs a signal"),
        ("arith", ["signals=[]"], "signals", "algorithm 'best_of_n' needs a signal"),
        ("arith", ["seeds=[0,0]"], "seeds", "listed more than once: 0"),
        ("arith", ["seeds=0,1"], "seeds", "is a sweep"),
        ("arith", ["sed=1"], "sed", "Key 'sed' not in 'GridConfig'"),
        ("arith", ["compute.train.retries=-1"], "compute.train.retries", "must be >= 0"),
        ("arith", ["store.root=gs://b/p"], "store.root", "scheme 'gs'"),
    ],
)  # fmt: skip
def test_bad_grids_fail_before_expansion_naming_the_field(
    name: str, overrides: list[str], field: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_grid(name, overrides)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (["train.max_steps=abc"], "train.max_steps", "could not be converted to Integer.*node 'train-sft-none-s0'"),
        (["generate.sampling.n=0"], "generate.sampling.n", "must be at least 1"),
        (["algorithm.dpo.train.dpo_beta=x"], "algorithm.dpo.train.dpo_beta", "node 'train-dpo-entropy-s0'"),
        (["algorithm.best_of_n.build.k=0"], "algorithm.best_of_n.build.k", "must be at least 1"),
        (["signal.entropy.direction=up"], "signal.entropy.direction", "lower_is_better"),
        (["signal/external_judge=hf", "signal.external_judge.model="], "signal.external_judge.model", "needs a model"),
        (["task.prepare.arith.train={easy:4,huge:1}"], "task.prepare.arith.train", "unknown level 'huge'"),
        (["task.eval_splits=[]"], "task.eval_splits", "at least one eval split"),
        (["evaluate.limit=0"], "evaluate.limit", "node 'evaluate-base'"),
        (["model.build.steps=0"], "model.build.steps", "node 'tiny'"),
        (["generate.bogus=1"], "generate.bogus", "node 'generate'"),
        (["generate.backend=vllm"], "generate.backend", "vllm needs 1 GPU.*'local_cpu'"),
    ],
)  # fmt: skip
def test_bad_step_settings_name_their_grid_field(
    overrides: list[str], field: str, message: str
) -> None:
    grid = load_grid("smoke", overrides)  # the grid itself is well-formed
    with pytest.raises(ConfigError, match=message) as info:
        expand(grid)
    assert info.value.field == field


def test_a_vllm_judge_needs_its_tensor_parallel_gpus() -> None:
    with pytest.raises(ConfigError, match="vllm needs 4 GPU") as info:
        load_plan("gsm8k", ["signal.external_judge.tensor_parallel_size=4"])
    assert info.value.field == "signal.external_judge.kind"


def test_hydra_state_is_cleared_after_a_failed_load() -> None:
    from hydra.core.global_hydra import GlobalHydra

    with pytest.raises(ConfigError):
        load_grid("smoke", ["model=nope"])
    assert not GlobalHydra.instance().is_initialized()
    assert load_grid("smoke").model.name == "tiny"


# ----------------------------------------------------------------------------- grid show


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(grid_app, name="grid")
    return app


def test_grid_show_prints_cells_and_step_counts() -> None:
    result = CliRunner().invoke(_cli(), ["grid", "show", "arith"])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()]
    assert ["none", "sft", "0,", "1,", "2"] in lines
    assert ["random", "dpo", "0,", "1,", "2"] in lines
    assert ["train", "30", "30"] in lines
    assert ["build_dataset", "10", "30"] in lines
    assert ["total", "83", "438"] in lines
    assert ["GPU", "steps", "64", "138"] in lines


def test_grid_show_json_with_overrides() -> None:
    result = CliRunner().invoke(_cli(), ["grid", "show", "arith", "seeds=[0]", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert len(shown["cells"]) == 10
    assert shown["cells"][0] == {
        "signal": "none",
        "algorithm": "sft",
        "seed": 0,
        "evaluate_node": "evaluate-sft-none-s0",
    }
    # stage-model, 1+1+1+6+1 shared, base eval, 10 datasets, 10 trains, 10 evals, report.
    assert shown["total"] == {"deduplicated": 43, "naive": 146}
    assert shown["gpu_steps"] == {"deduplicated": 24, "naive": 46}
    assert shown["steps"]["generate"] == {"deduplicated": 1, "naive": 10}
    assert shown["nodes"][0] == {"id": "stage-model", "step": "stage_model", "role": "cpu"}


def test_grid_show_reports_errors_with_exit_code_2() -> None:
    result = CliRunner().invoke(_cli(), ["grid", "show", "paper"])
    assert result.exit_code == 2
    assert "error: config field 'grid': unknown grid 'paper'; known: arith, gsm8k, smoke" in (
        result.output
    )


def test_grid_app_imports_no_heavy_modules() -> None:
    code = (
        "import sys, satk8s.cli.grid_cmd; "
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'hydra') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_expanding_a_grid_imports_no_model_or_stats_libraries() -> None:
    """Grid expansion builds every step's config: the config classes must load without torch,
    transformers, scipy or matplotlib (they cost seconds; only running a step needs them)."""
    code = (
        "import sys; from satk8s.grid import load_plan; plan = load_plan('arith'); "
        "heavy = ('torch', 'transformers', 'trl', 'scipy', 'matplotlib'); "
        "print(len(plan.nodes), sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "83 []"
