"""processes.py: the log file of a GatewayProcess outlives its reads but not the object."""

import gc
import os

from krakend_mitm.processes import GatewayProcess


def test_a_default_log_file_is_removed_with_its_process_object():
    gateway = GatewayProcess(["true"], 1)
    path = gateway.log_path
    assert os.path.exists(path) and gateway.log() == ""
    del gateway
    gc.collect()
    assert not os.path.exists(path)


def test_a_log_file_the_caller_named_is_left_alone(tmp_path):
    path = tmp_path / "gateway.log"
    path.write_text("kept")
    gateway = GatewayProcess(["true"], 1, log_path=str(path))
    assert gateway.log() == "kept"
    del gateway
    gc.collect()
    assert path.read_text() == "kept"
