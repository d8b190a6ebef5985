use cache_device::{deploy_cached, DeviceError};

struct Board;

impl Board {
    #[deploy_cached]
    async fn read(&mut self, pin: u8) -> Result<u8, DeviceError> {
        "def read(pin):\n    return pin\n"
    }
}

fn main() {}
