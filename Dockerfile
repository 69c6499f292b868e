# One image for every tokenwire process: the command picks the part.
#   docker run tokenwire worker | edge --host 0.0.0.0 | sim --host 0.0.0.0 | topics
# Configuration is the environment (TOKENWIRE_*, see tokenwire/settings.py); docker-compose.yml
# wires the services together.
# The chat page's pinned browser modules (marked, DOMPurify), from api/static's lockfile.
FROM node:20-slim AS page-modules
WORKDIR /page
COPY api/static/package.json api/static/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY tokenwire ./tokenwire
COPY agents ./agents
COPY api ./api
COPY schemas ./schemas
# The edge serves tokenwire.js from clients/js and the page's modules from api/static: both are
# read from the source tree, so the package is installed in place.
COPY clients ./clients
COPY --from=page-modules /page/node_modules ./api/static/node_modules
RUN pip install -e . \
    && useradd --create-home --uid 10001 tokenwire

USER tokenwire
# Faust keeps its table metadata under the working directory: the user's home is writable.
WORKDIR /home/tokenwire
# 6066 worker /metrics and /healthz, 8000 edge, 18000 simulator.
EXPOSE 6066 8000 18000
ENTRYPOINT ["tokenwire"]
CMD ["worker"]
