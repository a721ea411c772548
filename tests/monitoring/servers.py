"""Real local servers the channels talk to: SMTP (aiosmtpd), Slack and PagerDuty (uvicorn).

The HTTP servers check the documented payload shapes and answer as the services do; a test
can make them fail the next N requests with a given status.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

PD_ACTIONS = {"trigger", "acknowledge", "resolve"}
PD_SEVERITIES = {"critical", "error", "warning", "info"}


@dataclass
class Recorder:
    received: list[Any] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)  # statuses to answer before working
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def note(self, item: Any) -> None:
        self.received.append(item)
        self.arrived.set()


# ------------------------------------------------------------------ SMTP
class _SmtpHandler:
    def __init__(self, recorder: Recorder, loop: asyncio.AbstractEventLoop):
        self.recorder = recorder
        self.loop = loop

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.recorder.fail_next:
            code = self.recorder.fail_next.pop(0)
            return f"{code} try again later" if code < 500 else f"{code} mailbox unavailable"
        msg = message_from_bytes(envelope.content)
        item = {"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "message": msg}
        self.loop.call_soon_threadsafe(self.recorder.note, item)
        return "250 Message accepted for delivery"


@contextlib.asynccontextmanager
async def smtp_server() -> AsyncIterator[tuple[int, Recorder]]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(
        _SmtpHandler(recorder, asyncio.get_running_loop()), hostname="127.0.0.1", port=port
    )
    controller.start()
    try:
        yield port, recorder
    finally:
        controller.stop()


def mail_of(item: dict[str, Any]) -> Message:
    msg: Message = item["message"]
    return msg


# ------------------------------------------------------------------ Slack
def _slack_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "invalid_payload"
    if "text" not in body and "blocks" not in body:
        return "no_text"
    if "text" in body and not isinstance(body["text"], str):
        return "invalid_payload"
    blocks = body.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks"
    for block in blocks:
        if not isinstance(block, dict) or block.get("type") not in {
            "section",
            "context",
            "header",
            "divider",
        }:
            return "invalid_blocks"
        if block["type"] == "section":
            text = block.get("text")
            fields = block.get("fields")
            if text is None and fields is None:
                return "invalid_blocks"
            if text is not None and (
                text.get("type") not in ("mrkdwn", "plain_text") or len(text.get("text", "")) > 3000
            ):
                return "invalid_blocks"
            if fields is not None and (
                len(fields) > 10 or any(len(f["text"]) > 2000 for f in fields)
            ):
                return "invalid_blocks"
    return None


def slack_app(recorder: Recorder) -> Starlette:
    async def hook(request: Request) -> Response:
        if recorder.fail_next:
            status = recorder.fail_next.pop(0)
            return PlainTextResponse("rollup_error" if status >= 500 else "invalid_payload", status)
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            recorder.rejected.append("content-type")
            return PlainTextResponse("invalid_payload", 400)
        try:
            body = await request.json()
        except ValueError:
            recorder.rejected.append("json")
            return PlainTextResponse("invalid_payload", 400)
        problem = _slack_problem(body)
        if problem:
            recorder.rejected.append(problem)
            return PlainTextResponse(problem, 400)
        recorder.note(body)
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/services/T000/B000/XXXX", hook, methods=["POST"])])


# ------------------------------------------------------------------ PagerDuty
def _pd_errors(event: Any) -> list[str]:
    if not isinstance(event, dict):
        return ["Event object is invalid"]
    errors = []
    if not isinstance(event.get("routing_key"), str) or len(event["routing_key"]) != 32:
        errors.append("'routing_key' must be a 32 character integration key")
    if event.get("event_action") not in PD_ACTIONS:
        errors.append("'event_action' is invalid")
    dedup = event.get("dedup_key")
    if event.get("event_action") in ("acknowledge", "resolve") and not dedup:
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if event.get("event_action") == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is missing"]
        for name in ("summary", "source", "severity"):
            if not isinstance(payload.get(name), str) or not payload[name]:
                errors.append(f"'payload.{name}' is missing or invalid")
        if len(payload.get("summary", "")) > 1024:
            errors.append("'payload.summary' is longer than 1024")
        if payload.get("severity") not in PD_SEVERITIES:
            errors.append("'payload.severity' is invalid")
        if "timestamp" in payload:
            try:
                datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))
            except (ValueError, AttributeError):
                errors.append("'payload.timestamp' is not ISO 8601")
        for name in ("component", "group", "class"):
            if name in payload and not isinstance(payload[name], str):
                errors.append(f"'payload.{name}' must be a string")
        if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
            errors.append("'payload.custom_details' must be an object")
    return errors


def pagerduty_app(recorder: Recorder) -> Starlette:
    async def enqueue(request: Request) -> Response:
        if recorder.fail_next:
            status = recorder.fail_next.pop(0)
            return JSONResponse({"status": "error", "message": "try later"}, status)
        try:
            event = await request.json()
        except ValueError:
            return JSONResponse(
                {"status": "invalid event", "message": "Event object is invalid"}, 400
            )
        errors = _pd_errors(event)
        if errors:
            recorder.rejected.extend(errors)
            return JSONResponse(
                {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
                400,
            )
        recorder.note(event)
        return JSONResponse(
            {"status": "success", "message": "Event processed", "dedup_key": event["dedup_key"]},
            202,
        )

    return Starlette(routes=[Route("/v2/enqueue", enqueue, methods=["POST"])])


# ------------------------------------------------------------------ serving
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def http_server(app: Starlette) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(1000):  # uvicorn has no "started" event to wait on
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
