//! The hybrid-model inference service (being written).
