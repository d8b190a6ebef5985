//! Every misuse of `#[cached]` is a compile error at the offending token
//! that says what to do instead. One `.rs` and one `.stderr` per error.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
    t.compile_fail("ui/device/*.rs");
}
