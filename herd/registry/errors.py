"""What can go wrong talking to a registry, one class a meaning; messages follow Ollama's texts."""

from __future__ import annotations


class RegistryError(Exception):
    """A pull or push that failed; the message is what the client is shown."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status  # the registry's HTTP status, when it answered
        self.retryable = retryable  # a server error or a cut connection: another attempt may work


class InsecureProtocol(RegistryError):
    """An `http://` name without `insecure`: Ollama's `insecure protocol http`."""

    def __init__(self) -> None:
        super().__init__("insecure protocol http")


class BlobCorrupt(RegistryError):
    """Downloaded bytes that do not hash to their digest (they are deleted, never kept)."""
