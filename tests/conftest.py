import os
import sys
from pathlib import Path

# Tests import the lab and fakes as `tests.…`, whatever directory pytest starts in.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", "/tmp/calyx-hypothesis")
