"""The alert centre's pages."""

from django.urls import path

from bidlog.monitoring import pages as views

app_name = "alerts"

urlpatterns = [
    path("", views.AlertCentreView.as_view(), name="list"),
    path("<int:pk>/acknowledge/", views.AlertAcknowledgeView.as_view(), name="acknowledge"),
    path("mute/", views.AlertMuteView.as_view(), name="mute"),
    path("mute/<int:buyer_id>/unmute/", views.AlertUnmuteView.as_view(), name="unmute"),
]
