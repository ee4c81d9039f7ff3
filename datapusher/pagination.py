from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    """Page-number pagination; clients pick `page_size` up to a cap that keeps pages cheap."""

    page_size_query_param = "page_size"
    max_page_size = 100
