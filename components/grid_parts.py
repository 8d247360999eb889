"""KFP components of a grid split into several runs (`satk8s.grid.split`): thin wrappers of
`satk8s.orchestration.grid_parts`, like the step components (`steps.py`).

No `from __future__ import annotations` here: KFP reads these annotations as real types.
"""


def await_output(
    node: str,
    store_root: str,
    step: str,
    config_json: str,
    inputs_json: str,
    model_location: str = "",
) -> str:
    """Wait until another part of the grid has finished a node; return its location."""
    from satk8s.orchestration.grid_parts import await_output

    return await_output(node, store_root, step, config_json, inputs_json, model_location)


def publish_part(node: str, store_root: str, config_json: str, evaluations: str) -> str:
    """Publish this part's evaluation locations for part 1's report."""
    import json

    from satk8s.orchestration.grid_parts import publish_part

    config = json.loads(config_json)
    return publish_part(store_root, config["grid_id"], config["part"], config["nodes"], evaluations)


def gather_parts(node: str, store_root: str, config_json: str, own: str) -> str:
    """Every evaluation of the grid, this part's and the others' published ones, in order."""
    import json

    from satk8s.orchestration.grid_parts import gather_parts

    config = json.loads(config_json)
    return gather_parts(
        store_root, config["grid_id"], config["parts"], config["order"], config["own"], own
    )


FUNCTIONS = {f.__name__: f for f in (await_output, publish_part, gather_parts)}
"""Name -> component function."""
