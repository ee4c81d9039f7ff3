from django.apps import AppConfig


class ServerConfig(AppConfig):
    name = "server"
    verbose_name = "Delivery log"

    def ready(self) -> None:
        from django.contrib import admin

        # The admin's index with a link to the dashboard (server/pages.py); set here rather than by
        # overriding admin/index.html, which django.contrib.admin, listed first, would shadow.
        admin.site.index_template = "server/admin_index.html"
