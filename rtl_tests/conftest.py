import sys
from pathlib import Path

# cocotb finds test modules through the pytest process's sys.path (handed over as PYTHONPATH)
sys.path.insert(0, str(Path(__file__).resolve().parent))
