from .client import (RiotClient, RiotError, RiotNotFound, RiotPermanentError, RiotRateLimited, RiotServerError,
                     RiotTransientError, RiotUnavailable, RateLimits, regional_routing)

__all__ = ["RiotClient", "RiotError", "RiotNotFound", "RiotPermanentError", "RiotRateLimited", "RiotServerError",
           "RiotTransientError", "RiotUnavailable", "RateLimits", "regional_routing"]
