"""satk8s.tasks."""
