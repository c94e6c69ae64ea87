from .client import (
    RateLimits,
    RiotClient,
    RiotError,
    RiotNotFound,
    RiotPermanentError,
    RiotRateLimited,
    RiotServerError,
    RiotTransientError,
    RiotUnavailable,
    regional_routing,
)

__all__ = [
    "RiotClient",
    "RiotError",
    "RiotNotFound",
    "RiotPermanentError",
    "RiotRateLimited",
    "RiotServerError",
    "RiotTransientError",
    "RiotUnavailable",
    "RateLimits",
    "regional_routing",
]
