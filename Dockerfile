# One image for the API and the workers: EXTRA=cpu (tensorflow-cpu) by default, --build-arg EXTRA=gpu for CUDA
# workers (tensorflow with its CUDA libraries). Each gets exactly one TensorFlow.
FROM python:3.11-slim
ARG EXTRA="cpu"
ENV PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 CONVLENS_HOME=/var/lib/convlens \
    CONVLENS_DATA_DIR=/var/lib/convlens/datasets
RUN apt-get update && apt-get install -y --no-install-recommends gcc make && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY ml ml
COPY worker worker
COPY api api
COPY db db
COPY migrations migrations
RUN pip install --no-cache-dir -e ".${EXTRA:+[$EXTRA]}"
VOLUME /var/lib/convlens
CMD ["convlens", "api", "--host", "0.0.0.0", "--port", "8000"]
