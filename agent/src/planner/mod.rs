//! The planner: a validated document plus a disk inventory becomes a [`crate::plan::Plan`].
