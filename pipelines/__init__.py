"""The experiment pipeline built from a grid, and the Hydra grid configs under conf/."""
