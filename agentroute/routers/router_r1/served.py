"""A Router-R1 policy served behind ``--policy-url`` (``vllm serve``), as a served task meets it.

:class:`ServedPolicy` is :class:`~agentroute.training.lm_policy.OpenAIPolicy` with two rules a task
needs: a completion waits no longer than the time its task has left (a server that hangs ended a
``--budget-seconds 3`` task after the 120 s socket timeout), and a server that fails — refuses,
hangs, closes mid-reply, answers something that is not a completion — is one
:class:`PolicyServerError` line naming the server (was: the traceback of ``urllib``, ``json`` or
``http.client``). The wait is :class:`OpenAIPolicy`'s deadline for the whole request (a server that
trickles its reply is cut there too).
"""

from __future__ import annotations

import http.client
import json
import urllib.error
from collections.abc import Sequence
from typing import Any

from agentroute.errors import BackendError, ConfigurationError
from agentroute.training.lm_policy import OpenAIPolicy, PolicyOutput, one_line


class PolicyServerError(BackendError):
    """The policy server of ``--policy-url`` failed a completion; ``timed_out``: it did not answer in time."""

    def __init__(self, url: str, message: str, *, timed_out: bool = False):
        super().__init__(f"policy server {url}", message, retryable=False)
        self.timed_out = timed_out


class ServedPolicy(OpenAIPolicy):
    """An :class:`OpenAIPolicy` whose ``generate`` (given the task's time left as ``timeout_s``) fails
    with a :class:`PolicyServerError`."""

    def __init__(
        self,
        base_url: str,
        tokenizer: Any,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
    ):
        """Asks the server for its model (``GET /models``) unless ``model`` is given: a server that
        does not answer it is a :class:`ConfigurationError` naming the server."""
        try:
            super().__init__(base_url, tokenizer, model=model, api_key=api_key, timeout_s=timeout_s)
        except ConfigurationError:
            raise
        except urllib.error.HTTPError as exc:
            raise ConfigurationError(
                f"policy server {base_url}: GET /models answered HTTP {exc.code} {exc.reason}{said(exc)}"
            ) from None
        except (OSError, http.client.HTTPException) as exc:  # URLError: refused, unknown host; a timeout
            reason = getattr(exc, "reason", exc)
            raise ConfigurationError(
                f"policy server {base_url} does not answer ({reason}); start it with `vllm serve DIR "
                "--served-model-name router-r1` (docs/router_r1.md) or leave out --policy-url"
            ) from None
        except (
            ValueError,
            KeyError,
            TypeError,
            IndexError,
        ) as exc:  # not JSON; no data list; a model without id
            raise ConfigurationError(
                f"policy server {base_url}: GET /models answered no model list ({type(exc).__name__}: {exc})"[
                    :300
                ]
            ) from None

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        top_p: float = 1.0,
        timeout_s: float | None = None,
    ) -> list[PolicyOutput]:
        """:meth:`OpenAIPolicy.generate`; a server's failure is a :class:`PolicyServerError`."""
        try:
            out = super().generate(
                prompts,
                max_tokens=max_tokens,
                stop=stop,
                temperature=temperature,
                top_p=top_p,
                timeout_s=timeout_s,
            )
        except urllib.error.HTTPError as exc:
            raise PolicyServerError(
                self.base_url, f"POST /completions answered HTTP {exc.code} {exc.reason}{said(exc)}"
            ) from None
        except (TimeoutError, urllib.error.URLError) as exc:
            reason = getattr(exc, "reason", exc)
            timed_out = isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError)
            why = (
                f"no completion within {self.wait_s(timeout_s):.3g} s"
                if timed_out
                else f"unreachable ({reason})"
            )
            raise PolicyServerError(self.base_url, why, timed_out=timed_out) from None
        except (
            OSError,
            http.client.HTTPException,
        ) as exc:  # closed mid-reply: IncompleteRead, RemoteDisconnected
            raise PolicyServerError(
                self.base_url, f"the reply was cut short ({type(exc).__name__})"
            ) from None
        except (
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
        ) as exc:  # not JSON; no choices; a choice without text
            raise PolicyServerError(
                self.base_url, f"the reply is not a completion ({type(exc).__name__}: {exc})"[:300]
            ) from None
        if len(out) != len(prompts):
            raise PolicyServerError(self.base_url, f"{len(out)} completions for {len(prompts)} prompts")
        return out


def said(error: urllib.error.HTTPError) -> str:
    """``": MESSAGE"``, the message of an error reply's JSON (vLLM's ``{"message": …}``, OpenAI's
    ``{"error": {"message": …}}``: a prompt over the served model's context names its length), or ``""``."""
    try:
        body = json.loads(error.read() or b"null")
    except (OSError, ValueError, http.client.HTTPException):
        return ""
    if not isinstance(body, dict):
        return ""
    nested = body.get("error")
    message = nested.get("message") if isinstance(nested, dict) else body.get("message")
    return f": {one_line(message)[:300]}" if isinstance(message, str) and message.strip() else ""
