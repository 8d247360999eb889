"""Named fault points: where a test (or an operator rehearsing a failure) can stop a step.

`SATK8S_FAULT` names one or more points, comma-separated, each `POINT[@N][:ACTION]`:

- `POINT`: where the code calls `fault_point(POINT)` (the list below);
- `@N`: act at the N-th time this process reaches the point (default the first);
- `ACTION`: `kill` (SIGKILL to this process: nothing runs after it, as when a node dies; the
  default), `stop` (SIGSTOP: the process freezes until someone sends SIGCONT, as a stalled
  writer does), or `raise` (a `FaultInjected` exception: an upload error, then a retry).

The points:

| point | where |
| --- | --- |
| `after-shard` | generate: a shard of samples is committed to the store |
| `after-checkpoint` | train: a checkpoint is committed to the store |
| `after-last-checkpoint` | train: the final checkpoint is committed, the model not yet saved |
| `before-upload` | every step: the lease just checked, the output's files not yet uploaded |
| `before-manifest` | every step: all files are in the store, the manifest not yet written |
| `during-gc` | store gc: an output's manifest is deleted, its files not yet |

Reading the variable costs one dictionary lookup when it is unset, so the points stay in the
code for good: the same injection works through `satk8s step`, kfp.local and a cluster pod.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter

from satk8s.errors import ConfigError

FAULT_ENV = "SATK8S_FAULT"
POINTS = (
    "after-shard",
    "after-checkpoint",
    "after-last-checkpoint",
    "before-upload",
    "before-manifest",
    "during-gc",
)
ACTIONS = ("kill", "stop", "raise")
_reached: Counter[str] = Counter()


class FaultInjected(RuntimeError):
    """Raised at a fault point whose action is `raise`."""


def parse_faults(text: str) -> dict[str, tuple[int, str]]:
    """`SATK8S_FAULT`'s value as {point: (occurrence, action)}; bad entries are ConfigErrors."""
    faults = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        spec, _, action = entry.partition(":")
        point, _, count = spec.partition("@")
        if point not in POINTS:
            raise ConfigError(
                FAULT_ENV, f"unknown fault point '{point}'; known: {', '.join(POINTS)}"
            )
        if (action or "kill") not in ACTIONS:
            raise ConfigError(FAULT_ENV, f"unknown action '{action}'; use one of {ACTIONS}")
        if count and (not count.isdigit() or int(count) < 1):
            raise ConfigError(FAULT_ENV, f"'{entry}': the count after @ must be >= 1")
        faults[point] = (int(count or 1), action or "kill")
    return faults


def fault_point(point: str) -> None:
    """Act on `point` if `SATK8S_FAULT` names it (see the module doc); otherwise nothing."""
    text = os.environ.get(FAULT_ENV)
    if not text:
        return
    wanted = parse_faults(text).get(point)
    if wanted is None:
        return
    _reached[point] += 1
    if _reached[point] != wanted[0]:
        return
    action = wanted[1]
    print(f"satk8s: fault point {point} reached: {action}", file=sys.stderr, flush=True)
    if action == "raise":
        raise FaultInjected(f"fault injected at {point} ({FAULT_ENV})")
    os.kill(os.getpid(), signal.SIGKILL if action == "kill" else signal.SIGSTOP)
