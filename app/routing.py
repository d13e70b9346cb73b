"""The request router `routing: prefix_aware` names: Ray Serve LLM's prefix-cache-aware router,
made safe for requests without text.

Ray 2.60's `PrefixCacheAffinityRouter` divides the matched prefix's length by the prompt text's
length: a request with no text (an image-only chat, a prompt of token ids) raises
ZeroDivisionError in the router and is never routed, so its client waits until it times out.
Here such a request has no text to match (None), which the router already treats as "route by
load" (power of two) and leaves out of its prefix tree.
"""

from __future__ import annotations

from ray.serve.llm.request_router import PrefixCacheAffinityRouter


class PrefixAwareRouter(PrefixCacheAffinityRouter):
    def _extract_text_from_request(self, pending_request) -> str | None:
        return super()._extract_text_from_request(pending_request) or None
