"""Tell whether PostgreSQL and Redis answer at the given URLs; exit 1 naming the first that does not.

Usage: python scripts/services_available.py DATABASE_URL REDIS_URL
"""

from __future__ import annotations

import sys

import psycopg
import redis


def main(database_url: str, redis_url: str) -> int:
    try:
        psycopg.connect(database_url.replace("postgres://", "postgresql://", 1), connect_timeout=3).close()
    except psycopg.Error as error:
        print(f"PostgreSQL is not reachable at {database_url}: {str(error).strip()}")
        return 1
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        print(f"Redis is not reachable at {redis_url}: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
