"""satk8s."""
