"""The auth service: decomposing by function (Y axis). Credentials, tokens and login rate limits in its own Redis."""
