"""The control API's client, shared by the CLI (``python -m live``) and the notebook
panels (:mod:`trader.widgets`): they steer the daemon through it and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from live.config import load_config
from live.control import control_token
from trader import REPO_ROOT


class ControlError(RuntimeError):
    """The control API answered with an HTTP error (status and body in the message)."""


class ControlClient:
    """Asynchronous client of a running daemon's control API.

    Parameters
    ----------
    base_url : str
        ``http://host:port`` of the control API.
    token : str
        The bearer token (see :func:`live.control.control_token`).
    timeout_s : float
        Total time allowed per request, seconds (a kill can take up to 15 s).
    """

    def __init__(self, base_url: str, token: str, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    @classmethod
    def from_config(cls, config_dir: Path = REPO_ROOT / "config") -> ControlClient:
        """The client of the daemon started with ``config_dir``: its URL from
        ``<var_dir>/control.url`` (written at start), else ``[control]`` of
        ``live.toml``; its token from ``TRADER_CONTROL_TOKEN`` or ``<var_dir>``.

        Raises
        ------
        ConfigurationError
            If the configuration files are missing or invalid.
        """
        cfg = load_config(config_dir / "live.toml", config_dir / "risk.toml")
        return cls.from_var_dir(cfg.var_dir, f"http://{cfg.control.host}:{cfg.control.port}")

    @classmethod
    def from_var_dir(cls, var_dir: Path, default_url: str = "") -> ControlClient:
        """The client of the daemon whose run-time folder is ``var_dir``.

        Raises
        ------
        ControlError
            If no daemon wrote ``control.url`` there and no ``default_url`` is given.
        """
        url_file = var_dir / "control.url"
        url = url_file.read_text().strip() if url_file.exists() else default_url
        if not url:
            raise ControlError(f"{url_file}: not found (is the daemon running?)")
        return cls(url, control_token(var_dir))

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one request; return the decoded JSON answer.

        Raises
        ------
        ControlError
            On an HTTP status >= 400 other than 503 from ``/ready`` (whose body is
            the readiness document).
        aiohttp.ClientError
            If the daemon cannot be reached.
        """
        async with (
            aiohttp.ClientSession(headers=self._headers, timeout=self._timeout) as s,
            s.request(method, self.base_url + path, json=body) as r,
        ):
            data = await r.json(content_type=None)
            if r.status >= 400 and not (path == "/ready" and r.status == 503):
                raise ControlError(f"{method} {path}: HTTP {r.status}: {data}")
            return data

    async def get(self, path: str) -> Any:
        """``GET path`` (see :meth:`request`)."""
        return await self.request("GET", path)

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """``POST path`` with a JSON body (see :meth:`request`)."""
        return await self.request("POST", path, body or {})
