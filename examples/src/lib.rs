//! Runnable examples: `cargo run -p cache-examples --bin user_service` (the
//! main one, over SQLite) and `--bin quickstart`.
