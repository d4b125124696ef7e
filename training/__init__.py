"""Training: demo brand data, dataset preparation, the embedded base model, the LoRA trainer."""
