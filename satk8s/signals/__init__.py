"""satk8s.signals."""
