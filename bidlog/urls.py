"""The bid log pages."""

from django.urls import path

from bidlog.reports import pages as views

app_name = "bids"

urlpatterns = [
    path("", views.BidListView.as_view(), name="list"),
    path("<int:pk>/", views.BidDetailView.as_view(), name="detail"),
]
