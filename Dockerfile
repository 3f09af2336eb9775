# Grin in a container: a Hugging Face Space (Docker SDK, app_port 8501) or any Docker host.
# CPU-only TensorFlow; the Streamlit app on port 8501; health check on /_stcore/health.
#   docker build -t grin . && docker run -p 8501:8501 grin
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2

# Spaces run the container as user 1000; everything the app writes lives in its home.
RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

# Dependencies first (cached layer): the pinned requirements with the CPU-only TensorFlow wheel, without test tools.
COPY --chown=1000 requirements.txt .
RUN sed -e 's/^tensorflow==/tensorflow-cpu==/' -e '/^pytest==/d' -e '/^playwright==/d' requirements.txt \
        > /tmp/requirements-image.txt \
    && pip install --no-cache-dir -r /tmp/requirements-image.txt \
    && rm /tmp/requirements-image.txt

COPY --chown=1000 . .
USER 1000
ENV HOME=/home/user \
    GRIN_RUNS=/home/user/app/runs \
    GRIN_CACHE=/home/user/.cache/grin \
    GRIN_HUB_DIR=/home/user/.cache/grin/hub \
    HF_HOME=/home/user/.cache/huggingface \
    STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION=false

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]
CMD ["streamlit", "run", "app.py", "--server.port=8501", "--server.address=0.0.0.0", "--server.headless=true", \
     "--server.fileWatcherType=none", "--browser.gatherUsageStats=false"]
