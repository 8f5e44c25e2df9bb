"""The bid log pages: the list (with saved filters) and one bid."""

from django.urls import path

from bidlog.reports import bid_pages
from bidlog.reports import pages as views

app_name = "bids"

urlpatterns = [
    path("", bid_pages.BidListView.as_view(), name="list"),
    path("saved/", bid_pages.SavedFilterSaveView.as_view(), name="saved_save"),
    path("saved/<int:pk>/delete/", bid_pages.SavedFilterDeleteView.as_view(), name="saved_delete"),
    path("<int:pk>/", views.BidDetailView.as_view(), name="detail"),
]
