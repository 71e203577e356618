//! Job workers.
