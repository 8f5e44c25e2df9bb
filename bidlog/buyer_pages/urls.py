"""The buyer pages: list, detail (with the eligibility check), create, edit, test bids."""

from django.urls import path

from bidlog.buyer_pages import views

app_name = "buyers"

urlpatterns = [
    path("", views.BuyerListView.as_view(), name="list"),
    path("new/", views.BuyerCreateView.as_view(), name="create"),
    path("<int:pk>/", views.BuyerDetailView.as_view(), name="detail"),
    path("<int:pk>/edit/", views.BuyerUpdateView.as_view(), name="edit"),
    path("<int:pk>/test-bid/", views.BuyerTestBidView.as_view(), name="test_bid"),
    path("<int:pk>/status/", views.BuyerStatusView.as_view(), name="status"),
]
