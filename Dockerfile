# Modelgate: one image for the console (gunicorn), the Celery worker and beat, the one-shot
# `manage.py migrate`, and (in docker-compose.yml) the MLflow tracking server, since MLflow
# and psycopg2 are already pinned in requirements/runtime.txt.
#
#   docker build -t modelgate:0.1.0 .
#
# No secrets are baked in: SECRET_KEY, DATABASE_URL and the rest come from the environment
# (or NAME_FILE) at run time, and DEBUG defaults to false here, so a container started
# without SECRET_KEY stops at once with a message naming it. The image installs only the
# runtime lock: no TensorFlow (the model servers run TF Serving's own image), no Playwright,
# no test tools (tests/test_requirements.py checks the lock). The lock is resolved for
# x86_64 Linux: on an arm64 machine build with --platform linux/amd64.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when the pins change. Exactly
# the hashed runtime lock, nothing resolved at build time.
COPY requirements/runtime.txt requirements/runtime.txt
RUN pip install --require-hashes --no-deps -r requirements/runtime.txt

# Then the code. templates/ and static/ sit beside the packages (settings.BASE_DIR), so the
# processes run the code from /app (PYTHONPATH), where both are found.
COPY . .
RUN pip install --no-deps . \
    && python -m compileall -q console registry deployer tfserving_dev

# A fixed, numeric, unprivileged user, so Kubernetes' runAsNonRoot can verify it. Its home
# is the data directory: the only place Modelgate writes (the embedded-default files it may
# create, the beat schedule, the local backend's exports). /mlartifacts is where the MLflow
# service of docker-compose.yml keeps artifacts; both exist here, owned by that user, so a
# named volume mounted on either starts out writable by it.
RUN groupadd --system --gid 10001 modelgate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/modelgate --no-create-home \
       --shell /usr/sbin/nologin modelgate \
    && mkdir -p /var/lib/modelgate /mlartifacts \
    && chown 10001:10001 /var/lib/modelgate /mlartifacts

ENV PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=console.settings \
    MODELGATE_VAR_DIR=/var/lib/modelgate \
    STATIC_ROOT=/app/staticfiles \
    HOME=/var/lib/modelgate \
    DEBUG=false

# Static files under hashed names, with the manifest the pages' links are read from
# (settings.STATIC_MANIFEST, on when DEBUG is off), gzipped for WhiteNoise. Collected here,
# into /app/staticfiles, not the data directory, which a volume may hide. The data directory
# of this one step is a scratch one, so nothing in the real one ends up owned by root, and the
# key is a throwaway: collectstatic signs nothing and the key is not kept in the image.
RUN MODELGATE_VAR_DIR=/tmp/collectstatic SECRET_KEY=collectstatic-only-not-a-secret-0123456789abcdefghij \
    python manage.py collectstatic --noinput --verbosity 0 \
    && rm -rf /tmp/collectstatic

USER 10001:10001
EXPOSE 8000

# The console. The worker, beat, migrate and MLflow override the command (docker-compose.yml,
# cluster/). No HEALTHCHECK here for the same reason: only the console serves /healthz.
CMD ["gunicorn", "console.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", "--timeout", "60", \
     "--access-logfile", "-", "--no-control-socket"]
