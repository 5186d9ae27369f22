# syntax=docker/dockerfile:1
#
# semcache: OpenAI-compatible caching reverse proxy.
#
#   docker build -t semcache .
#   docker run --rm -p 8080:8080 --env-file config/semcache.env semcache
#   docker run --rm semcache serve --help
#
# Two stages: the builder installs the package and its dependencies into a virtualenv at
# /opt/venv; the runtime stage copies only that virtualenv onto a fresh slim base, so no
# build tools, pip caches or sources end up in the final image.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv

WORKDIR /src
# Only what the build needs (see .dockerignore): metadata, readme and the package.
COPY pyproject.toml README.md ./
COPY proxy ./proxy

# Build the wheel and install it with its dependencies into the virtualenv, then drop the
# installers, which the runtime does not need.
RUN /opt/venv/bin/pip install --no-cache-dir . \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && /opt/venv/bin/semcache --version

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="semcache" \
      org.opencontainers.image.description="OpenAI-compatible caching reverse proxy for LLM APIs" \
      org.opencontainers.image.licenses="MIT"

RUN groupadd --system --gid 10001 semcache \
    && useradd --system --uid 10001 --gid semcache --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin semcache

COPY --from=builder /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SEMCACHE_HOST=0.0.0.0 \
    SEMCACHE_PORT=8080

USER 10001:10001

EXPOSE 8080

# No curl in the slim image: probe /healthz with the standard library. /healthz answers 200
# even when the store is unreachable (the proxy then runs without a cache), so a failing
# check means the server itself is down. urlopen raises on errors and non-2xx answers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SEMCACHE_PORT', '8080') + '/healthz', timeout=4)"]

ENTRYPOINT ["semcache"]
CMD ["serve"]
