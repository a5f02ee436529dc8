"""What train.py needs besides the network and the data: building the model and
optimizer, checkpoints, the learning-rate schedule, processes, throughput and logs."""
