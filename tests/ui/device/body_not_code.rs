use cache_device::{deploy_cached, DeviceError};

cache_tests::device_handle!(Board);

impl Board {
    #[deploy_cached]
    async fn read(&mut self, pin: u8) -> Result<u8, DeviceError> {
        42
    }
}

fn main() {}
