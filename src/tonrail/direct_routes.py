"""Routes that answer a well-formed request without FastAPI's per-request parameter solving.

FastAPI builds an endpoint's arguments on every request by walking its dependency graph
(each dependency, each header, the body: sub-dependencies, caches, error lists), then
parses the body it was handed once more. On `POST /v1/payouts` that machinery was about a
sixth of the process's CPU per payout (issue #18, docs/BENCHMARKS.md). A route made by
`direct_route` is an ordinary `APIRoute` (the same OpenAPI operation, the same docs, the
same middleware and error handlers) whose handler takes a short way for a request whose
JSON body is valid: the document the input boundary already parsed (`parsed_json`) is
validated against the route's body model, and `run(request, body)` builds the rest as the
endpoint's dependencies would and calls it. Everything else (an empty body, a body that
is not JSON, a body the model refuses) takes FastAPI's own handler, which answers exactly
as it always has: its dependencies (authentication first) run before it reports the body's
errors, as before. Nothing of the short way has run by then, so nothing runs twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from tonrail.input_boundary import parsed_json

DirectRun = Callable[[Request, Any], Awaitable[Response]]


def direct_route(model: type[BaseModel], run: DirectRun) -> type[APIRoute]:
    """An APIRoute class (`route_class_override`) whose requests with a body valid for
    `model` are answered by `run(request, body)`; the rest by FastAPI's handler."""

    class DirectRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            standard = super().get_route_handler()

            async def handler(request: Request) -> Response:
                document = parsed_json(request.scope)
                if document is not None:
                    try:
                        # As FastAPI validates a JSON body: the parsed document, Python mode.
                        body = model.model_validate(document[0])
                    except ValidationError:
                        pass  # FastAPI's handler reports it, after authentication
                    else:
                        return await run(request, body)
                return await standard(request)

            return handler

    DirectRoute.__name__ = DirectRoute.__qualname__ = f"DirectRoute[{model.__name__}]"
    return DirectRoute
