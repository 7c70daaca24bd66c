"""The one error vocabulary that provider clients, the waterfall and the dead-letter queue share.

Every provider answer is either a result (found, or an empty "not found") or one of these.
The waterfall decides on the class alone: transient errors are retried and may make a dead letter
retryable; rejected credentials disable the provider in the worker (its stage is then
skipped); other permanent errors fail the stage; ``FeatureUnavailable`` and ``NotFound`` are
ordinary answers that never count against a circuit breaker.
"""

from __future__ import annotations


class TrackflowError(Exception):
    """Base of every error trackflow raises on purpose."""


class ConfigError(TrackflowError):
    """Invalid configuration; the message names the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"invalid configuration {key}: {message}")
        self.key = key


class ProviderError(TrackflowError):
    """An answer from (or a failure to reach) one provider."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class TransientError(ProviderError):
    """Worth retrying later: 5xx, timeouts, 429/503 rate limits, quota answers."""

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        retry_after: float | None = None,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(provider, message)
        #: Seconds the provider asked us to wait (Retry-After), when it said so.
        self.retry_after = retry_after
        #: True when the provider said we exceeded its rate limit.
        self.rate_limited = rate_limited


class BreakerOpen(TransientError):
    """The provider's breaker refused the call; nothing was sent."""


class RateLimitWait(TransientError):
    """No rate-limit permit before the caller's deadline; nothing was sent, no slot was taken.
    The provider is busy, not down: the waterfall defers the stage rather than failing it."""


class PermanentError(ProviderError):
    """Retrying cannot help: invalid or suspended credentials, a request the API rejects."""


class CredentialsRejected(PermanentError):
    """The provider refused our credentials or our app (an invalid Spotify client, a suspended
    Last.fm key, a Discogs 401): only an operator fixing the configuration can cure it, so the
    gate disables the provider in this worker (:class:`ProviderDisabled`)."""


class ProviderDisabled(PermanentError):
    """The provider is disabled in this worker after a configuration error; nothing was sent.
    The waterfall skips it (``skipped: provider_disabled``), it never makes a dead letter."""


class NotFound(ProviderError):
    """The provider answered and has no such track."""


class FeatureUnavailable(ProviderError):
    """The provider refuses this feature for our app (Spotify audio features since 2024)."""
