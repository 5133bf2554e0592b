"""ONNX files in and out, below every stage: load once with one clear error
(:mod:`~sparsekit.onnx_io.load`), validate declared sizes against stored bytes and run ONNX's checker
(:mod:`~sparsekit.onnx_io.validate`), walk graphs and subgraphs (:mod:`~sparsekit.onnx_io.graphs`)
and read tensors wherever their bytes live (:mod:`~sparsekit.onnx_io.tensors`)."""
