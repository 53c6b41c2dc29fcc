# One image for every Jenga process; compose.yaml and the Procfile pick the command.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY common ./common
COPY worker ./worker
COPY api ./api
COPY alembic.ini ./
COPY alembic ./alembic
COPY Procfile ./
RUN pip install . && useradd --create-home --uid 10001 jenga

USER jenga
EXPOSE 8000 5555
CMD ["python", "-m", "api"]
