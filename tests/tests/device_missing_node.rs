//! Without Node.js, the device tests fail with how to install it: never a
//! skip, never a hang. Its own binary: it empties PATH for the process.

use cache_device::{Emulator, Firmware};

#[tokio::test]
async fn a_missing_node_is_a_clear_error() {
    // SAFETY: this binary's only test; nothing else reads the environment.
    unsafe { std::env::set_var("PATH", "/nonexistent") };
    let e = match Emulator::start(Firmware::V1_27, 0).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("started node without it on PATH"),
    };
    assert!(e.contains("cannot start node"), "{e}");
    assert!(e.contains("install Node.js"), "{e}");
}
