use cache_device::{deploy_cached, DeviceError};

cache_tests::device_handle!(Board);

struct Pin;

impl Board {
    #[deploy_cached]
    async fn read(&mut self, pin: u8) -> Result<Pin, DeviceError> {
        "def read(pin):\n    return pin\n"
    }
}

fn main() {}
