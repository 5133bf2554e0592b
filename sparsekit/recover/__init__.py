"""Keep the accuracy of a 2:4 model: mask-preserving fine-tuning, distillation from the dense
model, and per-layer sensitivity analysis."""
