"""GPU-hour estimates of a grid (`satk8s grid show`): token counts from the grid's limits,
a roofline per GPU type, measured figures from benchmarks/gpu.py when given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from satk8s.cli.grid_cmd import grid_app
from satk8s.errors import ConfigError
from satk8s.grid import load_plan
from satk8s.grid.cost import (
    FORWARD_MFU,
    GPUS,
    MODELS,
    TASK_OVERHEAD_S,
    TRAIN_MFU,
    ModelShape,
    Throughput,
    Work,
    gpu_hours,
    load_throughput,
    node_work,
)
from satk8s.grid.plan import Plan

REPO = Path(__file__).resolve().parents[1]
QWEN3_1_7B = MODELS["Qwen/Qwen3-1.7B-Base"]


@pytest.fixture(scope="module")
def arith() -> Plan:
    return load_plan("arith", [])


@pytest.fixture(scope="module")
def gsm8k() -> Plan:
    return load_plan("gsm8k", [])


def test_the_benchmark_config_and_the_cost_table_are_the_same_model() -> None:
    shipped = json.loads((REPO / "benchmarks" / "qwen3-1.7b.json").read_text())
    assert ModelShape.from_config(shipped) == QWEN3_1_7B


def test_parameter_counts_match_transformers() -> None:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**json.loads((REPO / "benchmarks" / "qwen3-1.7b.json").read_text()))
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    norms = sum(p.numel() for n, p in model.named_parameters() if "norm" in n)
    assert QWEN3_1_7B.params == model.num_parameters() - norms == 1_720_451_072
    # 1.4B without embeddings, as the model card says: the head is tied to the embedding.
    assert QWEN3_1_7B.params - 151936 * 2048 == pytest.approx(1.41e9, rel=0.01)


def test_roofline_rates() -> None:
    h100, l4 = Throughput(GPUS["h100-80gb"]), Throughput(GPUS["l4"])
    n = QWEN3_1_7B.matmul_params
    assert h100.rate(Work(1, "train", "m", flops_per_param=6), QWEN3_1_7B) == pytest.approx(
        TRAIN_MFU * 989e12 / (6 * n)
    )
    assert h100.rate(Work(1, "forward", "m"), QWEN3_1_7B) == pytest.approx(
        FORWARD_MFU * 989e12 / (2 * n)
    )
    # Decoding on an L4 (0.3 TB/s) is bandwidth-bound: KV-cache traffic makes it slower than
    # its FLOPs allow, and longer contexts slower still.
    short, long = (Work(1, "decode", "m", context=c) for c in (100, 2000))
    assert l4.rate(short, QWEN3_1_7B) > l4.rate(long, QWEN3_1_7B)
    assert l4.rate(short, QWEN3_1_7B) < FORWARD_MFU * 121e12 / (2 * n)
    assert h100.rate(short, QWEN3_1_7B) / l4.rate(short, QWEN3_1_7B) > 5


def test_arith_grid_token_counts_come_from_its_limits(arith: Plan) -> None:
    from satk8s.grid.cost import _budget

    plan = arith
    budget = _budget(plan)
    assert budget.questions == {"train": 2100, "eval_id": 550, "eval_hard": 1000}
    assert budget.prompt_tokens == 512 - 256  # train max_length less the sampling budget
    generate = node_work(plan.node("generate"), budget)
    assert generate.tokens == 2100 * 16 * 256 and generate.kind == "decode"
    train = node_work(plan.node("train-dpo-entropy-s0"), budget)
    # One pair per question, two sequences of max_length, gradient checkpointing and a reference.
    assert train.tokens == 2100 * 2 * 512 and train.flops_per_param == 10
    sft = node_work(plan.node("train-sft-none-s0"), budget)
    assert sft.tokens == 2100 * 16 * 512 and sft.flops_per_param == 8
    assert node_work(plan.node("signal-external_judge"), budget) is None  # the oracle: CPU
    evaluate = node_work(plan.node("evaluate-base"), budget)
    assert evaluate.tokens == (550 + 1000) * 256


def test_deduplication_saves_gpu_hours_where_steps_are_shared(arith: Plan) -> None:
    costs = {c.role: c for c in gpu_hours(arith, load_throughput("h100-80gb"))}
    assert set(costs) == {"generate", "judge", "external_judge", "train", "evaluate"}
    # One generate task instead of one per cell (30 cells): exactly 30x.
    assert costs["generate"].tasks == 1
    assert costs["generate"].naive_gpu_hours == pytest.approx(30 * costs["generate"].gpu_hours)
    # Training runs once per cell either way.
    assert costs["train"].naive_gpu_hours == pytest.approx(costs["train"].gpu_hours)
    # The base model's evaluation is shared: 31 tasks instead of 60.
    assert costs["evaluate"].tasks == 31 and costs["evaluate"].naive_gpu_hours > 1.9 * (
        costs["evaluate"].gpu_hours
    )
    assert costs["external_judge"].tasks == 0  # the arith oracle needs no GPU
    # Each GPU task holds its GPUs at least TASK_OVERHEAD_S.
    assert costs["train"].gpu_hours > 30 * TASK_OVERHEAD_S / 3600


def test_a_model_too_large_for_the_gpus_is_flagged(gsm8k: Plan) -> None:
    costs = {c.role: c for c in gpu_hours(gsm8k, load_throughput("l4"))}
    assert costs["external_judge"].too_big == ("Qwen/Qwen3-32B (66 GB)",)
    # 16 bytes per weight (28 GB) and a micro-batch's activations (satk8s.grid.cost.train_memory).
    assert costs["train"].too_big == ("Qwen/Qwen3-1.7B-Base (43 GB)",)
    h100 = {c.role: c for c in gpu_hours(gsm8k, load_throughput("h100-80gb"))}
    assert all(not c.too_big for c in h100.values())


def test_a_cpu_grid_has_no_gpu_hours() -> None:
    assert gpu_hours(load_plan("smoke", []), load_throughput("h100-80gb")) == []


def test_measured_figures_replace_the_roofline(tmp_path: Path) -> None:
    n = QWEN3_1_7B.matmul_params
    result = tmp_path / "gpu.json"
    result.write_text(
        json.dumps(
            {
                "throughput": {
                    "decode": {"tokens_per_s": 20000.0, "flops_per_token": 2 * n},
                    "forward": {"tokens_per_s": None, "flops_per_token": 2 * n},
                    "train": {"tokens_per_s": 12000.0, "flops_per_token": 8 * n},
                }
            }
        )
    )
    measured = load_throughput("h100-80gb", result)
    assert measured.rate(Work(1, "decode", "m"), QWEN3_1_7B) == pytest.approx(20000)
    # Training without checkpointing does 6/8 of the FLOPs per token: 8/6 as fast.
    assert measured.rate(Work(1, "train", "m", flops_per_param=6), QWEN3_1_7B) == pytest.approx(
        16000
    )
    # A model of twice the parameters: half the tokens/s.
    double = ModelShape(56, 2048, 16, 8, 128, 6144, 151936, True)
    assert measured.rate(Work(1, "decode", "m"), double) < 0.55 * 20000
    # No measured figure for scoring: the roofline's.
    assert measured.rate(Work(1, "forward", "m"), QWEN3_1_7B) == Throughput(GPUS["h100-80gb"]).rate(
        Work(1, "forward", "m"), QWEN3_1_7B
    )


def test_bad_gpu_or_throughput_file_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'gpu': unknown GPU type 'x100'; known: h100-80gb"):
        load_throughput("x100")
    (tmp_path / "bad.json").write_text('{"results": {}}')
    with pytest.raises(ConfigError, match=r"'throughput': .*bad.json: not a benchmarks/gpu.py"):
        load_throughput("h100-80gb", tmp_path / "bad.json")


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(grid_app, name="grid")
    return app


def test_grid_show_prints_gpu_hours_per_role() -> None:
    result = CliRunner().invoke(_cli(), ["grid", "show", "arith", "--gpu", "a100-80gb"])
    assert result.exit_code == 0, result.output
    assert "GPU-hours on a100-80gb (ESTIMATES, not measurements)" in result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()}
    assert rows["generate"][1:4] == ["1", "1", "8.6M"]
    assert rows["train"][1:3] == ["30", "1"]
    assert float(rows["total"][1]) < float(rows["total"][2])  # deduplicated < naive
    assert "roofline estimate: 312 bf16 TFLOP/s dense and 2.039 TB/s" in result.output


def test_grid_show_json_has_the_estimate() -> None:
    result = CliRunner().invoke(_cli(), ["grid", "show", "gsm8k", "--json"])
    assert result.exit_code == 0, result.output
    hours = json.loads(result.output)["gpu_hours"]
    assert hours["gpu"] == "h100-80gb"
    assert set(hours["roles"]) == {"generate", "judge", "external_judge", "train", "evaluate"}
    assert hours["roles"]["external_judge"]["gpus_per_task"] == 2
    assert hours["total"]["deduplicated"] < hours["total"]["naive"]
    assert hours["total"]["deduplicated"] == pytest.approx(
        sum(r["deduplicated"] for r in hours["roles"].values()), abs=0.01
    )
