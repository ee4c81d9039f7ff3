from django.core.validators import URLValidator

# Destinations and websites are web addresses: only http(s), never ftp, file, gopher...
http_url_validator = URLValidator(schemes=["http", "https"])
