"""Grids: Hydra experiment configs expanded into one static DAG of step runs.

load_grid(name, overrides) -> GridConfig    compose conf/grid/<name>.yaml, type-check it
expand(grid) -> Plan                         the DAG, every node config resolved and checked
load_plan(name, overrides) -> Plan           both
"""

from satk8s.grid.config import GridConfig, check_grid, known_grids, load_grid
from satk8s.grid.expand import expand, load_plan, profile_dict
from satk8s.grid.plan import ROLES, Cell, Node, Plan

__all__ = [
    "ROLES",
    "Cell",
    "GridConfig",
    "Node",
    "Plan",
    "check_grid",
    "expand",
    "known_grids",
    "load_grid",
    "load_plan",
    "profile_dict",
]
