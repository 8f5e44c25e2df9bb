"""API routes of this app, mounted under /api/v1/."""

from rest_framework.routers import SimpleRouter

from bidlog.buyer_pages.api.views import BuyerViewSet

router = SimpleRouter()
router.register("buyers", BuyerViewSet, basename="buyer")

urlpatterns = router.urls
