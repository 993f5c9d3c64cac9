"""A client of the fleet's management API, shared by ``fastmock ctl`` and ``fastmock shell``.

Standard library only (urllib): these are a few small calls, not worth a dependency.
"""

import json
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["FleetClient", "FleetError", "Unreachable", "ApiError", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:9999"


class FleetError(Exception):
    """Anything that keeps a call from succeeding; ``str()`` is the line to show."""


class Unreachable(FleetError):
    pass


class ApiError(FleetError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status


class FleetClient:
    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: bytes | None = None, **params) -> bytes:
        query = urllib.parse.urlencode({key: value for key, value in params.items() if value is not None})
        request = urllib.request.Request(f"{self.url}{path}{'?' + query if query else ''}", data=body,
                                         method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                message = json.loads(body)["error"]
            except (ValueError, KeyError, TypeError):
                message = body.decode("utf-8", "replace").strip() or exc.reason
            raise ApiError(exc.code, message) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"cannot reach the fleet at {self.url}: {getattr(reason, 'strerror', None) or reason}") \
                from None

    def _json(self, method: str, path: str, body: bytes | None = None, **params):
        return json.loads(self._call(method, path, body, **params))

    def stats(self) -> dict:
        return self._json("GET", "/stats")

    def endpoints(self, limit: int = 1000, offset: int = 0, state: str = "alive") -> list[dict]:
        return self._json("GET", "/endpoints", limit=limit, offset=offset, state=state, format="json")

    def endpoint_urls(self, limit: int = 1000, state: str = "alive") -> list[str]:
        return self._call("GET", "/endpoints", limit=limit, state=state, format="text").decode().split()

    def kill(self, port: int) -> dict:
        return self._json("POST", "/kill", port=port)

    def revive(self, port: int) -> dict:
        return self._json("POST", "/revive", port=port)

    def scale(self, count: int) -> dict:
        return self._json("POST", "/scale", count=count)

    def fault(self, ports: str, spec: str) -> dict:
        """``ports``: a port or a range A-B."""
        return self._json("POST", "/fault", ports=ports, spec=spec)

    def clear(self, ports: str | None) -> dict:
        """Clear the faults of a port or range A-B; None: of every port."""
        return self._json("DELETE", "/fault", ports=ports, all=None if ports else 1)

    def tls(self, ports: str, state: str) -> dict:
        """Put a port or range A-B in a certificate state ("valid" undoes the others); a --tls fleet."""
        if state == "valid":
            return self._json("DELETE", "/tls", ports=ports)
        return self._json("POST", "/tls", ports=ports, state=state)

    def chaos(self) -> dict:
        return self._json("GET", "/chaos")

    def start_chaos(self, schedule: str) -> dict:
        return self._json("POST", "/chaos", schedule.encode())

    def stop_chaos(self) -> dict:
        return self._json("DELETE", "/chaos")

    def events(self, since: int = 0, limit: int = 10000) -> list[dict]:
        return [json.loads(line) for line in self._call("GET", "/events", since=since, limit=limit).splitlines()]

    def score(self) -> dict:
        return self._json("GET", "/score")

    def logs(self, tail: int = 100) -> str:
        return self._call("GET", "/logs", tail=tail).decode("utf-8", "replace")

    def shutdown(self) -> dict:
        return self._json("POST", "/shutdown")
