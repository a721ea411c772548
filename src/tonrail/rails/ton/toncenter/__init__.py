"""An async toncenter v2/v3 client with rate limiting, backoff and endpoint failover.

Behaviour (docs/TON-RAIL.md, "Networks and toncenter"):
- The API key goes in `X-API-Key`; it never appears in logs, errors or reprs.
- A client-side limiter spaces requests to `rps` per second (keyless toncenter allows ~1).
- HTTP 429: wait `Retry-After` (seconds or HTTP date) when given, else exponential backoff
  with jitter, then try again (on the next endpoint when there are several).
- Connect errors, timeouts, HTTP 5xx gateway errors and garbage answers: fail over to the
  next endpoint at once; once every endpoint failed in a row, back off between tries.
  At most `max_attempts` tries per call, across endpoints.
- `{"ok": false}` with a node error (HTTP 500 from the node, 4xx for bad input) is an answer,
  not a fault: it is raised at once and not retried (kind `rejected` for sent messages).
- Every failed try is reported to `on_error(endpoint, kind)` (monitoring hooks it).

Results are parsed per toncenter's OpenAPI descriptions into dataclasses; a response that
does not fit raises ToncenterError(kind="bad_response").

The package keeps the parts apart: `models` (the answers as dataclasses), `parsers` (JSON to
models), `errors` (ToncenterError and its kinds), `rate_limit`, `retry` (backoff, failover,
which failures are outages) and `client` (transport and one method per call).
"""

from tonrail.rails.ton.toncenter.client import ToncenterClient
from tonrail.rails.ton.toncenter.errors import ToncenterError
from tonrail.rails.ton.toncenter.models import SentMessage, V3Message, V3Transaction
from tonrail.rails.ton.toncenter.retry import parse_retry_after

# What the rest of tonrail uses; the other answers are in `toncenter.models`.
__all__ = [
    "SentMessage",
    "ToncenterClient",
    "ToncenterError",
    "V3Message",
    "V3Transaction",
    "parse_retry_after",
]
