"""Talking to the primary: the reads of its log API (`/api/v1/log/...`), each answer checked for
shape and size before the twin uses it; every failure is a :class:`TwinError` that says why."""

from __future__ import annotations

import base64
import binascii
import contextlib
from typing import Any

import httpx

from cityshare.tlog import merkle
from cityshare.twin.replica import TwinError

#: The primary serves at most this many entries per request.
PAGE_SIZE = 1000
#: Largest checkpoint or proof answer accepted (a checkpoint with 100 signatures is ~12 KiB).
MAX_SMALL_ANSWER = 64 * 1024


def error_message(response: httpx.Response) -> str:
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        error = response.json()["error"]
        return f"{error['code']}: {error['message']}"
    return response.text[:200]


def get(client: httpx.Client, path: str, **kwargs: Any) -> httpx.Response:
    try:
        response = client.get(path, **kwargs)
    except httpx.HTTPError as exc:
        raise TwinError(f"cannot reach the primary at {client.base_url}: {exc}") from exc
    if response.status_code != 200:
        raise TwinError(f"GET {path} answered {response.status_code} ({error_message(response)})")
    return response


def text(response: httpx.Response, what: str) -> str:
    if len(response.content) > MAX_SMALL_ANSWER:
        raise TwinError(f"the primary's {what} is implausibly large ({len(response.content)} B)")
    try:
        return response.content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TwinError(f"the primary's {what} is not UTF-8 text") from exc


def json_answer(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise TwinError(f"the primary's {what} is not JSON: {response.text[:80]!r}") from exc


def proof_hashes(body: Any, what: str) -> list[bytes]:
    items = body.get("proof") if isinstance(body, dict) else None
    if not isinstance(items, list) or not all(isinstance(h, str) for h in items):
        raise TwinError(f"the primary's {what} is not {{'proof': [base64, ...]}}")
    try:
        hashes = [base64.b64decode(h, validate=True) for h in items]
    except binascii.Error as exc:
        raise TwinError(f"the primary's {what} holds something that is not base64") from exc
    if any(len(h) != merkle.HASH_SIZE for h in hashes) or len(hashes) > 128:
        raise TwinError(f"the primary's {what} is not a list of 32-byte hashes")
    return hashes


def fetch_entries(client: httpx.Client, start: int, end: int, token: str | None) -> list[bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = client.get(
            "/api/v1/log/entries", params={"start": start, "end": end}, headers=headers
        )
    except httpx.HTTPError as exc:
        raise TwinError(f"cannot reach the primary at {client.base_url}: {exc}") from exc
    if response.status_code in (401, 403):
        raise TwinError(
            f"the primary refused to serve entries ({response.status_code}, "
            f"{error_message(response)}): pass --token or set CITYSHARE_OPERATOR_TOKEN"
        )
    if response.status_code != 200:
        raise TwinError(
            f"GET entries [{start}, {end}) answered {response.status_code} "
            f"({error_message(response)})"
        )
    body = json_answer(response, f"entries [{start}, {end})")
    items = body.get("entries") if isinstance(body, dict) else None
    if (
        not isinstance(body, dict)
        or body.get("start") != start
        or not isinstance(items, list)
        or not 0 < len(items) <= end - start
        or not all(isinstance(item, str) for item in items)
    ):
        raise TwinError(
            f"the primary's answer for entries [{start}, {end}) is not "
            f'{{"start": {start}, "entries": [1 to {end - start} base64 strings]}}'
        )
    try:
        return [base64.b64decode(item, validate=True) for item in items]
    except binascii.Error as exc:
        raise TwinError(f"an entry in [{start}, {end}) is not base64") from exc
