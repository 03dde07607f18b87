"""LTX-2.3 model code shared by propagation and training: weight conversion, speed levers."""
