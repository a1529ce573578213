"""One predictor for inference, the MLflow model and ONNX; which model an artefact belongs to."""
