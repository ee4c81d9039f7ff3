from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from accounts.views import AccountViewSet, MemberViewSet, MeView, SignInView, SignOutView
from datapusher import health
from destinations.views import AccountDestinationList
from server.destination_views import DestinationLifecycleViewSet
from server.recovery_views import AccountRecoverViewSet, RecoveryViewSet
from server.views import DeliveryViewSet, EventViewSet

router = DefaultRouter()
router.register("accounts", AccountViewSet, basename="account")
router.register("destinations", DestinationLifecycleViewSet, basename="destination")
router.register("events", EventViewSet, basename="event")
router.register("deliveries", DeliveryViewSet, basename="delivery")
router.register("recoveries", RecoveryViewSet, basename="recovery")

urlpatterns = [
    path("", include("server.page_urls")),  # `/` and /admin/dashboard/, before the admin's catch-all
    path("admin/", admin.site.urls),
    path(
        "api/accounts/<str:account_id>/destinations/",
        AccountDestinationList.as_view(),
        name="account-destinations",
    ),
    path(
        "api/accounts/<str:account_id>/members/",
        MemberViewSet.as_view({"get": "list", "post": "create"}),
        name="account-members",
    ),
    path(
        "api/accounts/<str:account_id>/members/<str:user_id>/",
        MemberViewSet.as_view({"patch": "partial_update", "delete": "destroy"}),
        name="account-member",
    ),
    path(
        "api/accounts/<str:account_id>/recover/",
        AccountRecoverViewSet.as_view({"post": "recover"}),
        name="account-recover",
    ),
    path("api/auth/token/", SignInView.as_view(), name="auth-token"),
    path("api/auth/logout/", SignOutView.as_view(), name="auth-logout"),
    path("api/auth/me/", MeView.as_view(), name="auth-me"),
    path("api/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api-auth/", include("rest_framework.urls")),
    path("server/", include("server.urls")),
]

# Health and metrics (datapusher/health.py, docs/deployment.md).
urlpatterns += [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
]

handler400 = "rest_framework.exceptions.bad_request"
handler404 = "datapusher.errors.page_not_found"
handler500 = "datapusher.errors.server_error"
