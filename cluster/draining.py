"""uvicorn's HTTP protocol, taught to close keep-alive connections without racing clients.

On shutdown uvicorn closes every idle keep-alive connection at once. A client
that is writing its next request on one of them at that moment gets a reset
instead of a response — a failed request during what should be a zero-downtime
reload (wrk, ab -k and many HTTP clients do not retry). Here an idle connection
gets a short grace instead: a request arriving in it is served with
``Connection: close`` (the client then reconnects to a live worker), and only a
connection still idle after the grace is closed.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

IDLE_GRACE = 1.0  # seconds an idle keep-alive connection may still bring one last request


class DrainingHttpToolsProtocol(HttpToolsProtocol):
    _draining = False

    def shutdown(self) -> None:
        self._draining = True
        if self.cycle is None or self.cycle.response_complete:
            self.loop.call_later(IDLE_GRACE, self._close_if_idle)
        else:
            self.cycle.keep_alive = False  # the response in progress will say Connection: close

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def _close_if_idle(self) -> None:
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()
