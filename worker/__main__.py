"""`python -m worker`: one worker process against HERD_REDIS_URL (what `herd worker` runs)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from herd.config import Config
from worker.runner import Worker


async def _main(config: Config) -> None:
    if not config.redis_url:
        sys.exit("herd worker: HERD_REDIS_URL is not set (the worker needs the shared Redis)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await Worker(config, config.redis_url).run(stop)


def main() -> None:
    config = Config.from_env()
    logging.basicConfig(level=logging.DEBUG if config.debug else logging.INFO,
                        format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    asyncio.run(_main(config))


if __name__ == "__main__":
    main()
