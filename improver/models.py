"""The native trace events and the reviewed-session record the loop works on."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


NonBlank = Annotated[str, AfterValidator(_not_blank)]

# Ids travel into file names, markdown, git messages and terminals: no control characters.
ID_TEXT = r"^[^\x00-\x1f\x7f]+$"


class DecisionEvent(BaseModel):
    """What the agent decided for one session (native trace JSONL, ``type: decision``)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["decision"] = "decision"
    session_id: NonBlank = Field(pattern=ID_TEXT)
    case: dict[str, Any]
    decision: NonBlank
    confidence: str | None = None
    reasoning: str = ""
    cited: list[str] = Field(default_factory=list)
    config_version: str | None = None
    ts: str | None = None


class ReviewEvent(BaseModel):
    """What a human reviewer decided for one session (``type: review``)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["review"] = "review"
    session_id: NonBlank = Field(pattern=ID_TEXT)
    reviewer: str = "unknown"
    decision: NonBlank
    reasoning: str = ""
    precedent: str | None = None
    conditions: list[str] = Field(default_factory=list)
    ts: str | None = None
    confidence: str | None = Field(default=None, description="how sure the reviewer said they were, as they said it "
                                   "(e.g. Arize's \"Reviewer Confidence\"); not part of the review's identity")
    inferred: bool = Field(default=False, exclude=True,
                           description="read from a span's output, not from a reviewer's own annotation; loses to one that is")


Event = DecisionEvent | ReviewEvent


class Quarantined(BaseModel):
    """A piece of input that could not be used, kept with the reason."""

    source: str
    line: int
    reason: str
    raw: str


@dataclass(slots=True)
class ReviewedSession:
    """One session with the agent's decision and the current human review.

    A plain slotted record, not a pydantic model: the loop holds one per reviewed
    session (a million at scale), built from validated events in the store."""

    session_id: str
    case: dict[str, Any]
    agent_decision: str
    human_decision: str
    agent_confidence: str | None = None
    agent_reasoning: str = ""
    cited: list[str] = field(default_factory=list)
    reviewer: str = "unknown"
    human_reasoning: str = ""
    precedent: str | None = None
    conditions: list[str] = field(default_factory=list)
    human_confidence: str | None = None

    @property
    def agrees(self) -> bool:
        return self.agent_decision == self.human_decision
