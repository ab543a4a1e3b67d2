"""A torchrun entry point for tests/test_distributed.py: ``ddpm-fast sample`` in which rank 1
kills itself (SIGKILL, as the OOM killer or a lost node would) after sampling its first chunk,
once rank 0's part is on disk, so the test can check that no manifest appears and that
``--resume`` then keeps rank 0's part."""
import os
import signal
import sys
import time

import ddpm_fast.shards as shards
from ddpm_fast.cli import main

if os.environ.get("RANK") == "1":
    write_part = shards.write_part

    def write_part_then_die(directory, rank, rows, params, sample_rows, chunk, noise_device="cpu", on_chunk=None):
        def die(_rows):
            deadline = time.monotonic() + 120
            while not os.path.exists(os.path.join(directory, "part-00000.json")) and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGKILL)
        return write_part(directory, rank, rows, params, sample_rows, chunk, noise_device, on_chunk=die)

    shards.write_part = write_part_then_die

sys.exit(main(sys.argv[1:]))
