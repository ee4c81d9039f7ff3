from django.contrib import admin
from django.urls import path

from server.pages import dashboard, landing

# Included before the admin's own URLs, whose catch-all would otherwise answer /admin/dashboard/.
urlpatterns = [
    path("", landing, name="landing"),
    path("admin/dashboard/", admin.site.admin_view(dashboard), name="admin-dashboard"),
]
