//! Runnable examples: `cargo run -p cache-examples --bin quickstart`.
