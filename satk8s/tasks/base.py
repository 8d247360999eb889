"""The question record every task produces, and the base-model prompt format."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

# Generation stops at the start of the next few-shot block; a base model otherwise runs on.
STOP_STRINGS: tuple[str, ...] = ("\n\nQuestion:", "\nQuestion:")


@dataclass(frozen=True)
class Question:
    """One question of a task.

    `answer` is the gold final answer as a canonical number string ("72", "-5", "0.5").
    `solution` is a reference worked solution that ends in "#### <answer>".
    """

    id: str
    question: str
    answer: str
    solution: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def format_prompt(question: str, fewshot: Sequence[Question] = ()) -> str:
    """The base-model prompt: optional few-shot blocks, then `Question: …\\nAnswer:`.

    The completion is expected to start with a space and end in `#### N`.
    """
    blocks = [f"Question: {q.question}\nAnswer: {q.solution}" for q in fewshot]
    blocks.append(f"Question: {question}\nAnswer:")
    return "\n\n".join(blocks)
