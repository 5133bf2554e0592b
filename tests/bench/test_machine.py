"""The machine sentence every results page opens with."""

from sparsekit.bench.machine import machine_facts, machine_line


def test_machine_line_names_the_libraries_asked_for_in_order():
    facts = {"cpu": "Xeon", "cores": 2, "memory_gib": 23.5, "versions": {"torch": "2.13.0", "nvidia-modelopt": "0.47.0", "onnxruntime": "1.22.0"}}
    assert machine_line(facts) == "Machine: Xeon, 2 cores, 23.5 GiB; torch 2.13.0."
    assert machine_line(facts, ("onnxruntime", "nvidia-modelopt")) == "Machine: Xeon, 2 cores, 23.5 GiB; ONNX Runtime 1.22.0, ModelOpt 0.47.0."


def test_machine_line_reads_this_machines_facts():
    facts = machine_facts()
    line = machine_line(facts, ("torch",))
    assert line.startswith(f"Machine: {facts['cpu']}, {facts['cores']} cores")
    assert f"torch {facts['versions']['torch']}." in line
