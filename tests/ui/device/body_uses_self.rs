use cache_device::{deploy_cached, DeviceError};

cache_tests::device_handle!(Board);

impl Board {
    #[deploy_cached]
    async fn read(&mut self, pin: u8) -> Result<u8, DeviceError> {
        let _ = &self.0;
        "def read(pin):\n    return pin\n"
    }
}

fn main() {}
