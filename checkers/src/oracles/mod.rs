//! Safety and liveness oracles over what a simulation recorded (being written).
