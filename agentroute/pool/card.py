"""Model price cards."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

BackendName = Literal["local", "litellm", "openai", "replay"]
Tier = Literal["small", "medium", "large"]


class ModelCard(BaseModel):
    """One model endpoint and what it costs.

    Prices are USD per 1M tokens. ``model`` is the backend's own name for it (a LiteLLM string, a
    served model name, a GGUF file); it defaults to ``id``. A card with ``input_price`` and
    ``output_price`` left unset is priced from LiteLLM's cost table by the litellm backend, and is
    refused by every other backend (a self-hosted model is never priced $0 by accident).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    backend: BackendName = "litellm"
    model: str = ""
    input_price: float | None = Field(default=None, ge=0)
    output_price: float | None = Field(default=None, ge=0)
    price_per_second: float | None = Field(default=None, ge=0)
    context_window: int = Field(default=8192, gt=0)
    description: str = ""
    tier: Tier = "small"
    latency_ms: float = Field(default=1000.0, ge=0)
    strategies: tuple[str, ...] = ("direct",)
    base_url: str | None = None
    api_key_env: str | None = None
    max_tokens: int = Field(default=256, gt=0)
    timeout_s: float = Field(default=60.0, gt=0)

    @field_validator("strategies", mode="before")
    @classmethod
    def _strategies(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @property
    def backend_model(self) -> str:
        return self.model or self.id

    @property
    def priced(self) -> bool:
        return self.input_price is not None and self.output_price is not None

    def usd(self, tokens_in: float, tokens_out: float) -> float:
        """Cost of a call from the card's prices (0 for an unpriced card: check ``priced``)."""
        return ((self.input_price or 0.0) * tokens_in + (self.output_price or 0.0) * tokens_out) / 1e6

    def descriptor(self, strategy: str = "direct") -> str:
        """Text describing the agent (used by routers that embed agents)."""
        price = (
            f"${self.input_price:g}/${self.output_price:g} per 1M tokens" if self.priced else "provider price"
        )
        return f"{self.id} ({self.tier} model, {price}, strategy {strategy}). {self.description}".strip()
