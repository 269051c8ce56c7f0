"""TensorRT plans through Polygraphy: the lazy loader chain (``loaders``), int8 calibration data (``calibration``),
TensorRT-vs-ONNX parity (``parity``), and the one place Polygraphy's errors become ours (``polygraphy_errors``).

The public entry points (``build_plans``, ``build_plan_from_onnx``, ``run_plan``, ...) are in
``export/tensorrt_engines.py``.
"""
