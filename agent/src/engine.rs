//! The executor: runs the plan's steps, records an event per step, undoes on failure.
