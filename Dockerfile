# CallGrid Portal: one image for the web server and the simulator (the Celery worker and beat
# run from it too).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/app/var

WORKDIR /app

# .dockerignore keeps the virtualenv, local data, tests and VCS files out of the context.
COPY . .
RUN pip install .

# Static files are part of the image (whitenoise serves them). collectstatic signs nothing, and
# the settings generate no key, so none is needed (or baked into the image) here.
RUN python manage.py collectstatic --noinput -v 0

# Run as an unprivileged user that owns only DATA_DIR. The route spool's folder exists in the
# image so a volume mounted there (docker-compose.yml) starts owned by that user.
RUN useradd --create-home --uid 10001 callgrid \
    && mkdir -p "$DATA_DIR/spool" \
    && chown -R callgrid:callgrid "$DATA_DIR"
USER callgrid

EXPOSE 8000
# The workers' heartbeat file lives in memory: on the container's disk-backed /tmp, gunicorn's
# per-loop touch of it can stall a worker (see gunicorn's worker_tmp_dir setting).
CMD ["gunicorn", "callgrid_portal.wsgi", "-b", "0.0.0.0:8000", "--workers", "3", "--threads", "8", "--worker-tmp-dir", "/dev/shm", "--access-logfile", "-"]
