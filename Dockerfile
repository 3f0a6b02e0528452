# The orchestrace CLI, for the compose `demo` profile (offline: the scripted model).
#   docker compose --profile demo up
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY runtime ./runtime
COPY telemetry ./telemetry
RUN pip install ".[nats]" && useradd --create-home orchestrace

USER orchestrace
WORKDIR /home/orchestrace
ENTRYPOINT ["orchestrace"]
CMD ["run", "spawn", "--offline"]
