"""Verdicts and rankings: does a job need a GPU, which one, and what it costs (``cost``: the arithmetic;
``verdict``: candidates, constraints and the verdict)."""

from . import cost
from .cost import Figure
from .verdict import ADVISE_SCHEMA, Candidate, Constraints, Verdict, decide, human_time

__all__ = ["ADVISE_SCHEMA", "Candidate", "Constraints", "Figure", "Verdict", "cost", "decide", "human_time"]
