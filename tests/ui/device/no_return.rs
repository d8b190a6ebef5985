use cache_device::{deploy_cached, DeviceHandle, DeviceSession};
use tokio::process::{ChildStdin, ChildStdout};

struct Board(DeviceSession<ChildStdout, ChildStdin>);

impl DeviceHandle for Board {
    type Reader = ChildStdout;
    type Writer = ChildStdin;
    fn session(&mut self) -> &mut DeviceSession<ChildStdout, ChildStdin> {
        &mut self.0
    }
}

impl Board {
    #[deploy_cached]
    async fn blink(&mut self, pin: u8) {
        "def blink(pin):\n    pass\n"
    }
}

fn main() {}
