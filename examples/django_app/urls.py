from django.urls import path

from django_app import views

urlpatterns = [
    path("", views.html_front),
    path("sign-in", views.html_front),
    path("auth/magic-link", views.request_link),
    path("auth/magic-link/verify", views.verify_link),
    path("auth/2fa/verify", views.second_factor),
    path("auth/token", views.refresh),
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

# JSON, not HTML, for errors that never reach a view (DEBUG is off)
handler400 = views.bad_request
handler403 = views.forbidden
handler404 = views.not_found
handler500 = views.server_error
