"""A zygote for the crash loop: imports the service once, then forks one uvicorn server process per ``start`` line
on stdin and answers ``PID URL`` on stdout. The test SIGKILLs each server itself.

Forking from a process that has imported (not started) anything keeps each crash cycle well under a second on a
2-core machine instead of paying the ~5-10 s import of the service every time. Each server is a real process of its
own: its database connections, threads and sockets are created after the fork.
"""

from __future__ import annotations

import os
import socket
import sys


def serve_forever(args_json: str, write_fd: int) -> None:
    import uvicorn

    from raydq.serve.inprocess import create_inprocess_app
    from raydq.serve.local import load_args

    app = create_inprocess_app(load_args(config=None, args_json=args_json))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    os.write(write_fd, f"http://127.0.0.1:{sock.getsockname()[1]}\n".encode())
    os.close(write_fd)
    uvicorn.Server(uvicorn.Config(app, log_level="error", access_log=False)).run(sockets=[sock])


def main() -> None:
    args_json = sys.argv[1]
    import uvicorn  # noqa: F401  (the imports are the point of the zygote)


    for line in sys.stdin:
        while True:  # reap servers the test has killed
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if line.strip() != "start":
            break
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                serve_forever(args_json, w)
            finally:
                os._exit(1)
        os.close(w)
        with os.fdopen(r) as f:
            url = f.readline().strip()
        print(pid, url, flush=True)


if __name__ == "__main__":
    main()
