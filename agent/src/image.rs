//! Image streaming: source → decode → verify → sink, in constant memory.
