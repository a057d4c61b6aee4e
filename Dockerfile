# remediator daemon: slim, non-root, CPU-only torch.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    GIT_TERMINAL_PROMPT=0

RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/remediator --create-home remediator

WORKDIR /opt/remediator
COPY pyproject.toml README.md ./
COPY agents ./agents
COPY tools ./tools
COPY memory ./memory
COPY playbooks ./playbooks
COPY config ./config
# Pass the index that serves CPU builds of torch (e.g. --build-arg TORCH_INDEX_URL=...), so the
# torch==2.13.0 pin does not pull a multi-GB CUDA build; without it pip's default index is used.
ARG TORCH_INDEX_URL=""
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0; fi \
 && pip install ".[postgres]"

USER remediator
ENV XDG_STATE_HOME=/var/lib/remediator
VOLUME ["/var/lib/remediator"]
HEALTHCHECK --interval=60s --timeout=20s --start-period=30s --retries=3 \
  CMD remediator audit verify --chain-only --config /etc/remediator/remediator.yaml >/dev/null || exit 1
ENTRYPOINT ["remediator"]
CMD ["daemon", "--config", "/etc/remediator/remediator.yaml"]
