from django.urls import path

from django_app import views

urlpatterns = [
    path("auth/magic-link", views.request_link),
    path("auth/magic-link/verify", views.verify_link),
    path("auth/2fa/verify", views.second_factor),
    path("session", views.whoami),
    path("me", views.me),
    path("sessions", views.devices),
    path("sessions/revoke-others", views.revoke_others),
    path("sessions/<str:session_id>", views.revoke_device),
    path("2fa/enrol", views.enrol),
    path("2fa/confirm", views.confirm),
    path("logout", views.logout),
    path("logout-everywhere", views.logout_everywhere),
]
