"""Make PostgreSQL and Redis available to the platform; idempotent.

Uses DATABASE_URL and REDIS_URL when set. For servers on this machine (localhost), it
starts them when they are installed but stopped, and installs Debian's packages when
they are absent. Then it creates the database named in DATABASE_URL if it is missing.
A local PostgreSQL that refuses password-less TCP logins gets a `trust` rule for
127.0.0.1 in pg_hba.conf: this script is for development and CI machines only."""
import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/inference_platform")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}


def say(message: str) -> None:
    print(f"services: {message}", flush=True)


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(host: str, port: int, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not reachable(host, port):
        if time.monotonic() > deadline:
            sys.exit(f"services: {what} did not come up on {host}:{port}")
        time.sleep(0.3)


def apt_install(*packages: str) -> None:
    say(f"installing {' '.join(packages)} from Debian's packages")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)


def postgres_clusters() -> list[str]:
    return sorted(glob.glob("/etc/postgresql/*/main"))


def postgres_start(port: int) -> None:
    if not postgres_clusters():
        apt_install("postgresql")
    if not postgres_clusters():
        sys.exit("services: PostgreSQL is installed but has no cluster under /etc/postgresql")
    version = postgres_clusters()[-1].split("/")[3]
    say(f"starting PostgreSQL {version}")
    if shutil.which("pg_ctlcluster"):
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False)
    else:
        subprocess.run(["service", "postgresql", "start"], check=False)
    wait_for("127.0.0.1", port, "PostgreSQL")


def postgres_allow_local_trust() -> None:
    for hba in glob.glob("/etc/postgresql/*/main/pg_hba.conf"):
        text = open(hba).read()
        rule = "host all all 127.0.0.1/32 trust"
        if rule not in text:
            say(f"allowing password-less TCP logins from 127.0.0.1 in {hba}")
            open(hba, "w").write(f"{rule}\nhost all all ::1/128 trust\n{text}")
    version = postgres_clusters()[-1].split("/")[3]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "reload"], check=False)
    time.sleep(1)


def ensure_database() -> None:
    import psycopg

    url = urlparse(DATABASE_URL)
    name = url.path.lstrip("/")
    admin_url = url._replace(path="/postgres").geturl()
    try:
        conn = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if url.hostname in LOCAL_HOSTS and "authentication" in str(exc) and postgres_clusters():
            postgres_allow_local_trust()
            conn = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
        else:
            raise
    with conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            say(f"creating database {name}")
            conn.execute(f'CREATE DATABASE "{name}"')


def ensure_postgres() -> None:
    url = urlparse(DATABASE_URL)
    host, port = url.hostname or "127.0.0.1", url.port or 5432
    if not reachable(host, port):
        if host not in LOCAL_HOSTS:
            sys.exit(f"services: PostgreSQL at {host}:{port} (DATABASE_URL) is unreachable")
        postgres_start(port)
    ensure_database()
    say(f"PostgreSQL ready at {host}:{port}")


def ensure_redis() -> None:
    url = urlparse(REDIS_URL)
    host, port = url.hostname or "127.0.0.1", url.port or 6379
    if reachable(host, port):
        say(f"Redis ready at {host}:{port}")
        return
    if host not in LOCAL_HOSTS:
        sys.exit(f"services: Redis at {host}:{port} (REDIS_URL) is unreachable")
    if not shutil.which("redis-server"):
        apt_install("redis-server")
    os.makedirs("/var/lib/redis", exist_ok=True)
    os.makedirs("/var/log/redis", exist_ok=True)
    say("starting Redis")
    subprocess.run([
        "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", str(port),
        "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/platform.log",
    ], check=True)
    wait_for(host, port, "Redis")
    say(f"Redis ready at {host}:{port}")


if __name__ == "__main__":
    ensure_postgres()
    ensure_redis()
