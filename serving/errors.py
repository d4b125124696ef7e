"""Domain errors of the serving tier.

Domain code (catalog, rollouts, campaigns, review, assets) raises these and knows nothing of
HTTP; `serving.api.errors` maps each kind to a status code once, at the edge. Anything that is
not a `DomainError` is a bug: the API answers 500 with a request id and logs the traceback.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the domain refuses, with a message a client can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """The object does not exist (or the caller may not know that it does)."""


class Conflict(DomainError):
    """The object is not in a state that allows this (no champion, a rollout already running)."""


class Invalid(DomainError):
    """The request is well-formed but its content breaks a rule (a limit, a template)."""


class Gone(DomainError):
    """The object existed and was deleted (retention, erasure) or its file is lost."""


class Unavailable(DomainError):
    """A dependency failed (a model that cannot be loaded, a registry that does not answer)."""


class Overloaded(Unavailable):
    """The generator's queue is at its bound (`serving.scheduler`): try again after
    `retry_after_s` seconds."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[object, ...]:
        # Raised in a generator replica and re-raised in the ingress: Ray pickles it.
        return (_overloaded, (self.message, self.retry_after_s))


def _overloaded(message: str, retry_after_s: int) -> Overloaded:
    return Overloaded(message, retry_after_s=retry_after_s)


class DeadlineExceeded(DomainError):
    """The request's deadline passed before its images were drawn; the work was dropped."""


class RateLimited(DomainError):
    """A rate limit or quota of the caller's key or brand is used up until its window ends
    (`serving.admission`): `retry_after_s` says when to try again, `limit` which limit it was
    (scope, name, metric, limit, window)."""

    def __init__(self, message: str, *, retry_after_s: int, limit: dict[str, object]) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.limit = limit
