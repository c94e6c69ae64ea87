from django.urls import path

from config import health
from players import views

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("api/players/sync", views.sync_player, name="player-sync"),
    path("api/jobs/<uuid:job_id>", views.job_status, name="job-status"),
    path("api/players/<str:region>/<str:game_name>/<str:tag_line>", views.player_detail, name="player-detail"),
]
