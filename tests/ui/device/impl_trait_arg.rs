use cache_device::{deploy_cached, DeviceError};

cache_tests::device_handle!(Board);

impl Board {
    #[deploy_cached]
    async fn read(&mut self, pin: impl serde::Serialize) -> Result<u8, DeviceError> {
        "def read(pin):\n    return pin\n"
    }
}

fn main() {}
