"""OpenAI: prove the key is accepted without spending tokens (GET /models)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integrations.errors import DEFAULT_CONNECT_TIMEOUT_S, UpstreamError
from integrations.http import PooledClient, json_body, new_client, send

SYSTEM = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class ModelsResult:
    status_code: int
    model_count: int


class OpenAIClient(PooledClient):
    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str,
        timeout_s: float = 10.0,
        max_retry_after_s: float = 5.0,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        self.max_retry_after_s = max_retry_after_s
        self._http = new_client(
            base_url,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json", "User-Agent": "cutover-bot"},
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
        )

    def list_models(self) -> ModelsResult:
        action = "GET /models"
        # relative path: httpx joins it under the base URL's /v1
        try:
            response = send(
                self._http, "GET", "models", system=SYSTEM, action=action, max_retry_after_s=self.max_retry_after_s
            )
        except UpstreamError as exc:
            if exc.status_code != 429:
                raise
            # OpenAI answers 429 both for a rate limit and for an exhausted quota (which no wait fixes)
            exc.reason += "; if it persists, the account may be out of quota: check billing and usage limits"
            raise
        status = response.status_code
        if status == 200:
            body: Any = json_body(response, system=SYSTEM, action=action)
            models = body.get("data") if isinstance(body, dict) else None
            if not isinstance(models, list):
                raise UpstreamError(SYSTEM, action, "unexpected JSON: no `data` list of models", status)
            return ModelsResult(status, len(models))
        code = _error_code(response)
        if status == 401:
            reason = "key rejected (401): the OpenAI API key is invalid or revoked; update the stored key"
        elif status == 403:
            reason = (
                "forbidden (403): unsupported region, or a key restricted by scopes (it may still work for "
                "inference); check the key's permissions before concluding it is broken"
            )
        elif status >= 500:
            reason = "OpenAI server error; try again later"
        else:
            reason = "unexpected answer"
        raise UpstreamError(SYSTEM, action, reason, status_code=status, code=code)


def _error_code(response: Any) -> str | None:
    """OpenAI's machine code (`invalid_api_key`, ...); its message may echo a masked key, so it is left out."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None
