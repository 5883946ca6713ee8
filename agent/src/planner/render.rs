//! The plan as an operator reads it before anything is destroyed.
