"""Child processes the exchange starts itself (the server of ``exchange demo``, the audit
sequencer beside ``exchange serve``), and how they are stopped: by their pid only."""

from __future__ import annotations

import signal
import subprocess

__all__ = ["stop_child"]


def stop_child(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Stop a child this process started: SIGTERM, then SIGKILL after ``timeout`` s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
