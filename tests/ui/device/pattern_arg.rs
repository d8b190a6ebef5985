use cache_device::{deploy_cached, DeviceError};

cache_tests::device_handle!(Board);

impl Board {
    #[deploy_cached]
    async fn read(&mut self, (a, b): (u8, u8)) -> Result<u8, DeviceError> {
        "def read(a, b):\n    return a\n"
    }
}

fn main() {}
