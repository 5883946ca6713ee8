//! files() trees.
