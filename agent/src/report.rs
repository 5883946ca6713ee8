//! Report protocol: step events, progress and the final report, POSTed with backoff.
