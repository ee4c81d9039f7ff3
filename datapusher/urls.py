from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from accounts.views import AccountViewSet
from destinations.views import AccountDestinationList, DestinationViewSet
from server.views import DeliveryViewSet, EventViewSet

router = DefaultRouter()
router.register("accounts", AccountViewSet, basename="account")
router.register("destinations", DestinationViewSet, basename="destination")
router.register("events", EventViewSet, basename="event")
router.register("deliveries", DeliveryViewSet, basename="delivery")

urlpatterns = [
    path("admin/", admin.site.urls),
    path(
        "api/accounts/<str:account_id>/destinations/",
        AccountDestinationList.as_view(),
        name="account-destinations",
    ),
    path("api/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api-auth/", include("rest_framework.urls")),
    path("server/", include("server.urls")),
]

handler400 = "rest_framework.exceptions.bad_request"
handler404 = "datapusher.errors.page_not_found"
handler500 = "datapusher.errors.server_error"
