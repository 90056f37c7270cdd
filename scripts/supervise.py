"""`make run`'s process supervisor: supervisord, running the processes of the Procfile.

Each start writes $PLATFORM_VAR_DIR/supervisord.conf (default var/) from the Procfile and
runs supervisord in the foreground. Every Procfile line runs as `bash -c 'exec <line>'`,
so its ${VAR:-default} expansions keep working, under `setpriv --pdeathsig TERM`, so it
stops even when supervisord is killed. A process that dies is started again: at once,
or, when it dies within START_S of its start, after 1, 2, 3 ... s (supervisord's backoff);
after START_RETRIES such failures supervisord gives up on it, and this script's console
listener starts it again every GIVE_UP_RETRY_S. Ctrl-C or SIGTERM stops them all at once
(SIGTERM to each process group, SIGKILL after STOP_WAIT_S).

Output: each process's lines on the console, prefixed with its name (the listener relays
supervisord's PROCESS_LOG events), and in var/log/<name>.log; supervisord's own lines
(spawned, exited, gave up) come unprefixed, and go to var/log/supervisord.log as well.
`.venv/bin/supervisorctl -c var/supervisord.conf status` (or `restart platform:worker`)
talks to the running one."""
import argparse
import os
import re
import shlex
import shutil
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GROUP = "platform"
START_S = 5
START_RETRIES = 10
GIVE_UP_RETRY_S = 30
STOP_WAIT_S = 15
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(\S.*)$")


def procfile_read(path: Path) -> dict[str, str]:
    processes = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = PROCFILE_LINE.match(line)
        if match is None:
            raise SystemExit(f"{path}: not a `name: command` line: {line!r}")
        processes[match[1]] = match[2].strip()
    return processes


def config_text(processes: dict[str, str], var: Path) -> str:
    """supervisord's configuration. Its values are %-interpolated (%(ENV_X)s), hence the
    doubled % (celery's `--hostname worker@%h`)."""
    def value(text) -> str:
        return str(text).replace("%", "%%")

    log = var / "log"
    width = max(map(len, processes))
    listener = shlex.join([sys.executable, str(Path(__file__).resolve()), "--console", str(width)])
    sections = [f"""\
; Written by scripts/supervise.py from the Procfile at each start: edit the Procfile instead.
[supervisord]
nodaemon=true
{"user=root" if os.geteuid() == 0 else ""}
directory={value(ROOT)}
logfile={value(log / "supervisord.log")}
logfile_maxbytes=10MB
logfile_backups=3
pidfile={value(var / "supervisord.pid")}
childlogdir={value(log)}

[unix_http_server]
file={value(var / "supervisor.sock")}
chmod=0700

[supervisorctl]
serverurl=unix://{value(var / "supervisor.sock")}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[group:{GROUP}]
programs={",".join(processes)}

[eventlistener:console]
command={value(listener)}
events=PROCESS_LOG,PROCESS_STATE_FATAL
buffer_size=4096
priority=1
autorestart=true
stderr_logfile=/dev/stdout
stderr_logfile_maxbytes=0
"""]
    for name, line in processes.items():
        command = shlex.join(["setpriv", "--pdeathsig", "TERM", "/bin/bash", "-c", f"exec {line}"])
        sections.append(f"""\
[program:{name}]
command={value(command)}
directory={value(ROOT)}
environment=PYTHONUNBUFFERED="1"
autorestart=true
startsecs={START_S}
startretries={START_RETRIES}
stopsignal=TERM
stopwaitsecs={STOP_WAIT_S}
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={value(log / f"{name}.log")}
stdout_logfile_maxbytes=10MB
stdout_logfile_backups=3
stdout_events_enabled=true
""")
    return "\n".join(sections)


def console(width: int) -> None:
    """supervisord's event listener protocol: READY, an event, RESULT. A PROCESS_LOG
    event's lines go to stderr, which supervisord writes to its own stdout; a process it
    gave up on (FATAL) is started again GIVE_UP_RETRY_S later."""
    events, answers, out = sys.stdin.buffer, sys.stdout.buffer, sys.stderr.buffer
    partial: dict[bytes, bytes] = {}
    lock = threading.Lock()

    def write(name: bytes, lines: list[bytes]) -> None:
        prefix = name.ljust(width) + b" | "
        with lock:
            out.write(b"".join(prefix + line + b"\n" for line in lines))
            out.flush()

    def start_again(group: bytes, name: bytes) -> None:
        from supervisor import childutils

        try:
            childutils.getRPCInterface(os.environ).supervisor.startProcess(f"{group.decode()}:{name.decode()}", False)
        except Exception as exc:
            write(name, [f"could not be started again: {exc}".encode()])

    while True:
        answers.write(b"READY\n")
        answers.flush()
        header = events.readline()
        if not header:
            return  # supervisord has gone
        fields = dict(token.split(b":", 1) for token in header.split())
        payload = events.read(int(fields[b"len"]))
        head, _, data = payload.partition(b"\n")
        about = dict(token.split(b":", 1) for token in head.split())
        name = about[b"processname"]
        if fields[b"eventname"] == b"PROCESS_STATE_FATAL":
            write(name, [f"gave up after {START_RETRIES} quick exits; starting it again in {GIVE_UP_RETRY_S} s"
                         .encode()])
            threading.Timer(GIVE_UP_RETRY_S, start_again, (about[b"groupname"], name)).start()
        else:
            lines = (partial.pop(name, b"") + data).split(b"\n")
            if lines[-1]:
                partial[name] = lines[-1]
            if lines[:-1]:
                write(name, lines[:-1])
        answers.write(b"RESULT 2\nOK")
        answers.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Procfile's processes under supervisord (foreground).")
    parser.add_argument("--procfile", type=Path, default=ROOT / "Procfile")
    parser.add_argument("--console", type=int, metavar="WIDTH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.console:
        return console(args.console)
    if shutil.which("setpriv") is None:
        raise SystemExit("setpriv is missing (Debian's util-linux has it)")
    var = ROOT / os.environ.get("PLATFORM_VAR_DIR", "var")
    (var / "log").mkdir(parents=True, exist_ok=True)
    conf = var / "supervisord.conf"
    conf.write_text(config_text(procfile_read(args.procfile), var.resolve()))
    # The Procfile's commands (uvicorn, celery, python) resolve to the venv's, as under make.
    bin_dir = Path(sys.executable).parent
    os.environ["PATH"] = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    supervisord = bin_dir / "supervisord"
    os.execv(supervisord, [str(supervisord), "-c", str(conf)])


if __name__ == "__main__":
    main()
