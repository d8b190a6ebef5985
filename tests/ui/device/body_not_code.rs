use cache_device::{deploy_cached, DeviceError, DeviceHandle, DeviceSession};
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
    async fn read(&mut self, pin: u8) -> Result<u8, DeviceError> {
        42
    }
}

fn main() {}
