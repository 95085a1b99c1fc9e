# Image for both the web server (the default command) and the worker (`python manage.py runworker`).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
RUN pip install . \
    # Settings need URLs to load; collectstatic touches neither database nor Redis.
    && DATABASE_URL=postgresql://build@localhost/build REDIS_URL=redis://localhost:6379/0 \
       python manage.py collectstatic --noinput --verbosity 0 \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app

USER app
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "config.asgi:application"]
