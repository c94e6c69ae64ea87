"""GET /healthz: 200 when the database answers a query and the broker accepts a connection, else 503."""

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from config.celery_app import app as celery_app

BROKER_TIMEOUT_S = 2


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return "ok"
    except Exception as exc:  # any failure is an unhealthy database, reported, not raised
        return f"error: {exc.__class__.__name__}: {exc}"


def check_broker() -> str:
    try:
        with celery_app.connection_for_write(connect_timeout=BROKER_TIMEOUT_S) as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_S)
        return "ok"
    except Exception as exc:
        return f"error: {exc.__class__.__name__}: {exc}"


@require_GET
def healthz(request):
    checks = {"database": check_database(), "broker": check_broker()}
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if healthy else "unhealthy", **checks}, status=200 if healthy else 503)
