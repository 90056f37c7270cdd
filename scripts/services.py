"""Make PostgreSQL and Redis available to the platform; idempotent (a no-op when both answer).

The servers are the ones named by DATABASE_URL and REDIS_URL (with the platform's defaults).
A remote server must already run. A server on this machine (127.0.0.1, localhost, ::1) that
does not answer is started, after installing Debian's package if it is absent. Then the
database named in DATABASE_URL is created if it is missing.

A local PostgreSQL that refuses the URL's password-less login over TCP (a fresh Debian
install uses scram-sha-256 for 127.0.0.1) gets `trust` rules for 127.0.0.1 and ::1 at the
top of pg_hba.conf: every local login then works without a password, which suits the
development and CI machines this script is for, and the URL stays password-free."""
import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/inference_platform")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
TRUST_RULES = "host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"


def say(message: str) -> None:
    print(f"services: {message}", flush=True)


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(host: str, port: int, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not reachable(host, port):
        if time.monotonic() > deadline:
            sys.exit(f"services: {what} did not come up on {host}:{port}")
        time.sleep(0.5)


def run(*command: str) -> bool:
    return subprocess.run(command, check=False).returncode == 0


def apt_install(*packages: str) -> None:
    say(f"installing {' '.join(packages)} from Debian's packages")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)


# PostgreSQL ------------------------------------------------------------------------------

def postgres_versions() -> list[str]:
    """Installed server versions (Debian layout: /usr/lib/postgresql/<version>/bin/postgres), newest last."""
    found = [Path(p).parts[4] for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")]
    return sorted(found, key=lambda v: [int(x) for x in v.split(".") if x.isdigit()])


def postgres_clusters() -> list[str]:
    """Debian clusters as "<version>/<name>", e.g. "15/main"."""
    return sorted("/".join(Path(p).parts[3:5]) for p in glob.glob("/etc/postgresql/*/*/postgresql.conf"))


def postgres_start(host: str, port: int) -> None:
    if not postgres_versions() and not shutil.which("postgres") and not shutil.which("pg_ctl"):
        apt_install("postgresql")
        if reachable(host, port):
            return
    if shutil.which("pg_ctlcluster"):
        if not postgres_clusters() and postgres_versions():
            version = postgres_versions()[-1]
            say(f"creating PostgreSQL cluster {version}/main")
            run("pg_createcluster", "--port", str(port), version, "main")
        for cluster in postgres_clusters():
            version, name = cluster.split("/")
            say(f"starting PostgreSQL cluster {cluster}")
            run("pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start")
    elif os.environ.get("PGDATA") and shutil.which("pg_ctl"):
        say(f"starting PostgreSQL in {os.environ['PGDATA']}")
        run("runuser", "-u", "postgres", "--", "pg_ctl", "-D", os.environ["PGDATA"], "-l",
            os.path.join(os.environ["PGDATA"], "server.log"), "start")
    else:
        say("starting PostgreSQL through its service script")
        run("service", "postgresql", "start")
    wait_for(host, port, "PostgreSQL")


def postgres_allow_local_trust() -> bool:
    """Put the trust rules first in every Debian cluster's pg_hba.conf and reload; False if there is none."""
    hba_files = glob.glob("/etc/postgresql/*/*/pg_hba.conf")
    for hba in hba_files:
        text = Path(hba).read_text()
        if not text.startswith(TRUST_RULES):
            say(f"allowing password-less logins over 127.0.0.1 and ::1 in {hba}")
            Path(hba).write_text(TRUST_RULES + text)
    for cluster in postgres_clusters():
        version, name = cluster.split("/")
        run("pg_ctlcluster", "--skip-systemctl-redirect", version, name, "reload")
    time.sleep(1)
    return bool(hba_files)


def postgres_connect_admin(url):
    import psycopg

    admin_url = url._replace(path="/postgres").geturl()
    try:
        return psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        refused_login = any(word in str(exc) for word in ("password", "authentication", "pg_hba.conf"))
        if url.hostname in LOCAL_HOSTS and refused_login and postgres_allow_local_trust():
            return psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
        raise


def ensure_postgres() -> None:
    import psycopg

    url = urlparse(DATABASE_URL)
    host, port = url.hostname or "127.0.0.1", url.port or 5432
    if not reachable(host, port):
        if host not in LOCAL_HOSTS:
            sys.exit(f"services: PostgreSQL at {host}:{port} (DATABASE_URL) does not answer")
        postgres_start(host, port)
    name = url.path.lstrip("/")
    try:
        conn = postgres_connect_admin(url)
    except psycopg.OperationalError as exc:
        sys.exit(f"services: cannot log in to PostgreSQL at {host}:{port} (DATABASE_URL): {exc}")
    with conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            say(f"creating database {name}")
            conn.execute(f'CREATE DATABASE "{name}"')
    say(f"PostgreSQL ready at {host}:{port}, database {name}")


# Redis -----------------------------------------------------------------------------------

def ensure_redis() -> None:
    url = urlparse(REDIS_URL)
    host, port = url.hostname or "127.0.0.1", url.port or 6379
    if not reachable(host, port):
        if host not in LOCAL_HOSTS:
            sys.exit(f"services: Redis at {host}:{port} (REDIS_URL) does not answer")
        if not shutil.which("redis-server"):
            apt_install("redis-server")
        # Debian's package starts its own server where an init system runs; start one only if it did not.
        if not reachable(host, port):
            say("starting Redis")
            os.makedirs("/var/lib/redis", exist_ok=True)
            os.makedirs("/var/log/redis", exist_ok=True)
            subprocess.run([
                "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", str(port),
                "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
                "--logfile", "/var/log/redis/platform.log",
            ], check=True)
            wait_for(host, port, "Redis")
    say(f"Redis ready at {host}:{port}")


if __name__ == "__main__":
    ensure_postgres()
    ensure_redis()
