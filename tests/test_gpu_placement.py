"""GPU pods that schedule: the compute presets place the GPU roles by their provider's own GPU
node label (from the GPU catalogue, the chart's pools), their requests are derived from the GPU
type and the model and fit the common node shapes, the model is staged once, every task gets a
sized scratch volume, Kueue's labels reach every pod, and without Kueue the GPU tasks run in a
bounded number of chains.

Each finding these tests pin down held for the compiled `arith` before the compute presets: every
GPU task selected `satk8s.io/pool=gpu`, asked 8 CPU and 64-96 GiB, named the hub model, had no
scratch volume and no queue label, and all 30 trainings could start at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from satk8s.cluster.gpus import catalogue
from satk8s.cluster.settings import ClusterSettings, GpuPool
from satk8s.cluster.shapes import allocatable, misfit, per_pod_budget
from satk8s.errors import ConfigError
from satk8s.grid.cluster import load_cluster_plan
from satk8s.grid.plan import Plan
from satk8s.pipelines.builder import compile_plan

IMAGES = {
    "gpu": "registry.example/satk8s-gpu@sha256:" + "a" * 64,
    "cpu": "registry.example/satk8s-cpu@sha256:" + "b" * 64,
}
SETTINGS = ClusterSettings(store_root="s3://acme-satk8s/store", s3_secret="s3", source="test")
HUB_MODEL = "Qwen/Qwen3-1.7B-Base"


class Compiled:
    """A compiled pipeline, by task display name."""

    def __init__(self, plan: Plan, path: Path) -> None:
        self.plan = plan
        docs = list(yaml.safe_load_all(path.read_text()))
        self.spec, self.platform = docs[0], (docs[1] if len(docs) > 1 else {})
        self.tasks = {t["taskInfo"]["name"]: t for t in self.spec["root"]["dag"]["tasks"].values()}
        self.by_key = {
            k: t["taskInfo"]["name"] for k, t in self.spec["root"]["dag"]["tasks"].items()
        }

    def executor(self, task: str) -> str:
        return self.spec["components"][self.tasks[task]["componentRef"]["name"]]["executorLabel"]

    def container(self, task: str) -> dict[str, Any]:
        return self.spec["deploymentSpec"]["executors"][self.executor(task)]["container"]

    def k8s(self, task: str) -> dict[str, Any]:
        executors = self.platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        return executors.get(self.executor(task), {})

    def env(self, task: str) -> dict[str, str]:
        return {e["name"]: e["value"] for e in self.container(task).get("env", [])}

    def depends_on(self, task: str) -> set[str]:
        return {self.by_key[k] for k in self.tasks[task].get("dependentTasks", [])}


def compile_for(
    tmp_path: Path, overrides: list[str], settings: ClusterSettings = SETTINGS
) -> Compiled:
    plan = load_cluster_plan("arith", overrides, settings)
    return Compiled(plan, compile_plan(plan, tmp_path / "p.yaml", IMAGES))


def gpu_tasks(c: Compiled) -> list[str]:
    gpu = {r for r, p in c.plan.profiles.items() if p["accelerator_count"] > 0}
    return [n.id for n in c.plan.nodes if n.role in gpu]


@pytest.fixture(scope="module")
def gke(tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    return compile_for(tmp_path_factory.mktemp("gke"), ["compute=gke"])


# -- placement -----------------------------------------------------------------------------------


@pytest.mark.slow  # compiles arith (~10 s)
def test_compiled_arith_for_gke_selects_gkes_accelerator_label_and_no_satk8s_pool(
    gke: Compiled,
) -> None:
    text = json.dumps(gke.platform)
    assert "satk8s.io/pool" not in text
    for task in gpu_tasks(gke):
        spec = gke.k8s(task)
        assert spec["nodeSelector"]["labels"] == {
            "cloud.google.com/gke-accelerator": "nvidia-h100-80gb"
        }
        # GKE taints its GPU nodes nvidia.com/gpu=present:NoSchedule.
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
            "tolerations"
        ]
    assert len(gpu_tasks(gke)) == 64


@pytest.mark.parametrize(
    ("cloud", "gpu", "selector", "affinity"),
    [
        ("gke", "l4", {"cloud.google.com/gke-accelerator": "nvidia-l4"}, None),
        ("eks", "h100-80gb", {"node.kubernetes.io/instance-type": "p5.48xlarge"}, None),
        ("eks", "a10g", {}, ("node.kubernetes.io/instance-type", "g5.2xlarge")),
        ("aks", "a100-80gb", {}, ("node.kubernetes.io/instance-type", "Standard_NC24ads_A100_v4")),
        ("generic", "a100-40gb", {}, ("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-40GB")),
    ],
)
def test_each_cloud_preset_places_gpu_roles_by_its_own_gpu_label(
    cloud: str, gpu: str, selector: dict, affinity: tuple | None
) -> None:
    # LoRA: a full fine-tune of the 1.7B model does not fit a 24 GB GPU (tests/test_memory_plan.py)
    overrides = [f"compute={cloud}", f"compute.gpu={gpu}", "seeds=[0]", "train.lora=true"]
    plan = load_cluster_plan("arith", overrides, SETTINGS)
    profile = plan.profiles["train"]
    assert profile["node_selector"] == selector
    if affinity is None:
        assert profile["node_affinity"] == []
    else:
        (term,) = profile["node_affinity"]
        assert (term["key"], term["operator"]) == (affinity[0], "In")
        assert affinity[1] in term["values"]
        assert term["values"] == list(catalogue().gpus[gpu].nodes[cloud])


def test_a_gpu_a_cloud_does_not_offer_is_refused_naming_what_it_offers() -> None:
    with pytest.raises(ConfigError) as err:
        load_cluster_plan(
            "arith", ["compute=gke", "compute.gpu=a10g", "seeds=[0]", "train.lora=true"], SETTINGS
        )
    assert err.value.field == "compute.gpu"
    assert "gke offers no a10g nodes" in str(err.value) and "l4" in str(err.value)


def test_the_chart_pools_place_gpu_roles_on_the_pool_of_the_grids_gpu_type() -> None:
    pools = (
        GpuPool("l4", {"cloud.google.com/gke-nodepool": "l4-pool"}, gpu="l4"),
        GpuPool(
            "big",
            {"eks.amazonaws.com/nodegroup": "h100s"},
            gpu="h100-80gb",
            tolerations=(
                {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
            ),
        ),
    )
    settings = ClusterSettings(store_root="s3://acme-x/s", gpu_pools=pools, source="pools")
    plan = load_cluster_plan("arith", ["compute=eks", "seeds=[0]"], settings)
    train = plan.profiles["train"]
    assert train["node_selector"] == {"eks.amazonaws.com/nodegroup": "h100s"}
    assert train["node_affinity"] == []  # the pool's labels, not the preset's instance types
    assert train["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    ]
    assert plan.profiles["cpu"]["node_selector"] == {}
    with pytest.raises(ConfigError) as err:
        load_cluster_plan("arith", ["compute=gke", "compute.gpu=a100-80gb"], settings)
    assert err.value.field == "compute.gpu"
    assert "lists GPU pools l4 (l4), big (h100-80gb) but none of this GPU type" in str(err.value)


# -- requests that fit -----------------------------------------------------------------------------

SHAPES = {
    # name: (allocatable CPU, allocatable GiB), from each provider's documented reserve:
    # EKS: 6%/1%/0.5%/0.25% of cores; 11 MiB x max pods + 255 MiB, 100 MiB eviction
    "g5.2xlarge": (7.91, 32 - (11 * 58 + 255 + 100) / 1024),
    "g5.12xlarge": (48 - 0.19, 192 - (11 * 737 + 255 + 100) / 1024),
    "g6.2xlarge": (7.91, 32 - (11 * 58 + 255 + 100) / 1024),
    "p4d.24xlarge": (96 - 0.31, 1152 - (11 * 737 + 355) / 1024),
    "p5.48xlarge": (192 - 0.55, 2048 - (11 * 100 + 355) / 1024),
    # GKE: memory 25% of 4 GiB, 20% of 4, 10% of 8, 6% of 112, 2% above, 100 MiB eviction
    "g2-standard-8": (7.91, 32 - (1 + 0.8 + 0.8 + 16 * 0.06) - 100 / 1024),
    "g2-standard-16": (15.89, 64 - (1 + 0.8 + 0.8 + 48 * 0.06) - 100 / 1024),
    "a2-highgpu-1g": (11.9, 85 - (1 + 0.8 + 0.8 + 69 * 0.06) - 100 / 1024),
    "a3-highgpu-8g": (208 - 0.59, 1872 - (1 + 0.8 + 0.8 + 112 * 0.06 + 1744 * 0.02) - 100 / 1024),
    # AKS 1.29+: min(20 MB x max pods (250) + 50 MB, 25%); CPU from its table; 100 Mi eviction
    "Standard_NC24ads_A100_v4": (24 - 0.42, 220 - (20 * 250 + 50 + 100) / 1024),
    "Standard_ND96isr_H100_v5": (96 - 0.74, 1900 - (20 * 250 + 50 + 100) / 1024),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_node_shapes_leave_what_their_providers_document(name: str) -> None:
    shape = catalogue().shapes[name]
    cpu, memory = SHAPES[name]
    assert allocatable(shape).cpu == pytest.approx(cpu, abs=0.01)
    assert allocatable(shape).memory_gib == pytest.approx(memory, abs=0.01)


def test_the_reserve_formulas_match_the_providers_worked_examples() -> None:
    from satk8s.cluster.shapes import aks_allocatable, gke_allocatable

    # GKE: a 150 GiB node leaves 140.1423 GiB (9.76 GiB reserved plus 100 MiB for eviction).
    assert gke_allocatable(48, 150).memory_gib == pytest.approx(140.1423, abs=1e-3)
    # AKS: "8 GB memory, 30 pods: 20 MB x 30 + 50 MB = 650 MB kube-reserved" plus 100 Mi.
    assert aks_allocatable(2, 8, max_pods=30).memory_gib == pytest.approx(8 - 750 / 1024)


def test_the_old_fixed_requests_did_not_fit_common_one_gpu_shapes() -> None:
    shapes = catalogue().shapes
    # 8 CPU / 96 GiB (train) and 8 CPU / 64 GiB (generate, judge, evaluate)
    assert misfit(shapes["g5.2xlarge"], 1, 8, 96) is not None
    assert "96Gi memory > 30.0Gi that g5.2xlarge leaves for pods" in misfit(
        shapes["g5.2xlarge"], 1, 8, 96
    )
    assert misfit(shapes["g2-standard-8"], 1, 8, 64) is not None
    assert misfit(shapes["g2-standard-16"], 1, 8, 64) is not None
    assert misfit(shapes["a2-highgpu-1g"], 1, 8, 96) is not None


@pytest.mark.slow  # one arith expansion per GPU type (~15 s)
@pytest.mark.parametrize("gpu", sorted({s.gpu for s in catalogue().shapes.values() if s.supported}))
def test_the_default_arith_profile_fits_every_supported_shape_of_its_gpu(gpu: str) -> None:
    # On a 24 GB GPU the 1.7B model trains with LoRA (compile refuses a full fine-tune there:
    # tests/test_memory_plan.py); the requests below do not depend on it.
    small = catalogue().gpu(gpu).memory_gb < 40
    overrides = [f"compute.gpu={gpu}", "seeds=[0]", *(["train.lora=true"] if small else [])]
    plan = load_cluster_plan("arith", overrides, SETTINGS)
    assert not [n for n in plan.notes if "node shapes" in n]
    roles = {n.role for n in plan.nodes}
    shapes = catalogue().shapes_for(gpu)
    assert shapes
    for shape in shapes:
        for role in roles:
            p = plan.profiles[role]
            if not p["accelerator_count"]:
                continue
            memory = float(p["memory"].removesuffix("Gi"))
            assert misfit(shape, p["accelerator_count"], float(p["cpu"]), memory) is None, (
                role,
                shape.name,
                p["cpu"],
                p["memory"],
            )
            budget = per_pod_budget(shape, p["accelerator_count"])
            assert float(p["cpu"]) <= budget.cpu and memory <= budget.memory_gib


def test_requests_follow_the_gpu_type_and_the_model() -> None:
    def train(*overrides: str) -> dict:
        return load_cluster_plan("arith", ["seeds=[0]", *overrides], SETTINGS).profiles["train"]

    h100, a10g = train(), train("compute.gpu=a10g", "train.lora=true")
    # CPUs: 8 per GPU where the shapes have them, 7 on g5.2xlarge's 7.9 allocatable
    assert (h100["cpu"], a10g["cpu"]) == ("8", "7")
    # Memory: 4 GiB + 6 bytes per parameter (float32 weights, bf16 copy) + /dev/shm
    assert h100["memory"] == "16Gi" and h100["shm_size"] == "2Gi"
    big = train("model.path=Qwen/Qwen3-8B", "train.lora=true")
    assert big["memory"] == "52Gi"  # 8.19e9 parameters x 6 bytes = 46 GiB, + 4 + 2
    assert big["scratch_size"] == "218Gi"  # input, two checkpoints and the final model
    assert h100["scratch_size"] == "49Gi"


def test_compile_names_the_roles_that_do_not_fit_a_chosen_shape() -> None:
    with pytest.raises(ConfigError) as err:
        load_cluster_plan(
            "arith",
            ["compute=eks", "compute.gpu=a10g", "compute.shape=g5.xlarge", "train.lora=true"],
            SETTINGS,
        )
    message = str(err.value)
    assert err.value.field == "compute.shape"
    assert message.startswith("config field 'compute.shape': roles that do not fit g5.xlarge: ")
    for role in ("generate", "judge", "train", "evaluate"):
        assert f"{role}: " in message
    assert "external_judge" not in message  # no task of arith runs in that role
    # A shape that fits says nothing; one of another GPU type is refused at once.
    load_cluster_plan(
        "arith",
        ["compute.gpu=a10g", "compute.shape=g5.2xlarge", "seeds=[0]", "train.lora=true"],
        SETTINGS,
    )
    with pytest.raises(ConfigError, match="p5.48xlarge carries h100-80gb GPUs, not compute.gpu=l4"):
        load_cluster_plan("arith", ["compute.gpu=l4", "compute.shape=p5.48xlarge"], SETTINGS)


def test_a_model_of_unknown_size_needs_explicit_requests() -> None:
    with pytest.raises(ConfigError) as err:
        load_cluster_plan("arith", ["model.path=s3://acme-x/models/mine", "seeds=[0]"], SETTINGS)
    assert "needs the size of model 's3://acme-x/models/mine'" in str(err.value)
    assert "compute.generate.memory" in str(err.value) or "compute.cpu.scratch_size" in str(
        err.value
    )


# -- the model, staged once ------------------------------------------------------------------------


@pytest.mark.slow
def test_compiled_arith_has_exactly_one_task_that_names_the_hub_model(gke: Compiled) -> None:
    naming = [t for t, spec in gke.tasks.items() if HUB_MODEL in json.dumps(spec)]
    assert naming == ["stage-model"]
    assert gke.container("stage-model")["image"] == IMAGES["cpu"]
    stage_key = next(k for k, name in gke.by_key.items() if name == "stage-model")
    for task in gpu_tasks(gke):
        source = gke.tasks[task]["inputs"]["parameters"].get("model_location")
        if gke.plan.node(task).step == "evaluate" and task != "evaluate-base":
            assert source is None  # a cell's evaluation reads its trained model
            continue
        assert source["taskOutputParameter"] == {
            "outputParameterKey": "Output",
            "producerTask": stage_key,
        }


# -- disk -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_task_has_a_sized_scratch_volume_and_writes_there(gke: Compiled) -> None:
    for task in gke.tasks:
        mounts = {m["mountPath"]: m for m in gke.k8s(task).get("emptyDirMounts", [])}
        scratch = mounts["/scratch"]
        assert "medium" not in scratch  # the node's disk, not memory
        profile = gke.plan.profiles[gke.plan.node(task).role]
        assert scratch["sizeLimit"] == profile["scratch_size"]
        env = gke.env(task)
        assert env["SATK8S_CACHE"] == "/scratch/satk8s"  # staging and fetched inputs
        assert env["HF_HOME"] == "/scratch/huggingface"
        assert env["TMPDIR"] == "/scratch"
    train = gke.k8s("train-dpo-entropy-s1")
    assert {m["mountPath"]: m["sizeLimit"] for m in train["emptyDirMounts"]} == {
        "/dev/shm": "2Gi",
        "/scratch": "49Gi",
    }


def test_a_storage_class_gives_a_generic_ephemeral_volume_instead(tmp_path: Path) -> None:
    c = compile_for(
        tmp_path,
        [
            "seeds=[0]",
            "signals=[entropy]",
            "algorithms=[sft]",
            "compute.scratch_storage_class=premium-rwo",
        ],
    )
    (volume,) = c.k8s("train-sft-none-s0")["genericEphemeralVolume"]
    assert volume == {
        "accessModes": ["ReadWriteOnce"],
        "mountPath": "/scratch",
        "size": "49Gi",
        "storageClassName": "premium-rwo",
        "volumeName": "scratch",
    }
    assert [m["mountPath"] for m in c.k8s("train-sft-none-s0")["emptyDirMounts"]] == ["/dev/shm"]


# -- queues and concurrency -----------------------------------------------------------------------


def max_concurrent(c: Compiled, tasks: list[str]) -> int:
    """The most of `tasks` that can run at once: the largest set none of which waits for
    another (the width of their precedence order: Dilworth, as the smallest chain cover, from a
    maximum bipartite matching over the transitive precedence)."""
    before: dict[str, set[str]] = {}

    def ancestors(task: str) -> set[str]:
        if task not in before:
            before[task] = set()
            for up in c.depends_on(task):
                before[task] |= {up} | ancestors(up)
        return before[task]

    chosen = set(tasks)
    edges = {t: [u for u in ancestors(t) if u in chosen] for t in tasks}
    match: dict[str, str] = {}

    def augment(t: str, seen: set[str]) -> bool:
        for u in edges[t]:
            if u not in seen:
                seen.add(u)
                if u not in match or augment(match[u], seen):
                    match[u] = t
                    return True
        return False

    matched = sum(augment(t, set()) for t in tasks)
    return len(tasks) - matched


@pytest.mark.slow
def test_without_kueue_at_most_max_gpu_tasks_gpu_tasks_run_at_once(gke: Compiled) -> None:
    assert gke.plan.gpu_lanes == 4
    assert max_concurrent(gke, gpu_tasks(gke)) == 4


def test_without_the_cap_all_trainings_could_start_at_once(tmp_path: Path) -> None:
    c = compile_for(tmp_path, ["seeds=[0,1]", "signals=[entropy]", "compute.max_gpu_tasks=0"])
    trains = [n.id for n in c.plan.nodes if n.step == "train"]
    assert max_concurrent(c, trains) == len(trains) == 8


def test_with_kueue_every_pod_carries_its_queue_and_no_cap_is_added(tmp_path: Path) -> None:
    settings = ClusterSettings(
        store_root="s3://acme-x/s",
        gpu_pools=(
            GpuPool("h100", {"cloud.google.com/gke-nodepool": "h100"}, "satk8s-h100", "h100-80gb"),
        ),
        cpu_queue="satk8s-cpu",
        priority_classes={"train": "satk8s-cells", "generate": "satk8s-shared"},
        source="kueue",
    )
    c = compile_for(tmp_path, ["seeds=[0]", "signals=[entropy]"], settings)
    assert c.plan.gpu_lanes == 0  # Kueue's quota decides what runs
    gpu = set(gpu_tasks(c))
    for task in c.tasks:
        labels = c.k8s(task)["podMetadata"]["labels"]
        assert labels["kueue.x-k8s.io/queue-name"] == (
            "satk8s-h100" if task in gpu else "satk8s-cpu"
        )
        role = c.plan.node(task).role
        expected = {"train": "satk8s-cells", "generate": "satk8s-shared"}.get(role)
        assert labels.get("kueue.x-k8s.io/priority-class") == expected
    trains = [n.id for n in c.plan.nodes if n.step == "train"]
    assert max_concurrent(c, trains) == len(trains)


def test_compile_notes_an_inference_model_too_large_for_the_gpu_type() -> None:
    """A judge model whose bf16 weights do not fit its GPUs is noted (training that does not fit
    is refused instead: tests/test_memory_plan.py)."""
    judge = ["signal/external_judge=hf", "signal.external_judge.model=Qwen/Qwen3-32B"]
    plan = load_cluster_plan(
        "arith", ["compute.gpu=l4", "seeds=[0]", "train.lora=true", *judge], SETTINGS
    )
    (note,) = plan.notes
    assert note.startswith("role external_judge: the model's bf16 weights need about 66 GB")
    assert "2 x l4 (48 GB); a larger compute.gpu" in note
    lora = load_cluster_plan("arith", ["compute.gpu=l4", "seeds=[0]", "train.lora=true"], SETTINGS)
    assert lora.notes == ()


def test_grid_compile_prints_each_roles_requests_and_the_cap(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from satk8s.cli.main import app

    settings = tmp_path / "settings.yaml"
    settings.write_text(SETTINGS.export_yaml())
    digests = tmp_path / "digests.json"
    digests.write_text(json.dumps(IMAGES))
    args = ["grid", "compile", "arith", "seeds=[0]", "compute=eks", "compute.gpu=a10g"]
    args += [
        "train.lora=true",
        "signal/external_judge=hf",
        "signal.external_judge.model=Qwen/Qwen3-32B",
    ]
    args += ["--settings", str(settings), "--images", str(digests), "-o", str(tmp_path / "a.yaml")]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "  cpu            2 CPU, 8Gi, scratch 8Gi" in lines
    assert any(
        line.startswith(
            "  train          1 GPU, 7 CPU, 16Gi (shm 2Gi), scratch 49Gi; on node.kubernetes.io/instance-type in g5.xlarge|g5.2xlarge"
        )
        for line in lines
    )
    assert "GPU tasks: at most 4 at a time (compute.max_gpu_tasks)" in lines
    assert "warning: role external_judge: the model's bf16 weights need about 66 GB" in (
        result.stderr
    )
