"""The call pages."""

from django.urls import path

from bidlog.reports import call_pages as call_views

app_name = "calls"

urlpatterns = [
    path("", call_views.CallListView.as_view(), name="list"),
    path("<int:pk>/", call_views.CallDetailView.as_view(), name="detail"),
    path("<int:pk>/paid-out/", call_views.CallPaidOutView.as_view(), name="paid-out"),
]
