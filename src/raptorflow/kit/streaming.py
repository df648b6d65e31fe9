"""Streamed responses that release what their generators hold as soon as the response ends."""

from __future__ import annotations

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse that closes its body generator when the response ends: finished, failed,
    or cut short by a client that left.

    Starlette cancels the stream of a client that left and leaves the generator suspended; whatever it
    holds (a database session, so a pooled connection inside a transaction) would stay held until the
    collector finalizes it. Generators that read other generators close them in turn (`aclosing`).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):  # what it holds is bounded by its own cleanup
                    await aclose()
