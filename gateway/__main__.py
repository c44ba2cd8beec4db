"""`python -m gateway`: one gateway process against HERD_REDIS_URL (what `herd gateway` runs)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from gateway.api_keys import require_api_keys
from gateway.app import create_app
from gateway.clients import name_clients
from gateway.hosts import guard_hosts
from herd.config import Config


def run_gateway(config: Config, redis_url: str) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (uvicorn handles both gracefully)."""
    app = name_clients(create_app(config, redis_url), limited=config.max_jobs_per_client > 0,
                       by_api_key=bool(config.api_keys))
    app = guard_hosts(require_api_keys(app, config.api_keys), config.host)
    uvicorn.run(app, host=config.host, port=config.port, log_level="debug" if config.debug else "warning",
                proxy_headers=True, forwarded_allow_ips=config.trusted_proxies,
                timeout_graceful_shutdown=5, access_log=config.debug)


def main() -> None:
    config = Config.from_env()
    logging.basicConfig(level=logging.DEBUG if config.debug else logging.INFO,
                        format="%(asctime)s gateway %(levelname)s %(name)s: %(message)s")
    if not config.redis_url:
        sys.exit("herd gateway: HERD_REDIS_URL is not set (gateways share one Redis with the workers)")
    run_gateway(config, config.redis_url)


if __name__ == "__main__":
    main()
