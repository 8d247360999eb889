"""One lightweight KFP component per pipeline step: the plain functions.

`satk8s.components.step_component` turns each into `@dsl.component(base_image=<image@digest>,
install_kfp_package=False)` at compile time, when the pinned image is known. KFP serializes a
component's body by its source, so every body only imports satk8s and calls
`satk8s.orchestration.component_runner.run_component`: no logic lives here.

Every component takes its node id (for logs), the store root, the step's resolved config as
JSON text (kfp.local turns lists of ints into floats; a string stays exact), `force`,
`model_location` (an upstream model output that replaces the config's `model`) and one string
per step input (an upstream output location, several joined with commas; optional inputs
default to "", absent); it returns its output location.

No `from __future__ import annotations` here: KFP reads these annotations as real types.
"""

from kfp.dsl import HTML, Markdown, Metrics, Output


def tiny(
    node: str,
    store_root: str,
    config_json: str,
    metrics: Output[Metrics],
    force: bool = False,
    model_location: str = "",
) -> str:
    """Build (or reuse) the tiny embedded base model and store its checkpoint."""
    from satk8s.orchestration.component_runner import run_component

    return run_component("tiny", node, store_root, config_json, force, model_location, {}, metrics)


def stage_model(
    node: str,
    store_root: str,
    config_json: str,
    metrics: Output[Metrics],
    force: bool = False,
    model_location: str = "",
) -> str:
    """Mirror a hub model into the store at the commit its revision resolves to."""
    from satk8s.orchestration.component_runner import run_component

    return run_component(
        "stage_model", node, store_root, config_json, force, model_location, {}, metrics
    )


def prepare(
    node: str,
    store_root: str,
    config_json: str,
    metrics: Output[Metrics],
    force: bool = False,
    model_location: str = "",
) -> str:
    """Build a task's question sets, one Parquet per split, with their prompts."""
    from satk8s.orchestration.component_runner import run_component

    return run_component(
        "prepare", node, store_root, config_json, force, model_location, {}, metrics
    )


def generate(
    node: str,
    store_root: str,
    config_json: str,
    questions: str,
    metrics: Output[Metrics],
    force: bool = False,
    model_location: str = "",
) -> str:
    """Sample n solutions per question with token ids and logprobs, in resumable shards."""
    from satk8s.orchestration.component_runner import run_component

    inputs = {"questions": questions}
    return run_component(
        "generate", node, store_root, config_json, force, model_location, inputs, metrics
    )


def saturate(
    node: str,
    store_root: str,
    config_json: str,
    questions: str,
    samples: str,
    metrics: Output[Metrics],
    force: bool = False,
    model_location: str = "",
) -> str:
    """Verify every sample and keep the saturated questions' correct solutions."""
    from satk8s.orchestration.component_runner import run_component

    inputs = {"questions": questions, "samples": samples}
    return run_component(
        "saturate", node, store_root, config_json, force, model_location, inputs, metrics
    )


def signals(
    node: str,
    store_root: str,
    config_json: str,
    kept: str,
    metrics: Output[Metrics],
    force: bool = False,
    model_location: str = "",
) -> str:
    """Score every correct solution of every saturated question with one signal."""
    from satk8s.orchestration.component_runner import run_component

    inputs = {"kept": kept}
    return run_component(
        "signals", node, store_root, config_json, force, model_location, inputs, metrics
    )


def calibrate(
    node: str,
    store_root: str,
    config_json: str,
    scores: str,
    judge: str,
    metrics: Output[Metrics],
    calibration: Output[Markdown],
    force: bool = False,
    model_location: str = "",
) -> str:
    """Measure how well each signal agrees with the external judge."""
    from satk8s.orchestration.component_runner import run_component

    inputs = {"scores": scores, "judge": judge}
    return run_component(
        "calibrate",
        node,
        store_root,
        config_json,
        force,
        model_location,
        inputs,
        metrics,
        calibration,
    )


def build_dataset(
    node: str,
    store_root: str,
    config_json: str,
    kept: str,
    metrics: Output[Metrics],
    scores: str = "",
    force: bool = False,
    model_location: str = "",
) -> str:
    """Build one training set (signal x algorithm) from the kept solutions."""
    from satk8s.orchestration.component_runner import run_component

    inputs = {"kept": kept, "scores": scores}
    return run_component(
        "build_dataset", node, store_root, config_json, force, model_location, inputs, metrics
    )


def train(
    node: str,
    store_root: str,
    config_json: str,
    dataset: str,
    metrics: Output[Metrics],
    force: bool = False,
    model_location: str = "",
) -> str:
    """Fine-tune the policy on one training set with TRL."""
    from satk8s.orchestration.component_runner import run_component

    inputs = {"dataset": dataset}
    return run_component(
        "train", node, store_root, config_json, force, model_location, inputs, metrics
    )


def evaluate(
    node: str,
    store_root: str,
    config_json: str,
    questions: str,
    metrics: Output[Metrics],
    model: str = "",
    force: bool = False,
    model_location: str = "",
) -> str:
    """Greedy accuracy (and pass@k / maj@k) of one model on every eval set."""
    from satk8s.orchestration.component_runner import run_component

    inputs = {"questions": questions, "model": model}
    return run_component(
        "evaluate", node, store_root, config_json, force, model_location, inputs, metrics
    )


def merge(
    node: str,
    store_root: str,
    config_json: str,
    parts: str,
    metrics: Output[Metrics],
    force: bool = False,
    model_location: str = "",
) -> str:
    """Merge the part outputs of a step split over tasks into one output."""
    from satk8s.orchestration.component_runner import run_component

    inputs = {"parts": parts}
    return run_component(
        "merge", node, store_root, config_json, force, model_location, inputs, metrics
    )


def report(
    node: str,
    store_root: str,
    config_json: str,
    evaluations: str,
    metrics: Output[Metrics],
    report_markdown: Output[Markdown],
    report_html: Output[HTML],
    saturation: str = "",
    calibration: str = "",
    force: bool = False,
    model_location: str = "",
) -> str:
    """The results table, figures and calibration, as Markdown, HTML and JSON."""
    from satk8s.orchestration.component_runner import run_component

    inputs = {"evaluations": evaluations, "saturation": saturation, "calibration": calibration}
    return run_component(
        "report",
        node,
        store_root,
        config_json,
        force,
        model_location,
        inputs,
        metrics,
        report_markdown,
        report_html,
    )


FUNCTIONS = {
    f.__name__: f
    for f in (
        tiny,
        stage_model,
        prepare,
        generate,
        saturate,
        signals,
        calibrate,
        build_dataset,
        train,
        evaluate,
        merge,
        report,
    )
}
"""Step name (a key of `satk8s.steps.STEPS`) -> its component function."""
