class ListFiltersMixin:
    """For viewsets: the filter backends (query parameters such as ?account=) narrow the list only.

    DRF's get_object() filters too, so without this a detail view, an update or a detail action
    would answer 404 or 400 because of a list parameter left in its URL.
    """

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)
