# The sequencer app image: the CLI with PostgreSQL support. docker-compose.yml runs it as
# the scheduler, the inbox watcher and the send workers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY sequencer ./sequencer
COPY workers ./workers
RUN pip install ".[postgres]" \
    && useradd --system --create-home --home-dir /home/sequencer sequencer \
    && mkdir /data && chown sequencer:sequencer /data

USER sequencer
WORKDIR /data
ENV SEQUENCER_CONFIG=/data/sequencer.yaml
CMD ["sequencer", "run"]
