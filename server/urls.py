from django.urls import re_path

from server.views import incoming_data

urlpatterns = [
    re_path(r"^incoming_data/?$", incoming_data, name="incoming-data"),
]
