# API image (no torch): the metadata service, plus the Celery client ("queue" extra) so
# that with LOREG_REDIS_URL set it sends jobs to the workers itself.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY registry ./registry
COPY workers ./workers
COPY clients ./clients
COPY migrations ./migrations
RUN pip install --no-cache-dir -e ".[server,queue]"
EXPOSE 8080
CMD ["loreg", "serve", "--host", "0.0.0.0", "--port", "8080", "--data-dir", "/data"]
