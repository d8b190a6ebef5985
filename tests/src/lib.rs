//! Integration tests live in `tests/`; UI tests for compile errors in `ui/`.
