"""API routes of this app, mounted under /api/v1/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from bidlog.api.views import BidViewSet
from bidlog.ingest.api import BidImportView
from bidlog.monitoring.api import (
    AlertAcknowledgeView,
    AlertListView,
    AlertMuteDetailView,
    AlertMuteListView,
    TestBidView,
)
from bidlog.reports.api import (
    ReportByTagView,
    ReportStatesView,
    ReportSummaryView,
    ReportTimeseriesView,
)
from bidlog.routing.api import CallViewSet, RouteView

router = SimpleRouter()
router.register("bids", BidViewSet, basename="bid")
router.register("calls", CallViewSet, basename="call")

urlpatterns = [
    # Before the router: "bids/import/" would otherwise read as a bid's detail URL.
    path("bids/import/", BidImportView.as_view(), name="bid-import"),
    path("reports/summary/", ReportSummaryView.as_view(), name="report-summary"),
    path("reports/timeseries/", ReportTimeseriesView.as_view(), name="report-timeseries"),
    path("reports/states/", ReportStatesView.as_view(), name="report-states"),
    path("reports/campaigns/", ReportByTagView.as_view(), name="report-campaigns"),
    path("route/", RouteView.as_view(), name="route"),
    path("buyers/<int:pk>/test-bid/", TestBidView.as_view(), name="buyer-test-bid"),
    path("alerts/", AlertListView.as_view(), name="alert-list"),
    path("alerts/mutes/", AlertMuteListView.as_view(), name="alert-mute-list"),
    path("alerts/mutes/<int:buyer_id>/", AlertMuteDetailView.as_view(), name="alert-mute-detail"),
    path("alerts/<int:pk>/acknowledge/", AlertAcknowledgeView.as_view(), name="alert-acknowledge"),
    *router.urls,
]
