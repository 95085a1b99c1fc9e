"""The channel layer's Redis connections outlast channels-redis's blocking receive."""

from __future__ import annotations

from typing import Any, cast

from channels_redis.core import RedisChannelLayer
from django.conf import settings


def test_a_receive_may_block_longer_than_the_server_side_pop() -> None:
    # redis-py 8 cuts socket reads after 5 s unless told otherwise; channels-redis's BZPOPMIN
    # blocks 5 s on the server: equal timeouts tore every idle relay (and socket) down.
    config = cast(dict[str, Any], settings.CHANNEL_LAYERS["default"]["CONFIG"])
    [host] = config["hosts"]
    assert host["address"] == settings.REDIS_URL
    assert host["socket_timeout"] >= 2 * RedisChannelLayer.brpop_timeout
