"""The tiny embedded base model: a small Qwen3 trained from scratch on worked arithmetic."""

from satk8s.tiny.build import TinyBuildConfig, build_or_reuse, build_tiny_model

__all__ = ["TinyBuildConfig", "build_or_reuse", "build_tiny_model"]
