# The gatewatch image: one image for `gatewatch worker` and every `gatewatch tail SOURCE`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    GATEWATCH_STATE_DIR=/var/lib/gatewatch
WORKDIR /app
# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml setup.py README.md ./
COPY gatewatch gatewatch
COPY models models
COPY streams streams
COPY connectors connectors
# gcc compiles the hot path with mypyc (setup.py) and leaves in the same layer; without it the
# install would go on in plain Python, slower.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install . \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 gatewatch \
    && mkdir -p /var/lib/gatewatch && chown gatewatch /var/lib/gatewatch
USER gatewatch
VOLUME ["/var/lib/gatewatch"]
EXPOSE 6066 4318
ENTRYPOINT ["gatewatch"]
CMD ["worker"]
