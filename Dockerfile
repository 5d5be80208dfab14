# One image for the gateway and every consumer worker (docker-compose.yml picks the command).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
EXPOSE 8080 9101
CMD ["python", "-m", "ingest_gateway", "serve"]
