# One image for the gateway and every consumer worker (docker-compose.yml picks the command).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY requirements.lock pyproject.toml ./
# The runtime dependencies of pyproject.toml with every transitive one pinned by the lock; the dev extras the lock
# also pins (pytest, chdb-core with pandas and pyarrow: hundreds of MB) are for the test suite, not the image.
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > runtime-requirements.txt && \
    pip install --no-cache-dir -c requirements.lock -r runtime-requirements.txt
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
EXPOSE 8080 9101
CMD ["python", "-m", "ingest_gateway", "serve"]
