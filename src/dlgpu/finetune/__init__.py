"""Fine-tuning: full, freeze, LoRA and QLoRA jobs, their memory and time, on one GPU or many. No torch here."""
