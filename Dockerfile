# fastmock in a container: `docker build -t fastmock .` then `docker run --rm -p 8080:8080 fastmock`.
# tests/test_distribution.py runs this file's pip and build commands in a temporary venv and lints it.

# Build stage: the sdist and, from it, the wheel (Cython, a C compiler and OpenSSL's headers live only here).
FROM python:3.12-slim AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY src ./src
RUN python -m pip install --no-cache-dir build==1.2.2 \
    && python -m build --outdir /wheels .

# Runtime stage: the wheel (with gRPC) on a slim Python, no compiler, a non-root user.
FROM python:3.12-slim
COPY --from=build /wheels /wheels
# what `docker run -e TASK=ping_once fastmock run` runs when no scenario file is given
COPY examples/scenario.yaml /etc/fastmock/scenario.yaml
RUN python -m pip install --no-cache-dir "$(echo /wheels/fastmock-*.whl)[grpc]" \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home fastmock
USER 10001
# hp, the fleet's management API, gRPC; a fleet's own ports are published with a range (see README)
EXPOSE 8080 9999 50051
# HEALTH_URL: for a fleet, -e HEALTH_URL=http://127.0.0.1:9999/health
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('HEALTH_URL', 'http://127.0.0.1:8080/health'), timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["fastmock"]
CMD ["hp", "--host", "0.0.0.0"]
