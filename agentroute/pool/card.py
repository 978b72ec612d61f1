"""Model price cards."""

from __future__ import annotations

import functools
import re
import reprlib
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from agentroute.budget import check_amount
from agentroute.errors import ConfigurationError
from agentroute.strategies import get_strategy

#: The backends agentroute ships; a pool may add its own under other names (``ModelPool(backends=...)``).
BUILTIN_BACKENDS = ("local", "litellm", "openai", "replay")
Tier = Literal["small", "medium", "large"]
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URL = re.compile(r"https?://[^/\s]+", re.IGNORECASE)


class CardError(ConfigurationError):
    """A model card is invalid: ``field`` names the field (``"?"`` when none does), ``model`` the card.

    The YAML loader turns ``field`` into the line of the pool file that holds it.
    """

    def __init__(self, model: str, field: str, problem: str):
        self.model, self.field, self.problem = model, field, problem
        shown = field if len(field) <= 60 else field[:59] + "…"
        super().__init__(f"model {model} field {shown!r}: {problem}")


class ModelCard(BaseModel):
    """One model endpoint and what it costs.

    Prices are USD per 1M tokens. ``model`` is the backend's own name for it (a LiteLLM string, a
    served model name, a GGUF file); it defaults to ``id``. A card with ``input_price`` and
    ``output_price`` left unset is priced from LiteLLM's cost table by the litellm backend, and is
    refused by every other backend (a self-hosted model is never priced $0 by accident).

    Every number is checked like a budget amount: finite, non-negative, neither a boolean nor a
    string (``int``, ``float``, numpy scalars and ``Decimal`` are accepted). ``max_tokens`` may not
    exceed ``context_window`` (it is the output limit of a ``cot`` call; ``direct`` asks for half
    of it, ``sc@K`` for as much per sample); each strategy must parse (``direct``, ``cot``, ``sc@K``) and appear
    once. ``timeout_s`` bounds the silences of a reply that shows its progress (the wait for its
    first chunk or token, each gap between two: a reply still arriving runs on to ``max_tokens`` or
    the task's ``seconds`` deadline) — the streamed replies of the ``openai`` and ``litellm``
    backends, the ``local`` backend's generation for a card priced by tokens, a backend of your own
    built on :class:`~agentroute.pool.backends.streaming.StreamingBackend` — and the whole call of
    one that cannot (a plain request, a ``local`` card priced per second, a backend of your own
    that only implements ``complete``) (docs/budgets.md, "Time limits"). A bad card raises
    :class:`CardError` (a :class:`~agentroute.errors.ConfigurationError`) naming the field.

    >>> ModelCard(id="m", input_price=float("inf"), output_price=1)
    Traceback (most recent call last):
    ...
    agentroute.pool.card.CardError: model 'm' field 'input_price': input_price must be finite and at most 1e+15 (got inf)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    backend: str = Field(default="litellm", pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    model: str = ""
    input_price: float | None = None
    output_price: float | None = None
    price_per_second: float | None = None
    context_window: int = 8192
    description: str = ""
    tier: Tier = "small"
    latency_ms: float = 1000.0
    strategies: tuple[str, ...] = ("direct",)
    base_url: str | None = None
    api_key_env: str | None = None
    max_tokens: int = 256
    timeout_s: float = 60.0
    #: The most prompt tokens one image (an ``image_url`` content part) bills on this model; ``None``:
    #: unknown, and a request with an image is refused at its reservation (docs/budgets.md).
    image_tokens: int | None = None

    def __init__(self, **data: Any):
        try:
            super().__init__(**data)
        except ValidationError as exc:
            model_id = data.get("id")
            name = short_repr(model_id) if isinstance(model_id, str) else "?"
            err = exc.errors(include_url=False)[0]
            field = str(err["loc"][0]) if err["loc"] else str(err.get("ctx", {}).get("field", "?"))
            problem = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden" and "key" in field.lower():  # never echo what may be a secret
                problem = (
                    "is not a card field; put the key in an environment variable and name that "
                    "variable with api_key_env (e.g. api_key_env: MY_API_KEY)"
                )
            elif err["type"] not in ("value_error", "card_field"):  # pydantic's own message: show the input
                problem += f" (got {short_repr(err.get('input'))})"
            raise CardError(name, field, problem) from None

    @field_validator("input_price", "output_price", "price_per_second", "latency_ms", mode="before")
    @classmethod
    def _amount(cls, value: object, info: Any) -> object:
        return None if value is None else check_amount(info.field_name, value)

    @field_validator("timeout_s", mode="before")
    @classmethod
    def _positive(cls, value: object, info: Any) -> object:
        return check_amount(info.field_name, value, allow_zero=False)

    @field_validator("context_window", "max_tokens", mode="before")
    @classmethod
    def _count(cls, value: object, info: Any) -> object:
        return int(check_amount(info.field_name, value, integer=True, allow_zero=False))

    @field_validator("image_tokens", mode="before")
    @classmethod
    def _optional_count(cls, value: object, info: Any) -> object:
        if value is None:
            return None
        return int(check_amount(info.field_name, value, integer=True, allow_zero=False))

    @field_validator("base_url", mode="before")
    @classmethod
    def _url(cls, value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, str) or not _URL.match(value.strip()):
            raise ValueError(
                f"expected an http:// or https:// URL such as http://127.0.0.1:8000/v1 (got {short_repr(value)})"
            )
        return value.strip()

    @field_validator("api_key_env", mode="before")
    @classmethod
    def _env_name(cls, value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
            # the value is not shown: a key pasted here would end up in logs
            bare = value.strip().removeprefix("$").strip("{}") if isinstance(value, str) else ""
            hint = (
                f"; write {bare}, not {value}"
                if _ENV_NAME.fullmatch(bare) and isinstance(value, str) and value.lstrip().startswith("$")
                else ""
            )
            raise ValueError(
                "expected the name of an environment variable holding the key (letters, digits and "
                f"underscores, e.g. MY_API_KEY), not the key itself{hint}"
            )
        return value

    @field_validator("strategies", mode="before")
    @classmethod
    def _strategies(cls, value: object) -> object:
        names = (value,) if isinstance(value, str) else value
        if not isinstance(names, list | tuple) or not names:
            raise ValueError(f"expected a non-empty list of strategy names (got {short_repr(names)})")
        seen: set[str] = set()
        for name in names:
            get_strategy(name)  # a ConfigurationError is a ValueError: pydantic reports it
            if name in seen:
                raise ValueError(f"strategy {name!r} is listed twice")
            seen.add(name)
        return tuple(names)

    @model_validator(mode="after")
    def _fits_context(self) -> Self:
        if self.max_tokens > self.context_window:
            raise PydanticCustomError(
                "card_field",
                "max_tokens ({max_tokens}) is above context_window ({context_window}): no call could "
                "use it; lower max_tokens or raise context_window",
                {"field": "max_tokens", "max_tokens": self.max_tokens, "context_window": self.context_window},
            )
        return self

    @functools.cached_property
    def backend_model(
        self,
    ) -> str:  # read for every candidate of every step: worked out once per (frozen) card
        return self.model or self.id

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy.__dict__.pop("backend_model", None)  # the original's no longer holds
        return copy

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


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 2, 60, 60, 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters without walking all of a huge or cyclic value.

    >>> short_repr(list(range(1000)))
    '[0, 1, 2, 3, ...]'
    """
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
