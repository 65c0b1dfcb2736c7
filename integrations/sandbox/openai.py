"""A simulated OpenAI API: GET /v1/models behind a Bearer key check."""

from __future__ import annotations

from typing import Self

from integrations.sandbox.http import FakeUpstream, Request, Response

MODELS = ("gpt-4.1", "gpt-4.1-mini", "gpt-4o-mini", "text-embedding-3-small")


class OpenAIFake(FakeUpstream):
    name = "openai"

    def start(self) -> Self:  # the base returns FakeUpstream; callers want the subclass
        super().start()
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __init__(self, api_key: str = "sk-sandbox", models: tuple[str, ...] | list[str] | None = None) -> None:
        super().__init__()
        self.api_key = api_key
        self._initial_models = MODELS if models is None else tuple(models)
        self.models = list(self._initial_models)  # what GET /v1/models lists; empty plays a key that sees no models
        self.route("GET", r"/v1/models", self._models)

    def reset(self) -> None:
        """Faults, recorded requests and the model list back to how it was built."""
        super().reset()
        self.models = list(self._initial_models)

    @property
    def base_url(self) -> str:
        """What the client's base_url is in the sandbox (the real one ends in /v1 too)."""
        return self.url + "/v1"

    def _models(self, request: Request) -> Response:
        auth = request.header("Authorization") or ""
        if auth != f"Bearer {self.api_key}":
            given = auth.removeprefix("Bearer ")
            masked = f"{given[:3]}***{given[-4:]}" if len(given) > 8 else "***"
            error = {
                "message": f"Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
            return Response(401, {"error": error})
        data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "system"} for m in self.models]
        return Response(200, {"object": "list", "data": data})
