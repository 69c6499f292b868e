"""``tokenwire bench``: what the pipeline costs over streaming the LLM straight to the browser.

One machine, loopback. For each concurrency N, N sessions stream answers from the simulator at a
set token rate, first through a direct relay (``relay``: simulator -> Starlette/sse-starlette ->
SSE clients), then through the pipeline (POST /v1/chat -> Kafka -> worker -> session topic ->
edge -> SSE clients); clients run in their own processes (``clients``). Then N long answers are
cancelled mid-stream and each cancel POST is timed to the simulator's record of the upstream
close. Then a fresh edge holds idle SSE connections with heartbeats and its resident memory is
read per connection.

Modules: ``config`` (presets, flags), ``stack`` (the processes under test), ``scenarios``,
``sessions``/``cancels``/``idle``/``wire`` (the client side), ``records``/``stats``/
``cancel_figures`` (integrity and figures), ``report``/``chart`` (outputs), ``runner`` and
``cli``.
"""
