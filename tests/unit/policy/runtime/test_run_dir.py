import os
import subprocess
import sys

import pytest

from policy.runtime.run_dir import RunDirBusy, hold_run_dir

HOLD = (
    "import sys, time; from pathlib import Path; from policy.runtime.run_dir import hold_run_dir; "
    "lock = hold_run_dir(Path(sys.argv[1])); print('held', flush=True); time.sleep(30)"
)


def test_a_second_process_is_refused_a_run_directory_in_use_and_gets_it_once_freed(tmp_path):
    run_dir = tmp_path / "bgp"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirBusy, match=rf"{run_dir} is in use by another process \(pid {holder.pid}\)"):
            hold_run_dir(run_dir)
    finally:
        holder.kill()
        holder.wait()
    lock = hold_run_dir(run_dir)  # the kernel released the dead holder's lock
    assert (run_dir / "lock").read_text() == f"{os.getpid()}\n"
    assert oct(run_dir.stat().st_mode & 0o777) == "0o700"
    lock.close()
