"""The buyer pages: list, detail (with the eligibility check), create, edit, clone, status
changes (one buyer or several) and test bids."""

from django.urls import path

from bidlog.buyer_pages import actions, views

app_name = "buyers"

urlpatterns = [
    path("", views.BuyerListView.as_view(), name="list"),
    path("new/", views.BuyerCreateView.as_view(), name="create"),
    path("status/", actions.BuyerBulkStatusView.as_view(), name="bulk_status"),
    path("<int:pk>/", views.BuyerDetailView.as_view(), name="detail"),
    path("<int:pk>/edit/", views.BuyerUpdateView.as_view(), name="edit"),
    path("<int:pk>/clone/", actions.BuyerCloneView.as_view(), name="clone"),
    path("<int:pk>/test-bid/", actions.BuyerTestBidView.as_view(), name="test_bid"),
    path("<int:pk>/status/", actions.BuyerStatusView.as_view(), name="status"),
]
