"""Top-level URLs: the pages, login, admin, the REST API under /api/v1/ and its schema."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from bidlog.reports.live_pages import LiveCallLogView, LiveCallRowsView
from bidlog.reports.report_pages import OverviewView, ReportsView
from bidlog.routing.api import EligibilityView
from callgrid_portal.api import HealthView
from callgrid_portal.api_index import NOT_FOUND_NAME, ApiIndexView, api_not_found
from callgrid_portal.catalog_api import ErrorCodeDetailView, ErrorCodeListView
from callgrid_portal.navigation import PortalLogoutView
from callgrid_portal.views import TroubleshootingView

api_v1: list[URLPattern | URLResolver] = [
    path("", ApiIndexView.as_view(), name="index"),
    path("health/", HealthView.as_view(), name="health"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file of its own: no inline script (CSP).
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path("error-codes/", ErrorCodeListView.as_view(), name="error-code-list"),
    path("error-codes/<str:code>/", ErrorCodeDetailView.as_view(), name="error-code-detail"),
    # Before the buyers router, whose buyers/{pk}/ would otherwise claim "eligibility".
    path("buyers/eligibility/", EligibilityView.as_view(), name="buyer-eligibility"),
    path("", include("bidlog.buyer_pages.api.urls")),
    path("", include("bidlog.api.urls")),
]

urlpatterns = [
    path("", OverviewView.as_view(), name="home"),
    path("reports/", ReportsView.as_view(), name="reports"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", PortalLogoutView.as_view(), name="logout"),
    path("buyers/", include("bidlog.buyer_pages.urls")),
    path("bids/", include("bidlog.urls")),
    path("calls/", include("bidlog.call_urls")),
    path("live/", LiveCallLogView.as_view(), name="live"),
    path("live/rows/", LiveCallRowsView.as_view(), name="live-rows"),
    path("alerts/", include("bidlog.alert_urls")),
    path("troubleshooting/", TroubleshootingView.as_view(), name="troubleshooting"),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"))),
    # Last: any other path under /api/ is a JSON 404, never the site's HTML page.
    re_path(r"^api/", api_not_found, name=NOT_FOUND_NAME),
]

# A request refused as a whole before any view (a body too large, too many fields) is
# answered in JSON under /api/ like every other API error.
handler400 = "callgrid_portal.api.bad_request"
# An unreachable database, Redis or broker failing a request outside a view is a 503 too.
handler500 = "callgrid_portal.outage.server_error"
# The branded 403 page; a user without a role is told whom to ask. (404 and 500 are Django's
# handlers rendering the project's 404.html and 500.html.)
handler403 = "callgrid_portal.navigation.permission_denied"
