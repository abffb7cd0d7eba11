"""Resuming a stream: a subscriber with `after` replays the log on its own, then joins its cohort.

`sourceEvents(after: $after)` is, once caught up, the same stream as the operation with `after`
null: every subscriber of it that resumes after a deploy would otherwise run alone for good.
So the subscriber joins the cohort of the operation with `after` null (held: what the cohort
publishes waits in its backlog), replays the log from its cursor up to the position it joined
at, through its own run of the operation with `after` (which also checks the cursor), then
gets the held results: every change once, in order, with no gap.

A document that writes `after` inline (not as a variable) cannot be told apart from its cohort
without rewriting it, and is served on its own (`ALONE`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Literal

from strawberry.types.execution import PreExecutionError

from graph import cohorts, documents
from graph.permissions import LIVE_PERMISSIONS, MEMBERS_HOLD
from graph.subscriptions import REPLAY_UNTIL

ALONE: Literal["alone"] = "alone"


@dataclasses.dataclass(frozen=True)
class Resume:
    """A subscription that resumes after a cursor passed in the variable `variable`."""

    variable: str
    variables: dict[str, Any]  # the operation's own

    @property
    def shared_variables(self) -> dict[str, Any]:
        """The variables of the cohort it joins: the same, with `after` null."""
        return {**self.variables, self.variable: None}


def plan(query: str, operation_name: str | None, variables: dict[str, Any] | None) -> Resume | Literal["alone"] | None:
    """Return how a subscription resumes: a Resume, ALONE (served on its own), or None (it does not)."""
    after = documents.after_argument(query, operation_name)
    if after is None:
        return None
    if after == documents.INLINE:
        return ALONE
    name, has_default = after
    variables = dict(variables or {})
    if name not in variables and has_default:
        return ALONE  # resumes after a cursor written into the document
    if variables.get(name) is None:
        return None  # `after` null or absent: an ordinary subscription
    return Resume(name, variables)


async def replay(
    schema: Any, query: str, operation_name: str | None, resume: Resume, member: cohorts.Member, upto: int
) -> PreExecutionError | bool:
    """Send `member` the logged changes after its cursor up to `upto`, through its own run.

    Returns True once caught up, False when the run ended with an error result (sent to the
    member: a cursor this log never issued, say), or the run's PreExecutionError (a variable
    that does not fit its type), which each protocol reports its own way.
    """
    context = {"request": None, "response": None, "ws": None, MEMBERS_HOLD: LIVE_PERMISSIONS, REPLAY_UNTIL: upto}
    results = await schema.subscribe(
        query, variable_values=resume.variables, context_value=context, operation_name=operation_name
    )
    if isinstance(results, PreExecutionError):
        return results
    async with contextlib.aclosing(results):
        async for result in results:
            if isinstance(result, PreExecutionError):
                return result
            await cohorts.deliver(member, cohorts.Outcome(cohorts.encode(result), None, "event"))
            if result.errors:
                return False
    return True
