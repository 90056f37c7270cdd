"""One error type for everything a user can act on, defined here, below every layer, so
that any of them may raise it. The REST API renders it as {"error": {"code", "message"}};
the gateway as KServe's {"error": "<message>", "code": ...}."""


class PlatformError(Exception):
    status = 400
    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status

    def as_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class NotFound(PlatformError):
    status = 404
    code = "not_found"


class Conflict(PlatformError):
    status = 409
    code = "conflict"


class QuotaExceeded(PlatformError):
    status = 403
    code = "quota_exceeded"


def validation_message(exc) -> str:
    """A Django ValidationError (from a model's full_clean) as one readable sentence, field
    names included, for a PlatformError."""
    if hasattr(exc, "error_dict"):
        return " ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
    return " ".join(exc.messages)


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}
