# API image (no torch): the metadata service only.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY registry ./registry
COPY workers ./workers
COPY clients ./clients
COPY migrations ./migrations
RUN pip install --no-cache-dir -e ".[server]"
EXPOSE 8080
CMD ["loreg", "serve", "--host", "0.0.0.0", "--port", "8080", "--data-dir", "/data"]
