"""API routes of this app, mounted under /api/v1/."""

from rest_framework.routers import SimpleRouter

from bidlog.api.views import BidViewSet

router = SimpleRouter()
router.register("bids", BidViewSet, basename="bid")

urlpatterns = [
    *router.urls,
]
