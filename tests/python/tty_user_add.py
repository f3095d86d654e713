"""Drives `cclake user add` on a real terminal (a pty), as a person types at it.

Usage: tty_user_add.py CCLAKE CONFIG NAME MODE, MODE one of:
  prompt      no --password-stdin: asked twice, typed twice alike -> saved
  mismatch    no --password-stdin: typed twice differently -> refused, nothing saved
  stdin-tty   --password-stdin with a terminal as stdin: asked once -> saved
Prints everything the terminal showed as JSON; exits with cclake's exit code.
"""
import json
import os
import pty
import select
import sys
import termios
import time

PASSWORD = b"typed-s3cret"


def main():
    binary, config, name, mode = sys.argv[1:5]
    args = [binary, "user", "add", "--config", config, "--name", name, "--role", "analyst"]
    if mode == "stdin-tty":
        args.append("--password-stdin")
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(binary, args)
    shown = b""
    deadline = time.monotonic() + 60

    def read_until(marker):
        nonlocal shown
        while marker not in shown:
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {marker!r}; saw {shown!r}")
            ready, _, _ = select.select([fd], [], [], 1)
            if ready:
                try:
                    chunk = os.read(fd, 1024)
                except OSError:
                    raise SystemExit(f"terminal closed before {marker!r}; saw {shown!r}")
                shown += chunk

    def type_when_echo_is_off(text):
        # A person reads the prompt, then types: wait until the terminal stops echoing (a
        # terminal that never does fails the test by timing out).
        while termios.tcgetattr(fd)[3] & termios.ECHO:
            if time.monotonic() > deadline:
                raise SystemExit(f"the terminal still echoes; saw {shown!r}")
            time.sleep(0.01)
        os.write(fd, text + b"\n")

    read_until(b"Password for " + name.encode() + b": ")
    type_when_echo_is_off(PASSWORD)
    if mode in ("prompt", "mismatch"):
        read_until(b"Repeat the password: ")
        type_when_echo_is_off(PASSWORD if mode == "prompt" else b"something-else")
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"shown": shown.decode(errors="replace"), "password": PASSWORD.decode()}))
    sys.exit(os.waitstatus_to_exitcode(status))


main()
