"""API routes of this app, mounted under /api/v1/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from bidlog.api.routing import CallViewSet, RouteView
from bidlog.api.views import BidViewSet

router = SimpleRouter()
router.register("bids", BidViewSet, basename="bid")
router.register("calls", CallViewSet, basename="call")

urlpatterns = [
    path("route/", RouteView.as_view(), name="route"),
    *router.urls,
]
