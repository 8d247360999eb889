"""satk8s.store: the artifact store behind every step.

- `base`: one interface over `file://` and `s3://` (`get_store`, `put_dir`, `get_dir`, ...).
- `settings`: how to reach S3 (endpoint, region, addressing, credentials; never logged).
- `keys`: content-addressed output locations (`step_key`, `output_uri`) and the code version.
- `identity`, `model_identity`: what an output was computed from (config, input contents,
  models by content or commit), compared before an output is reused.
- `manifest`: the file that marks an output finished, created last.
- `lease`: the S3 writer lease (file:// uses a kernel lock, `local`).
- `fetch`, `digests`: finished outputs, read back verified; `inventory`, `gc`: what the store
  holds.
- `stage_model`: model references and the hub mirror.
- `redact`: secrets kept out of logs, manifests, errors and compiled pipelines.
- `faults`: named points where a step can be killed or frozen (`SATK8S_FAULT`).
Steps use all this through `satk8s.steps.outputs`.
"""

from satk8s.store.base import (
    ObjectInfo,
    Store,
    configure,
    get_dir,
    get_file,
    get_store,
    put_dir,
    put_file,
)
from satk8s.store.errors import CorruptObjectError, StoreError
from satk8s.store.keys import current_code_version, input_digest, output_uri, step_key
from satk8s.store.settings import S3Settings

__all__ = [
    "CorruptObjectError",
    "ObjectInfo",
    "S3Settings",
    "Store",
    "StoreError",
    "configure",
    "current_code_version",
    "get_dir",
    "get_file",
    "get_store",
    "input_digest",
    "output_uri",
    "put_dir",
    "put_file",
    "step_key",
]
