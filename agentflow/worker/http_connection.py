"""The HTTP shim transport: the same session as the gRPC stream, as JSON batches.

Sends are POSTs of `ShimBatch` (one at a time, so batches stay in order); receives are
long polls that return whatever the master queued. See agentflow/master/worker_http.py
for the endpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp
from google.protobuf import json_format
from google.protobuf.message import Message

from agentflow._proto import worker_pb2 as wpb
from agentflow.worker.transport import ConnectError, SessionClosed

MAX_BATCH_BYTES = 4 * 1024 * 1024  # per POST; a bigger batch goes in several


def http_base(url: str) -> str:
    url = url.rstrip("/")
    return url if url.startswith(("http://", "https://")) else f"http://{url}"


class HttpConnection:
    transport = "http"

    def __init__(
        self, target: str, connect_timeout: float = 3.0, poll_timeout: float = 10.0
    ) -> None:
        self.target = http_base(target)
        self.connect_timeout = connect_timeout
        self.poll_timeout = poll_timeout
        self._http: aiohttp.ClientSession | None = None
        self._session_id = ""
        self._early: list[wpb.MasterMessage] = []  # came with the connect answer
        self._closed_reason = ""

    async def open(self, hello: wpb.WorkerMessage) -> wpb.MasterMessage:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(sock_connect=self.connect_timeout)
        )
        try:
            answer = wpb.ShimConnectResponse()
            await self._post("/api/v1/workers/connect", hello, answer, timeout=30.0)
        except (aiohttp.ClientError, TimeoutError) as exc:
            await self.close()
            raise ConnectError(f"HTTP {self.target}: {exc or type(exc).__name__}") from exc
        except SessionClosed as exc:
            await self.close()
            raise ConnectError(f"HTTP {self.target}: {exc}") from exc
        if not answer.messages:
            await self.close()
            raise ConnectError(f"HTTP {self.target}: empty answer to connect")
        self._session_id = answer.session_id
        self._early = list(answer.messages[1:])
        return answer.messages[0]

    async def send(self, messages: Sequence[wpb.WorkerMessage]) -> None:
        for chunk in _chunks(messages):
            try:
                await self._post(
                    f"/api/v1/workers/{self._session_id}/messages",
                    wpb.ShimBatch(messages=chunk),
                    None,
                    timeout=60.0,
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise SessionClosed(f"HTTP send failed: {exc or type(exc).__name__}") from exc

    async def receive(self) -> Sequence[wpb.MasterMessage]:
        if self._early:
            early, self._early = self._early, []
            return early
        if self._closed_reason:
            raise SessionClosed(self._closed_reason)
        http = self._require()
        url = f"{self.target}/api/v1/workers/{self._session_id}/poll"
        try:
            async with http.get(
                url,
                params={"timeout": str(self.poll_timeout)},
                timeout=aiohttp.ClientTimeout(total=self.poll_timeout + 15.0),
            ) as response:
                body = await _body(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SessionClosed(f"HTTP poll failed: {exc or type(exc).__name__}") from exc
        answer = json_format.Parse(body, wpb.ShimPollResponse(), ignore_unknown_fields=True)
        if answer.closed:
            # Hand out what came with the close first; the next receive raises.
            self._closed_reason = answer.reason or "the master ended the session"
            if not answer.messages:
                raise SessionClosed(self._closed_reason)
        return list(answer.messages)

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is None:
            return
        if self._session_id and not self._closed_reason:
            try:
                async with http.delete(
                    f"{self.target}/api/v1/workers/{self._session_id}",
                    timeout=aiohttp.ClientTimeout(total=2.0),
                ):
                    pass
            except (aiohttp.ClientError, TimeoutError):
                pass  # the master ends idle sessions on its own
        await http.close()

    def _require(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise SessionClosed("not connected")
        return self._http

    async def _post(
        self, path: str, message: Message, answer: Message | None, timeout: float
    ) -> None:
        """POST `message` as JSON; parse the reply into `answer` (when given)."""
        http = self._require()
        data = json_format.MessageToJson(message, indent=None)
        async with http.post(
            f"{self.target}{path}",
            data=data,
            headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=self.connect_timeout),
        ) as response:
            body = await _body(response)
        if answer is not None:
            json_format.Parse(body, answer, ignore_unknown_fields=True)


async def _body(response: aiohttp.ClientResponse) -> bytes:
    body = await response.read()
    if response.status in (404, 410):
        raise SessionClosed(
            f"the master does not know this session: {body.decode(errors='replace')}"
        )
    if response.status >= 400:
        text = body.decode(errors="replace")[:300]
        if response.status >= 500:
            raise SessionClosed(f"HTTP {response.status}: {text}")
        raise SessionClosed(f"HTTP {response.status} (a bug?): {text}")
    return body


def _chunks(messages: Sequence[wpb.WorkerMessage]) -> list[list[wpb.WorkerMessage]]:
    chunks: list[list[wpb.WorkerMessage]] = [[]]
    size = 0
    for message in messages:
        weight = message.ByteSize() * 2  # JSON is roughly twice the binary size
        if chunks[-1] and size + weight > MAX_BATCH_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(message)
        size += weight
    return [c for c in chunks if c]
