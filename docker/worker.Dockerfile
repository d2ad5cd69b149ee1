# The image the worker patterns (queues, Indexed Jobs) run in on a real cluster: Python plus the
# provider's worker extra (pika, redis; no Airflow). Put your program on top, e.g.:
#   FROM airflow-batchjob-worker
#   COPY work.py /app/work.py
# Build from the repository root:  docker build -f docker/worker.Dockerfile -t airflow-batchjob-worker .
# The injected worker (injector/, Go): one static binary, copied by the operators into images
# without Python (docs/worker-image.rst); scripts/build_injector.sh builds the same for the local cluster.
FROM golang:1.26 AS injector
WORKDIR /src
COPY injector/ ./
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /batchjob-worker .

FROM python:3.11-slim
COPY --from=injector /batchjob-worker /opt/batchjob/bin/batchjob-worker
WORKDIR /src
COPY pyproject.toml README.md ./
COPY airflow_batchjob ./airflow_batchjob
# The worker imports only the standard library, pika, redis and airflow_batchjob.core: install the
# package without its Airflow dependencies, plus the worker extra.
RUN pip install --no-cache-dir --no-deps . && pip install --no-cache-dir "pika>=1.3" "redis>=5.0"
WORKDIR /app
ENTRYPOINT ["python", "-m", "airflow_batchjob.worker"]
