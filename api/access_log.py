"""Stream tokens stay out of the access log.

EventSource cannot set headers, so browsers pass their stream token as ``?token=``; uvicorn's
access log would write it, in full, with every connection. The filter masks the value in each
access-log line; the rest of the line is unchanged.
"""

from __future__ import annotations

import logging
import re

# The name percent-encoded (``%74oken``) still reaches Starlette as ``token``: mask that too.
TOKEN_PARAM = re.compile(r"([?&](?:%74|t)(?:%6f|o)(?:%6b|k)(?:%65|e)(?:%6e|n)=)[^&#\s]*", re.I)
MASK = r"\1***"


class MaskStreamTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                TOKEN_PARAM.sub(MASK, arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def mask_tokens_in_access_log() -> None:
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, MaskStreamTokens) for f in logger.filters):
        logger.addFilter(MaskStreamTokens())
