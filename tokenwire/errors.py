"""The root of every error tokenwire raises on purpose.

    TokenwireError
    ├── ServiceError          a local service (Kafka, InfluxDB) failed to install or start
    ├── TopicError            a topic could not be created or described
    ├── GenerationError       the LLM call failed for good (carries code and retryable)
    ├── StreamTokenError      a stream token is missing, malformed, expired or for another session
    ├── AuthError             a caller credential is missing, malformed, expired or not trusted
    └── UnsafeSettingsError   a built-in or empty secret outside development mode
"""


class TokenwireError(Exception):
    """Base class for tokenwire's own errors."""


class ServiceError(TokenwireError):
    """A local service could not be installed or started; the message names its log file."""


class TopicError(TokenwireError):
    """A Kafka topic could not be created or described."""


class GenerationError(TokenwireError):
    def __init__(
        self, code: str, message: str, *, retryable: bool, retry_after_s: float | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class StreamTokenError(TokenwireError):
    def __init__(self, reason: str, *, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class AuthError(TokenwireError):
    """A caller could not be authenticated (401) or is not allowed (403)."""

    def __init__(self, reason: str, *, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class UnsafeSettingsError(TokenwireError):
    """The message names every setting that must be set before this process may start."""
